package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// fakeDevice records the configurations it is given and serves a fixed
// "get" output in small pieces.
type fakeDevice struct {
	sets []string
	get  []byte
}

func (d *fakeDevice) IpcSetOperation(r io.Reader) error {
	b, err := io.ReadAll(r)
	d.sets = append(d.sets, string(b))
	return err
}

func (d *fakeDevice) IpcGetOperation(w io.Writer) error {
	for p := d.get; len(p) > 0; {
		n := min(len(p), 7) // split lines, keys included, across writes
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// fakeRoutes is a route table whose writes to the addresses in fail fail.
type fakeRoutes struct {
	routes map[netip.Addr]bool
	fail   map[netip.Addr]bool
	writes int
}

func (r *fakeRoutes) LinkByName(string) (netlink.Link, error) {
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DeviceName, Index: 7}}, nil
}

func dst(rt *netlink.Route) netip.Addr {
	a, _ := netip.AddrFromSlice(rt.Dst.IP)
	return a.Unmap()
}

func (r *fakeRoutes) RouteReplace(rt *netlink.Route) error {
	r.writes++
	if r.fail[dst(rt)] {
		return errors.New("injected route failure")
	}
	r.routes[dst(rt)] = true
	return nil
}

func (r *fakeRoutes) RouteDel(rt *netlink.Route) error {
	r.writes++
	delete(r.routes, dst(rt))
	return nil
}

func fakeTunnel() (*Tunnel, *fakeDevice, *fakeRoutes) {
	d := &fakeDevice{}
	r := &fakeRoutes{routes: map[netip.Addr]bool{}, fail: map[netip.Addr]bool{}}
	t := &Tunnel{podIP: netip.MustParseAddr("10.0.0.1"), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		uapi: d, rt: r, peers: map[PublicKey]Peer{}, routed: map[netip.Addr]bool{}}
	return t, d, r
}

func testPeer(b byte) Peer {
	ip := netip.AddrFrom4([4]byte{10, 0, 0, b})
	return Peer{PublicKey: PublicKey{b}, IP: ip, Endpoint: netip.AddrPortFrom(ip, ListenPort)}
}

func TestSetPeersRetriesAFailedRoute(t *testing.T) {
	tn, dev, rt := fakeTunnel()
	psk := cryptocore.NewRandomKey()
	defer psk.Zero()
	a, b := testPeer(2), testPeer(3)
	rt.fail[b.IP] = true
	if err := tn.SetPeers([]Peer{a, b}, &psk); err == nil || !strings.Contains(err.Error(), "route to 10.0.0.3") {
		t.Fatalf("SetPeers = %v, want the route failure", err)
	}
	if !rt.routes[a.IP] || rt.routes[b.IP] || len(dev.sets) != 1 {
		t.Fatalf("routes %v, %d device writes", rt.routes, len(dev.sets))
	}
	// Next round, same peers: the device is not touched again, the missing
	// route is written.
	delete(rt.fail, b.IP)
	if err := tn.SetPeers([]Peer{a, b}, &psk); err != nil {
		t.Fatal(err)
	}
	if !rt.routes[b.IP] || len(dev.sets) != 1 {
		t.Errorf("after retry: routes %v, %d device writes (want 1)", rt.routes, len(dev.sets))
	}
	// Nothing left to do: no writes at all.
	writes := rt.writes
	if err := tn.SetPeers([]Peer{a, b}, &psk); err != nil || rt.writes != writes || len(dev.sets) != 1 {
		t.Errorf("an unchanged SetPeers wrote: %v, %d route writes, %d device writes", err, rt.writes-writes, len(dev.sets))
	}
	// A peer leaves: its key is removed and its route goes.
	if err := tn.SetPeers([]Peer{a}, &psk); err != nil {
		t.Fatal(err)
	}
	if rt.routes[b.IP] || !rt.routes[a.IP] || !strings.Contains(dev.sets[1], "remove=true") {
		t.Errorf("after removal: routes %v, device got %q", rt.routes, dev.sets[1])
	}
}

func TestSetPeersHandsKeysAsWipedBytes(t *testing.T) {
	tn, dev, _ := fakeTunnel()
	psk := cryptocore.NewRandomKey()
	defer psk.Zero()
	if err := tn.SetPeers([]Peer{testPeer(2)}, &psk); err != nil {
		t.Fatal(err)
	}
	pub := PublicKey{2}
	want := fmt.Sprintf("public_key=%x\npreshared_key=%x\nendpoint=10.0.0.2:51820\nreplace_allowed_ips=true\nallowed_ip=10.0.0.2/32\n",
		pub[:], psk[:])
	if len(dev.sets) != 1 || dev.sets[0] != want {
		t.Errorf("device got %q, want %q", dev.sets, want)
	}
	// A new PSK reconfigures every peer.
	psk2 := cryptocore.NewRandomKey()
	defer psk2.Zero()
	if err := tn.SetPeers([]Peer{testPeer(2)}, &psk2); err != nil || len(dev.sets) != 2 || !strings.Contains(dev.sets[1], fmt.Sprintf("%x", psk2[:])) {
		t.Errorf("PSK change: %v, %q", err, dev.sets)
	}
	if err := tn.SetPeers([]Peer{testPeer(2)}, nil); err == nil {
		t.Error("peers without a PSK were accepted")
	}

	// The buffer a configuration is written into is wiped, growth included.
	cfg := newWipeBuf(4)
	first := cfg.b[:cap(cfg.b)]
	cfg.key("preshared_key", (*[KeySize]byte)(&psk))
	grown := cfg.b
	if err := ipcSet(dev, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, make([]byte, len(first))) || !bytes.Equal(grown[:cap(grown)], make([]byte, cap(grown))) {
		t.Error("a configuration buffer was left with key bytes")
	}
}

func TestStatsSkipKeyLines(t *testing.T) {
	psk := strings.Repeat("ab", KeySize)
	text := "private_key=" + strings.Repeat("cd", KeySize) + "\nlisten_port=51820\npublic_key=" + fmt.Sprintf("%064x", 1) +
		"\npreshared_key=" + psk + "\nendpoint=10.0.0.2:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"rx_bytes=10\ntx_bytes=20\nallowed_ip=10.0.0.2/32\n"
	tn, dev, _ := fakeTunnel()
	dev.get = []byte(text)
	st, err := tn.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].RxBytes != 10 || st[0].PublicKey[31] != 1 || st[0].IP != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("stats %+v", st)
	}
	if s := fmt.Sprintf("%+v", st); strings.Contains(s, "abab") || strings.Contains(s, "cdcd") {
		t.Errorf("stats kept key material: %s", s)
	}
	tn.Close()
	if _, err := tn.Stats(); err == nil {
		t.Error("stats of a closed tunnel")
	}
}
