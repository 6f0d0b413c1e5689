package nettest

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// Inject sends one raw IPv4 packet (header included, as UDPPacket and
// TCPSYNPacket build it) from inside the namespace h. The kernel routes it
// by its destination and sends it as is, whatever its source address, which
// is how a test forges a peer's address.
func Inject(h *netns.Handle, pkt []byte) error {
	info, ok := ParseIPv4(pkt)
	if !ok {
		return fmt.Errorf("inject: not an IPv4 packet")
	}
	return h.Do(func() error {
		// IPPROTO_RAW implies IP_HDRINCL: the header is ours, spoofed source
		// and all.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: info.Dst.As4()}); err != nil {
			return fmt.Errorf("send raw packet %s -> %s: %w", info.Src, info.Dst, err)
		}
		return nil
	})
}

// InjectUDP sends a UDP datagram with any source address from inside h.
func InjectUDP(h *netns.Handle, src, dst netip.AddrPort, payload []byte) error {
	return Inject(h, UDPPacket(src, dst, payload))
}

// InjectTCPSYN sends a TCP SYN with any source address from inside h.
func InjectTCPSYN(h *netns.Handle, src, dst netip.AddrPort, payload []byte) error {
	return Inject(h, TCPSYNPacket(src, dst, 0x1000, payload))
}
