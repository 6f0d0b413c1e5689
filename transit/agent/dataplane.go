package agent

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// DataPlane is everything the agent does to the pods of its node: their
// guards and their tunnels. NewDataPlane is the real one (nftables and
// wireguard-go in the pods' namespaces); tests use a fake, so the reconcile
// loop is tested without root.
//
// Every nsPath comes from the registry. Implementations must refuse a path
// that is not a network namespace under the directory they were given, and
// must act in the namespace they checked (no second lookup of the path).
// Calls for different pods may run one after another on one goroutine; an
// implementation need not be safe for concurrent use.
type DataPlane interface {
	// NamespaceID identifies the namespace at nsPath; a pod re-created at
	// the same path gets another ID.
	NamespaceID(nsPath string) (uint64, error)
	// ApplyGuard installs or replaces the pod's guard (guard.Apply).
	ApplyGuard(ctx context.Context, nsPath string, cfg guard.Config) error
	// RemoveGuard deletes it; an absent guard is not an error.
	RemoveGuard(ctx context.Context, nsPath string) error
	// GuardCounters reads its drop counters; an error wrapping
	// guard.ErrNotInstalled when it is gone.
	GuardCounters(ctx context.Context, nsPath string) (guard.Counters, error)
	// NewTunnel creates the pod's tunnel with a fresh key pair, no peers.
	NewTunnel(ctx context.Context, nsPath string, podIP netip.Addr, log *slog.Logger) (Tunnel, error)
}

// Tunnel is one pod's WireGuard tunnel, as *tunnel.Tunnel implements it.
type Tunnel interface {
	PublicKey() tunnel.PublicKey
	MTU() int
	// SetPeers makes the peers exactly peers, each with psk (nil only when
	// peers is empty); the tunnel keeps its own copy of psk. What failed is
	// retried by the next call with the same arguments.
	SetPeers(peers []tunnel.Peer, psk *cryptocore.Key) error
	// Stats reads per-peer counters; it is cheap (no system call).
	Stats() ([]tunnel.PeerStats, error)
	Close() error
}

// NewDataPlane returns the real data plane, which accepts only namespace
// paths beneath nsDir (netns.Dir, /run/netns, when empty).
func NewDataPlane(nsDir string) DataPlane {
	if nsDir == "" {
		nsDir = netns.Dir
	}
	return nodeDataPlane{dir: nsDir}
}

type nodeDataPlane struct{ dir string }

// in opens the namespace at nsPath, checked, and runs fn with a path that
// names the opened namespace itself (/proc/self/fd/N): guard and tunnel
// reopen that path, so a registry path swapped after the check cannot send
// them elsewhere.
func (d nodeDataPlane) in(nsPath string, fn func(path string) error) error {
	h, err := netns.OpenIn(d.dir, nsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h.ProcPath())
}

func (d nodeDataPlane) NamespaceID(nsPath string) (uint64, error) {
	h, err := netns.OpenIn(d.dir, nsPath)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	return h.ID()
}

func (d nodeDataPlane) ApplyGuard(ctx context.Context, nsPath string, cfg guard.Config) error {
	return d.in(nsPath, func(p string) error { return guard.Apply(ctx, p, cfg) })
}

func (d nodeDataPlane) RemoveGuard(ctx context.Context, nsPath string) error {
	return d.in(nsPath, func(p string) error { return guard.Remove(ctx, p) })
}

func (d nodeDataPlane) GuardCounters(ctx context.Context, nsPath string) (c guard.Counters, err error) {
	err = d.in(nsPath, func(p string) error {
		c, err = guard.ReadCounters(ctx, p)
		return err
	})
	return c, err
}

func (d nodeDataPlane) NewTunnel(ctx context.Context, nsPath string, podIP netip.Addr, log *slog.Logger) (t Tunnel, err error) {
	err = d.in(nsPath, func(p string) error {
		tn, err := tunnel.New(ctx, p, podIP, log)
		if err == nil {
			t = tn
		}
		return err
	})
	return t, err
}
