package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/registry"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// memRegistry is an in-memory registry.Registry shared by the agents of a
// test.
type memRegistry struct {
	mu       sync.Mutex
	snap     registry.Snapshot
	watchers []chan struct{}
}

func (r *memRegistry) Watch(ctx context.Context) (<-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan struct{}, 1)
	r.watchers = append(r.watchers, ch)
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.watchers = slices.DeleteFunc(r.watchers, func(c chan struct{}) bool { return c == ch })
		close(ch)
	})
	return ch, nil
}

// changedLocked notifies every watcher, coalescing.
func (r *memRegistry) changedLocked() {
	for _, ch := range r.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func newMemRegistry() *memRegistry {
	return &memRegistry{snap: registry.Snapshot{Keys: map[string]registry.PodKey{}, Tenants: map[string]registry.Tenant{}}}
}

func (r *memRegistry) Snapshot(context.Context) (*registry.Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &registry.Snapshot{
		Pods: slices.Clone(r.snap.Pods), Services: slices.Clone(r.snap.Services),
		Keys: maps.Clone(r.snap.Keys), Tenants: maps.Clone(r.snap.Tenants),
	}, nil
}

func (r *memRegistry) PublishKey(_ context.Context, k registry.PodKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.changedLocked()
	r.snap.Keys[k.Pod] = k
	return nil
}

func (r *memRegistry) WithdrawKey(_ context.Context, pod string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.changedLocked()
	delete(r.snap.Keys, pod)
	return nil
}

func (r *memRegistry) SetTenantKey(_ context.Context, tenant string, blob []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.changedLocked()
	r.snap.Tenants[tenant] = registry.Tenant{PSK: blob}
	return nil
}

func (r *memRegistry) UnenrollTenant(_ context.Context, tenant string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.changedLocked()
	r.snap.Tenants[tenant] = registry.Tenant{Removed: true}
	return nil
}

// edit changes the registry's pods or tenants as an operator or an
// attacker with write access would.
func (r *memRegistry) edit(fn func(*registry.Snapshot)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.changedLocked()
	fn(&r.snap)
}

// fakeDP is a data plane in memory: guards and tunnels by namespace path.
// Namespaces exist when listed in ns (path -> ID).
type fakeDP struct {
	mu      sync.Mutex
	ns      map[string]uint64
	guards  map[string]guard.Config
	tunnels map[string]*fakeTunnel // the live tunnel of each namespace
	all     []*fakeTunnel
	// calls counts each method's calls by name.
	calls map[string]int
	// failSetPeers makes the next N SetPeers calls fail, as a failed route
	// write would.
	failSetPeers int
	// block, when set, makes ApplyGuard signal entered and wait for it to
	// be closed.
	block   chan struct{}
	entered chan struct{}
}

func newFakeDP() *fakeDP {
	return &fakeDP{ns: map[string]uint64{}, guards: map[string]guard.Config{}, tunnels: map[string]*fakeTunnel{}, calls: map[string]int{}}
}

func (d *fakeDP) count(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[name]
}

func (d *fakeDP) guard(path string) (guard.Config, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.guards[path]
	return g, ok
}

func (d *fakeDP) tunnel(path string) *fakeTunnel {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tunnels[path]
}

func (d *fakeDP) check(path string) error {
	d.calls["check"]++
	if _, ok := d.ns[path]; !ok {
		return fmt.Errorf("no namespace at %s", path)
	}
	return nil
}

func (d *fakeDP) NamespaceID(path string) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(path); err != nil {
		return 0, err
	}
	return d.ns[path], nil
}

func (d *fakeDP) ApplyGuard(_ context.Context, path string, cfg guard.Config) error {
	d.mu.Lock()
	block, entered := d.block, d.entered
	d.mu.Unlock()
	if block != nil {
		entered <- struct{}{}
		<-block
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["ApplyGuard"]++
	if err := d.check(path); err != nil {
		return err
	}
	d.guards[path] = cfg
	return nil
}

func (d *fakeDP) RemoveGuard(_ context.Context, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["RemoveGuard"]++
	if err := d.check(path); err != nil {
		return err
	}
	delete(d.guards, path)
	return nil
}

func (d *fakeDP) GuardCounters(_ context.Context, path string) (guard.Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["GuardCounters"]++
	if err := d.check(path); err != nil {
		return guard.Counters{}, err
	}
	if _, ok := d.guards[path]; !ok {
		return guard.Counters{}, guard.ErrNotInstalled
	}
	return guard.Counters{PlaintextOutPackets: 7}, nil
}

func (d *fakeDP) NewTunnel(_ context.Context, path string, ip netip.Addr, _ *slog.Logger) (Tunnel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls["NewTunnel"]++
	if err := d.check(path); err != nil {
		return nil, err
	}
	if _, ok := d.guards[path]; !ok {
		return nil, errors.New("BUG: tunnel before guard")
	}
	t := &fakeTunnel{dp: d, ip: ip}
	rand.Read(t.pub[:])
	d.tunnels[path] = t
	d.all = append(d.all, t)
	return t, nil
}

type fakeTunnel struct {
	dp     *fakeDP
	ip     netip.Addr
	pub    tunnel.PublicKey
	peers  []tunnel.Peer
	psk    cryptocore.Key
	closed atomic.Bool
}

func (t *fakeTunnel) PublicKey() tunnel.PublicKey { return t.pub }
func (t *fakeTunnel) MTU() int                    { return 1390 }

func (t *fakeTunnel) SetPeers(peers []tunnel.Peer, psk *cryptocore.Key) error {
	t.dp.mu.Lock()
	defer t.dp.mu.Unlock()
	if t.closed.Load() {
		return errors.New("tunnel is closed")
	}
	if psk == nil && len(peers) > 0 {
		return errors.New("BUG: peers without a PSK")
	}
	if t.dp.failSetPeers > 0 {
		t.dp.failSetPeers--
		return errors.New("route to a peer: injected failure")
	}
	t.peers = slices.Clone(peers)
	t.psk = cryptocore.Key{}
	if psk != nil {
		t.psk = *psk
	}
	return nil
}

func (t *fakeTunnel) Stats() ([]tunnel.PeerStats, error) {
	t.dp.mu.Lock()
	defer t.dp.mu.Unlock()
	if t.closed.Load() {
		return nil, errors.New("tunnel is closed")
	}
	var out []tunnel.PeerStats
	for _, p := range t.peers {
		out = append(out, tunnel.PeerStats{PublicKey: p.PublicKey, IP: p.IP, Endpoint: p.Endpoint})
	}
	return out, nil
}

func (t *fakeTunnel) Close() error {
	t.closed.Store(true)
	return nil
}

// peerKeys are the public keys of a tunnel's peers, base64.
func (t *fakeTunnel) peerKeys() []string {
	t.dp.mu.Lock()
	defer t.dp.mu.Unlock()
	var out []string
	for _, p := range t.peers {
		out = append(out, p.PublicKey.String())
	}
	slices.Sort(out)
	return out
}

// flakyKEK fails Unwrap with ErrBackendUnavailable while down is set, as an
// unreachable KMS does.
type flakyKEK struct {
	keys.KEKProvider
	down atomic.Bool
}

func (f *flakyKEK) Unwrap(ctx context.Context, tenant string, version uint32, ct, aad []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("%w: injected outage", keys.ErrBackendUnavailable)
	}
	return f.KEKProvider.Unwrap(ctx, tenant, version, ct, aad)
}
