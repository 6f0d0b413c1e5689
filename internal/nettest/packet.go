package nettest

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// WireGuardPort is the UDP port Capture counts as WireGuard.
const WireGuardPort = 51820

// Checksum is the Internet checksum (RFC 1071) of b, with initial as a
// partial sum (for the pseudo-header).
func Checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoSum is the partial sum of the IPv4 pseudo-header that TCP and UDP
// checksums cover.
func pseudoSum(src, dst netip.Addr, proto byte, length int) uint32 {
	s, d := src.As4(), dst.As4()
	var sum uint32
	sum += uint32(s[0])<<8 | uint32(s[1])
	sum += uint32(s[2])<<8 | uint32(s[3])
	sum += uint32(d[0])<<8 | uint32(d[1])
	sum += uint32(d[2])<<8 | uint32(d[3])
	sum += uint32(proto)
	sum += uint32(length)
	return sum
}

// ipv4Packet returns an IPv4 header (no options, TTL 64, DF clear) followed
// by l4, with the header checksum set. Addresses must be IPv4.
func ipv4Packet(src, dst netip.Addr, proto byte, l4 []byte) []byte {
	pkt := make([]byte, 20+len(l4))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], 0x7e57) // identification
	pkt[8] = 64
	pkt[9] = proto
	s, d := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	binary.BigEndian.PutUint16(pkt[10:], Checksum(pkt[:20], 0))
	copy(pkt[20:], l4)
	return pkt
}

// UDPPacket builds an IPv4 UDP datagram with correct IP and UDP checksums.
func UDPPacket(src, dst netip.AddrPort, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	c := Checksum(u, pseudoSum(src.Addr(), dst.Addr(), ProtoUDP, len(u)))
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return ipv4Packet(src.Addr(), dst.Addr(), ProtoUDP, u)
}

// TCPSYNPacket builds an IPv4 TCP SYN (window 64240, no options) carrying
// payload, with correct checksums.
func TCPSYNPacket(src, dst netip.AddrPort, seq uint32, payload []byte) []byte {
	t := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	binary.BigEndian.PutUint32(t[4:], seq)
	t[12] = 5 << 4 // data offset: 5 words
	t[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(t[14:], 64240)
	copy(t[20:], payload)
	binary.BigEndian.PutUint16(t[16:], Checksum(t, pseudoSum(src.Addr(), dst.Addr(), ProtoTCP, len(t))))
	return ipv4Packet(src.Addr(), dst.Addr(), ProtoTCP, t)
}

// IPv4Info is what ParseFrame finds in an Ethernet frame carrying IPv4.
type IPv4Info struct {
	Src, Dst         netip.Addr
	Proto            byte
	SrcPort, DstPort uint16 // TCP and UDP only, first fragment only
	TCPFlags         byte   // TCP only
}

// ParseFrame reads the IPv4 header, and the ports of TCP and UDP, of an
// Ethernet frame (one optional 802.1Q tag). ok is false for anything else
// or a truncated frame.
func ParseFrame(f []byte) (info IPv4Info, ok bool) {
	if len(f) < 14 {
		return info, false
	}
	et, off := binary.BigEndian.Uint16(f[12:]), 14
	if et == 0x8100 && len(f) >= 18 {
		et, off = binary.BigEndian.Uint16(f[16:]), 18
	}
	if et != 0x0800 {
		return info, false
	}
	return ParseIPv4(f[off:])
}

// ParseIPv4 is ParseFrame for a packet that starts at the IPv4 header.
func ParseIPv4(ip []byte) (info IPv4Info, ok bool) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return info, false
	}
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl {
		return info, false
	}
	info.Src = netip.AddrFrom4([4]byte(ip[12:16]))
	info.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
	info.Proto = ip[9]
	fragOff := binary.BigEndian.Uint16(ip[6:]) & 0x1fff
	l4 := ip[ihl:]
	if fragOff == 0 && (info.Proto == ProtoTCP || info.Proto == ProtoUDP) && len(l4) >= 4 {
		info.SrcPort = binary.BigEndian.Uint16(l4[0:])
		info.DstPort = binary.BigEndian.Uint16(l4[2:])
		if info.Proto == ProtoTCP && len(l4) >= 14 {
			info.TCPFlags = l4[13]
		}
	}
	return info, true
}
