package nettest

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func TestChecksumKnownAnswer(t *testing.T) {
	// The IPv4 header example from Wikipedia's "Internet checksum" page.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := Checksum(hdr, 0); got != 0xb861 {
		t.Errorf("Checksum = %#04x, want 0xb861", got)
	}
	binary.BigEndian.PutUint16(hdr[10:], 0xb861)
	if got := Checksum(hdr, 0); got != 0 {
		t.Errorf("checksum over a correct header = %#04x, want 0", got)
	}
	if got := Checksum([]byte{0x01}, 0); got != ^uint16(0x0100) {
		t.Errorf("odd length: %#04x", got)
	}
}

func TestPacketsVerify(t *testing.T) {
	src := netip.MustParseAddrPort("10.77.0.10:40000")
	dst := netip.MustParseAddrPort("10.77.0.11:9")
	tests := []struct {
		name  string
		pkt   []byte
		proto byte
		flags byte
	}{
		{"udp", UDPPacket(src, dst, []byte("odd-length payload!")), ProtoUDP, 0},
		{"udp empty", UDPPacket(src, dst, nil), ProtoUDP, 0},
		{"tcp syn", TCPSYNPacket(src, dst, 7, []byte("x")), ProtoTCP, 0x02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if Checksum(tt.pkt[:20], 0) != 0 {
				t.Error("IP header checksum does not verify")
			}
			l4 := tt.pkt[20:]
			if Checksum(l4, pseudoSum(src.Addr(), dst.Addr(), tt.proto, len(l4))) != 0 {
				t.Error("transport checksum does not verify")
			}
			info, ok := ParseIPv4(tt.pkt)
			if !ok || info.Src != src.Addr() || info.Dst != dst.Addr() || info.Proto != tt.proto ||
				info.SrcPort != src.Port() || info.DstPort != dst.Port() || info.TCPFlags != tt.flags {
				t.Errorf("ParseIPv4 = %+v, %v", info, ok)
			}
			frame := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, tt.pkt...)
			if got, ok := ParseFrame(frame); !ok || got != info {
				t.Errorf("ParseFrame = %+v, %v; want %+v", got, ok, info)
			}
		})
	}
}

func FuzzParseFrame(f *testing.F) {
	src := netip.MustParseAddrPort("10.77.0.10:51820")
	dst := netip.MustParseAddrPort("10.77.0.11:51820")
	eth := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}
	f.Add(append(eth, UDPPacket(src, dst, []byte("hi"))...))
	f.Add(append(eth, TCPSYNPacket(src, dst, 1, nil)...))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0, 1, 0x08, 0x00, 0x4f})
	f.Fuzz(func(t *testing.T, frame []byte) {
		info, ok := ParseFrame(frame)
		if ok && (!info.Src.Is4() || !info.Dst.Is4()) {
			t.Errorf("ok with non-IPv4 addresses %+v", info)
		}
	})
}

// TestInjectCaptureListen checks the tools against the kernel: a forged
// UDP datagram reaches a listener with its forged source, a capture on both
// ends sees it, a datagram with a wrong checksum is refused by the receiving
// kernel (so the checksums the tools compute are really checked), and UDP on
// the WireGuard port is counted.
func TestInjectCaptureListen(t *testing.T) {
	lan := NewLAN(t, 3)
	a, b, c := lan.Pods[0], lan.Pods[1], lan.Pods[2]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	capC := StartCapture(t, c.NS, "eth0")
	capB := StartCapture(t, b.NS, "eth0")
	ln := ListenUDP(t, b.NS, netip.AddrPortFrom(b.IP, 9000))

	forged := netip.AddrPortFrom(a.IP, 40000)
	bad := UDPPacket(forged, ln.Addr, []byte("bad-checksum-marker"))
	bad[len(bad)-1] ^= 0xff // payload changed after the checksum was computed
	if err := Inject(c.NS, bad); err != nil {
		t.Fatal(err)
	}
	if err := InjectUDP(c.NS, forged, ln.Addr, []byte("forged-marker")); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctx, []byte("forged-marker")); err != nil {
		t.Fatal(err)
	}
	got := ln.Received()
	if len(got) != 1 || got[0].From != forged {
		t.Errorf("listener received %+v, want one datagram from %s", got, forged)
	}
	if ln.Seen([]byte("bad-checksum-marker")) {
		t.Error("a datagram with a wrong UDP checksum was delivered: checksums are not being verified")
	}
	if err := capB.WaitFor(ctx, []byte("forged-marker")); err != nil {
		t.Fatal(err)
	}
	if err := InjectUDP(c.NS, netip.AddrPortFrom(c.IP, WireGuardPort), netip.AddrPortFrom(b.IP, WireGuardPort), []byte("wg-marker")); err != nil {
		t.Fatal(err)
	}
	// Sent from C: queued to C's capture before Inject returned, so all
	// there once Stop has drained it.
	if err := capC.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"forged-marker", "bad-checksum", "wg-marker"} {
		if !capC.Seen([]byte(m)) {
			t.Errorf("sender's capture missed %q", m)
		}
	}
	st := capC.Stats()
	if st.WireGuard != 1 || st.Frames < 3 || st.Dropped != 0 {
		t.Errorf("stats = %+v, want 1 WireGuard frame of >= 3, none dropped", st)
	}
	capC.AssertNotSeen(t, []byte("never-sent"))
}

func TestTCPListenerEchoes(t *testing.T) {
	lan := NewLAN(t, 2)
	a, b := lan.Pods[0], lan.Pods[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln := ListenTCP(t, b.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	conn, err := Dial(ctx, a.NS, "tcp4", netip.AddrPortFrom(b.IP, ln.Addr.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("echo-marker")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 11)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(buf); err != nil || string(buf) != "echo-marker" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	if acc := ln.Accepted(); len(acc) != 1 || acc[0].Addr() != a.IP {
		t.Errorf("accepted %v, want one connection from %s", acc, a.IP)
	}
	if !ln.Seen([]byte("echo-marker")) {
		t.Error("listener did not record the payload")
	}
}
