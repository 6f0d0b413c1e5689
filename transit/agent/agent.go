// Package agent is tencrypt's node agent: it serves every pod on its node
// that belongs to a tenant enrolled in transit encryption. For each such pod
// it installs the guard, then a WireGuard tunnel with a fresh key pair, and
// publishes the public key; it keeps every tunnel's peers and every guard's
// sets in step with the registry.
//
// Reconciliation is level-based: each round reads a full registry snapshot
// and moves the node towards it, so a missed change, an agent restart or a
// half-finished round is repaired by the next round. The guard is installed
// before a tunnel and left in place when a tunnel goes (agent stop, crash,
// tenant key shredded, tenant gone from the registry), so a pod's tenant
// traffic fails closed. Only an explicit unenrollment (the registry marks
// the tenant removed) takes guards away.
//
// The registry is an input, not a trusted party: its namespace paths are
// opened only beneath the configured directory (DataPlane), and a tenant or
// pod that vanishes from it loses its tunnels but keeps its guards.
package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/registry"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// Config is everything an Agent needs.
type Config struct {
	// Node is the node this agent serves.
	Node     string
	Registry registry.Registry
	// Keys opens tenants' wrapped pre-shared keys; every unwrap is audited.
	Keys *keys.Envelope
	// DataPlane acts on the pods; nil means NewDataPlane(NetNSDir).
	DataPlane DataPlane
	// NetNSDir is the directory every pod namespace path must be under;
	// empty means /run/netns. Used only when DataPlane is nil.
	NetNSDir string
	// Interval between periodic reconciliation rounds, the safety net: a
	// round also runs as soon as the registry reports a change (Watch), and
	// one second after a failed round. 0 means one second.
	Interval time.Duration
	// KeyCheckInterval is how often the agent asks the key backend whether
	// each tenant still has its keys, so that a shredded tenant's tunnels
	// stop without waiting for a restart; 0 means 30 seconds.
	KeyCheckInterval time.Duration
	// CounterInterval is how often a round reads each guard's drop counters
	// (one nft run per pod); 0 means 10 seconds. Status and metrics serve
	// the last values read, never run nft themselves.
	CounterInterval time.Duration
	Log             *slog.Logger
}

// Agent serves the enrolled pods of one node.
//
// Locking: mu is held through a whole round (registry, KMS and nft calls,
// up to roundTimeout). The HTTP handlers never take it: they read status,
// which each round replaces when it ends.
type Agent struct {
	cfg Config
	log *slog.Logger
	dp  DataPlane

	mu   sync.Mutex // guards everything below it, held through a round
	pods map[string]*servedPod
	psks map[string]*tenantKey
	// held are pods whose tenant left the registry (or was shredded from
	// it) without being unenrolled: tunnel closed, key withdrawn, guard
	// kept. An unenrollment of that tenant removes their guards.
	held map[string]heldPod
	// unguarded are pods of unenrolled tenants whose guard this agent
	// removed, by name, with their namespace ID: removed once, not every
	// round.
	unguarded map[string]uint64
	// lastRound and lastErr say how the latest round went (health).
	lastRound time.Time
	lastErr   error
	rounds    uint64
	failures  uint64

	status atomic.Pointer[Status]
}

type servedPod struct {
	pod   registry.Pod
	nsID  uint64
	tun   Tunnel
	guard guard.Config
	// expectedPeers is how many other pods the tenant has; the pod is
	// ready when its tunnel has a peer for each.
	expectedPeers int
	// counters are the guard's drop counters as last read, at countersAt;
	// countersErr says why the last read failed.
	counters    guard.Counters
	countersAt  time.Time
	countersErr string
}

type heldPod struct {
	pod    registry.Pod
	reason string
}

// tenantKey is what the agent knows of a tenant's transit key. A key that
// cannot be used for good (shredded, unknown tenant, failed authentication)
// is remembered, so the agent does not retry it every round; a passing
// failure (KMS unreachable) is not, and is retried.
type tenantKey struct {
	blobHash [32]byte
	key      cryptocore.Key
	version  uint32
	usable   bool
	// problem says why the key is not usable.
	problem string
	checked time.Time
	// kekCurrent is the tenant's newest KEK version at the last check; when
	// it is above version, the PSK awaits `tencrypt transit rotate`.
	kekCurrent uint32
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.KeyCheckInterval == 0 {
		cfg.KeyCheckInterval = 30 * time.Second
	}
	if cfg.CounterInterval == 0 {
		cfg.CounterInterval = 10 * time.Second
	}
	if cfg.DataPlane == nil {
		cfg.DataPlane = NewDataPlane(cfg.NetNSDir)
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Log.With("node", cfg.Node),
		dp:        cfg.DataPlane,
		pods:      map[string]*servedPod{},
		psks:      map[string]*tenantKey{},
		held:      map[string]heldPod{},
		unguarded: map[string]uint64{},
	}
	a.publishLocked()
	return a
}

// retryAfter is how soon a failed round is retried when Interval is longer.
const retryAfter = time.Second

// Run reconciles until ctx is cancelled, then closes the tunnels it made and
// withdraws their keys. Guards stay: they are the pods' fail-closed state.
//
// A round runs when the registry reports a change, every Interval, when
// guard counters or key checks are due, and soon after a failed round. Rounds stay
// level-based (a whole snapshot each time), so a lost notification only
// delays a change until the next periodic round. The agent's own key
// publications notify it too: that costs one more round, which finds
// nothing to do.
func (a *Agent) Run(ctx context.Context) error {
	changes, err := a.cfg.Registry.Watch(ctx)
	if err != nil {
		a.log.Warn("cannot watch the registry; reconciling every interval only", "interval", a.cfg.Interval, "err", err)
	}
	a.log.Info("agent started", "interval", a.cfg.Interval, "watch", changes != nil)
	// Counter reads and key checks are done in rounds: wake up for them too
	// (the flags promise them at their own intervals).
	period := min(a.cfg.Interval, a.cfg.CounterInterval, a.cfg.KeyCheckInterval)
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		a.round(ctx)
		next := period
		if a.lastFailed() {
			next = min(period, retryAfter)
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			a.shutdown()
			return nil
		case _, ok := <-changes:
			if !ok {
				// The watch broke: carry on with periodic rounds.
				a.log.Warn("registry watch ended; reconciling every interval only", "interval", a.cfg.Interval)
				changes = nil
			}
		case <-t.C:
		}
	}
}

func (a *Agent) lastFailed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr != nil
}

// roundTimeout bounds one reconcile round, so that a hung KMS call or nft
// run cannot stall the node's agent for good.
const roundTimeout = 30 * time.Second

// round runs Reconcile, reads the counters that are due and publishes the
// status the handlers serve.
func (a *Agent) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	err := a.Reconcile(rctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.readCountersLocked(rctx)
	a.rounds++
	a.lastRound = time.Now()
	if err != nil && ctx.Err() == nil {
		a.failures++
		if a.lastErr == nil || a.lastErr.Error() != err.Error() {
			a.log.Error("reconcile failed; retrying next round", "err", err)
		}
	} else if a.lastErr != nil {
		a.log.Info("reconcile recovered")
	}
	a.lastErr = err
	a.publishLocked()
}

// readCountersLocked reads the guard counters of the pods whose last read
// is older than CounterInterval. A guard found missing is applied again by
// the next round.
func (a *Agent) readCountersLocked(ctx context.Context) {
	for _, sp := range a.pods {
		// Due a little early: rounds come every CounterInterval at the
		// slowest, and a read due a moment after one would wait a whole
		// interval more.
		if time.Since(sp.countersAt) < a.cfg.CounterInterval*9/10 || ctx.Err() != nil {
			continue
		}
		c, err := a.dp.GuardCounters(ctx, sp.pod.NetNS)
		sp.countersAt = time.Now()
		if err != nil {
			sp.countersErr = err.Error()
			if errors.Is(err, guard.ErrNotInstalled) {
				a.log.Warn("guard missing from a served pod; applying it again", "pod", sp.pod.Name)
				sp.guard = guard.Config{}
				sp.countersAt = time.Time{}
			}
			continue
		}
		sp.counters, sp.countersErr = c, ""
	}
}

// Reconcile runs one round. Errors for one pod do not stop the others; the
// joined errors are returned.
func (a *Agent) Reconcile(ctx context.Context) error {
	snap, err := a.cfg.Registry.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("read registry: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()

	// A registry that suddenly lists no tenant at all while this agent
	// serves pods is most likely lost or emptied by accident: keep the node
	// exactly as it is (guards and tunnels) and report unhealthy, rather
	// than cut every tenant's traffic. One tenant vanishing is handled per
	// tenant below (tunnels go, guards stay).
	if len(snap.Tenants) == 0 && len(a.pods) > 0 {
		return fmt.Errorf("the registry lists no enrolled tenant while %d pods are served; keeping their guards and tunnels (fail closed) until the registry is repaired", len(a.pods))
	}

	var errs []error
	for tenant, t := range snap.Tenants {
		if t.Removed {
			continue
		}
		if err := a.refreshPSKLocked(ctx, tenant, t.PSK); err != nil {
			errs = append(errs, err)
		}
		a.checkTenantLocked(ctx, tenant)
	}
	for tenant := range a.psks {
		if !snap.Enrolled(tenant) {
			a.dropPSKLocked(tenant)
		}
	}

	desired := map[string]registry.Pod{}
	for _, p := range snap.Pods {
		if p.Node == a.cfg.Node && snap.Enrolled(p.Tenant) {
			desired[p.Name] = p
		}
	}
	for name, sp := range a.pods {
		if _, ok := desired[name]; !ok {
			errs = append(errs, a.unservePodLocked(ctx, sp, snap))
		}
	}
	errs = append(errs, a.unguardLocked(ctx, snap, desired))
	for _, p := range sortedPods(desired) {
		if err := a.servePodLocked(ctx, p, snap); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// refreshPSKLocked unwraps a tenant's PSK when its blob is new or changed.
// A tenant whose PSK cannot be opened (shredded, KMS down, revoked) has no
// usable key: its tunnels get no peers, and the guards drop its traffic.
func (a *Agent) refreshPSKLocked(ctx context.Context, tenant string, blob []byte) error {
	h := sha256.Sum256(blob)
	if cur, ok := a.psks[tenant]; ok && cur.blobHash == h {
		return nil
	}
	var wk keys.WrappedKey
	if err := wk.UnmarshalBinary(blob); err != nil {
		a.setUnusableLocked(tenant, h, err)
		return fmt.Errorf("tenant %s: transit key: %w", tenant, err)
	}
	if wk.Tenant != tenant {
		err := fmt.Errorf("transit key belongs to tenant %q", wk.Tenant)
		a.setUnusableLocked(tenant, h, err)
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	dek, err := a.cfg.Keys.Unwrap(ctx, wk, registry.PSKPurpose, "agent/"+a.cfg.Node)
	if err != nil {
		if errors.Is(err, keys.ErrShredded) || errors.Is(err, keys.ErrUnknownTenant) || errors.Is(err, keys.ErrAuth) {
			// For good: not an agent failure, and not retried until the
			// tenant gets a new key.
			a.setUnusableLocked(tenant, h, err)
			return nil
		}
		a.dropPSKLocked(tenant)
		return fmt.Errorf("tenant %s: open transit key: %w", tenant, err)
	}
	defer dek.Zero()
	psk, err := cryptocore.KeyFromBytes(dek[:])
	if err != nil {
		return err
	}
	old, had := a.psks[tenant]
	a.psks[tenant] = &tenantKey{blobHash: h, key: psk, version: wk.KEKVersion, usable: true, kekCurrent: wk.KEKVersion}
	if had {
		old.key.Zero()
		a.log.Info("tenant transit key changed", "tenant", tenant, "kek_version", wk.KEKVersion)
	} else {
		a.log.Info("tenant enrolled", "tenant", tenant, "kek_version", wk.KEKVersion)
	}
	return nil
}

// checkTenantLocked asks the key backend, every KeyCheckInterval, whether
// the tenant's keys still exist. A cached PSK would otherwise keep a
// shredded tenant's tunnels up until the agent restarts.
func (a *Agent) checkTenantLocked(ctx context.Context, tenant string) {
	k, ok := a.psks[tenant]
	if !ok || !k.usable || time.Since(k.checked) < a.cfg.KeyCheckInterval {
		return
	}
	info, err := a.cfg.Keys.Provider().Tenant(ctx, tenant)
	switch {
	case err == nil && info.Shredded:
		err = keys.ErrShredded
	case err == nil:
		k.checked = time.Now()
		if info.Current > k.version && info.Current != k.kekCurrent {
			a.log.Info("tenant KEK rotated; its transit key is still under the old version until 'tencrypt transit rotate' (a new key) or 'tencrypt keys rewrap' of the registry file (the same key)",
				"tenant", tenant, "transit_kek_version", k.version, "current_kek_version", info.Current)
		}
		k.kekCurrent = info.Current
		return
	case errors.Is(err, keys.ErrBackendUnavailable), errors.Is(err, keys.ErrPermissionDenied):
		// Cannot tell: keep the key (availability), and ask again next time.
		k.checked = time.Now()
		return
	}
	a.setUnusableLocked(tenant, k.blobHash, err)
}

func (a *Agent) setUnusableLocked(tenant string, blobHash [32]byte, why error) {
	if cur, ok := a.psks[tenant]; ok {
		cur.key.Zero()
	}
	a.psks[tenant] = &tenantKey{blobHash: blobHash, problem: why.Error()}
	a.log.Warn("tenant transit key unusable: its pods' tunnels have no peers and the guards drop its traffic", "tenant", tenant, "reason", why)
}

func (a *Agent) dropPSKLocked(tenant string) {
	if cur, ok := a.psks[tenant]; ok {
		cur.key.Zero()
		delete(a.psks, tenant)
		if cur.usable {
			a.log.Warn("tenant transit key unavailable: its pods' tunnels have no peers until it is back", "tenant", tenant)
		}
	}
}

// servePodLocked brings one pod to its desired state: guard, then tunnel,
// then published key, then peers.
func (a *Agent) servePodLocked(ctx context.Context, p registry.Pod, snap *registry.Snapshot) error {
	id, err := a.dp.NamespaceID(p.NetNS)
	if err != nil {
		return err
	}
	sp := a.pods[p.Name]
	if sp != nil && (sp.nsID != id || sp.pod.IP != p.IP || sp.pod.Tenant != p.Tenant) {
		// The pod was re-created (or moved to another tenant): its old
		// tunnel serves a namespace that is gone. Start over with a new key;
		// the guard below is replaced, never removed.
		a.log.Info("pod was re-created; replacing its tunnel", "pod", p.Name)
		sp.tun.Close()
		delete(a.pods, p.Name)
		sp = nil
	}
	gcfg := guardConfig(p, snap)
	if sp == nil {
		// Guard first: from here on, plaintext to or from tenant peers is
		// dropped whatever happens to the tunnel.
		if err := a.dp.ApplyGuard(ctx, p.NetNS, gcfg); err != nil {
			return fmt.Errorf("install guard: %w", err)
		}
		delete(a.held, p.Name)
		delete(a.unguarded, p.Name)
		tun, err := a.dp.NewTunnel(ctx, p.NetNS, p.IP, a.log.With("pod", p.Name))
		if err != nil {
			return err
		}
		sp = &servedPod{pod: p, nsID: id, tun: tun, guard: gcfg}
		a.pods[p.Name] = sp
		a.log.Info("serving pod", "pod", p.Name, "tenant", p.Tenant, "ip", p.IP, "public_key", tun.PublicKey().Short())
	} else if !guardEqual(sp.guard, gcfg) {
		if err := a.dp.ApplyGuard(ctx, p.NetNS, gcfg); err != nil {
			return fmt.Errorf("update guard: %w", err)
		}
		sp.guard = gcfg
	}
	sp.pod = p

	pub := sp.tun.PublicKey().String()
	if k, ok := snap.Keys[p.Name]; !ok || k.PublicKey != pub || k.Node != a.cfg.Node {
		if err := a.cfg.Registry.PublishKey(ctx, registry.PodKey{
			Pod: p.Name, PublicKey: pub, Endpoint: netip.AddrPortFrom(p.IP, tunnel.ListenPort), Node: a.cfg.Node,
		}); err != nil {
			return fmt.Errorf("publish key: %w", err)
		}
	}

	var peers []tunnel.Peer
	var psk *cryptocore.Key
	if t, ok := a.psks[p.Tenant]; ok && t.usable {
		psk = &t.key
		peers = peerList(p, snap)
	}
	sp.expectedPeers = len(gcfg.Peers)
	return sp.tun.SetPeers(peers, psk)
}

// unservePodLocked stops serving a pod: its tunnel closes and its key is
// withdrawn. The guard goes only if the pod still exists and the tenant it
// was served for has been unenrolled; a pod whose tenant merely vanished
// from the registry (or that moved to a tenant not enrolled) keeps its guard
// and is held, and a pod gone from the registry has nothing left to clean.
func (a *Agent) unservePodLocked(ctx context.Context, sp *servedPod, snap *registry.Snapshot) error {
	sp.tun.Close()
	delete(a.pods, sp.pod.Name)
	var errs []error
	if err := a.cfg.Registry.WithdrawKey(ctx, sp.pod.Name); err != nil {
		errs = append(errs, err)
	}
	_, exists := podByName(snap, sp.pod.Name)
	switch {
	case !exists:
		a.log.Info("stopped serving pod: gone from the registry", "pod", sp.pod.Name)
	case snap.Unenrolled(sp.pod.Tenant):
		if err := a.dp.RemoveGuard(ctx, sp.pod.NetNS); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: remove guard: %w", sp.pod.Name, err))
			// Hold it: the next round tries the removal again.
			a.held[sp.pod.Name] = heldPod{pod: sp.pod, reason: "guard removal failed"}
		} else {
			a.unguarded[sp.pod.Name] = sp.nsID
			a.log.Info("stopped serving pod: tenant unenrolled, guard removed", "pod", sp.pod.Name, "tenant", sp.pod.Tenant)
		}
	default:
		a.held[sp.pod.Name] = heldPod{pod: sp.pod, reason: "tenant not enrolled in the registry and not unenrolled"}
		a.log.Warn("tenant left the registry without 'tencrypt transit unenroll': its pod keeps its guard, its traffic to tenant peers is dropped",
			"pod", sp.pod.Name, "tenant", sp.pod.Tenant)
	}
	return errors.Join(errs...)
}

// unguardLocked removes guards that an unenrollment releases: those of held
// pods whose tenant is now unenrolled, and, once per namespace, those of
// this node's pods of unenrolled tenants that this agent did not serve (it
// was down when the tenant was unenrolled). Held pods that are gone from
// the registry, or served again, are forgotten.
func (a *Agent) unguardLocked(ctx context.Context, snap *registry.Snapshot, desired map[string]registry.Pod) error {
	var errs []error
	remove := func(p registry.Pod, tenant string) {
		id, err := a.dp.NamespaceID(p.NetNS)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", p.Name, err))
			return
		}
		if done, ok := a.unguarded[p.Name]; ok && done == id {
			delete(a.held, p.Name)
			return
		}
		if err := a.dp.RemoveGuard(ctx, p.NetNS); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: remove guard: %w", p.Name, err))
			return
		}
		delete(a.held, p.Name)
		a.unguarded[p.Name] = id
		a.log.Info("tenant unenrolled: guard removed", "pod", p.Name, "tenant", tenant)
	}
	for name, h := range a.held {
		cur, exists := podByName(snap, name)
		switch {
		case !exists:
			delete(a.held, name)
		case isDesired(desired, name):
			// Served again below (guard re-applied).
		case snap.Unenrolled(h.pod.Tenant):
			remove(cur, h.pod.Tenant)
		}
	}
	for name := range a.unguarded {
		if _, exists := podByName(snap, name); !exists {
			delete(a.unguarded, name)
		}
	}
	for _, p := range snap.Pods {
		if p.Node != a.cfg.Node || !snap.Unenrolled(p.Tenant) || a.pods[p.Name] != nil {
			continue
		}
		if _, isHeld := a.held[p.Name]; isHeld {
			continue
		}
		remove(p, p.Tenant)
	}
	return errors.Join(errs...)
}

func (a *Agent) shutdown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, sp := range a.pods {
		sp.tun.Close()
		if err := a.cfg.Registry.WithdrawKey(ctx, name); err != nil {
			a.log.Warn("withdraw key on shutdown", "pod", name, "err", err)
		}
	}
	for t := range a.psks {
		a.psks[t].key.Zero()
	}
	a.log.Info("agent stopped; guards stay in the pods (tenant traffic fails closed until an agent is back)", "pods", len(a.pods))
	a.pods = map[string]*servedPod{}
	a.publishLocked()
}

// guardConfig is the guard a pod needs: every other pod of its tenant is a
// peer (whether or not its key is published yet), every tenant Service is
// translated.
func guardConfig(p registry.Pod, snap *registry.Snapshot) guard.Config {
	c := guard.Config{TunnelIf: tunnel.DeviceName, ListenPort: tunnel.ListenPort, FwMark: tunnel.FwMark, Self: p.IP}
	for _, o := range snap.TenantPods(p.Tenant) {
		if o.Name != p.Name {
			c.Peers = append(c.Peers, o.IP)
		}
	}
	slices.SortFunc(c.Peers, func(x, y netip.Addr) int { return x.Compare(y) })
	// A Service's backends are kept only if they are the tenant's own pods
	// (or this pod): traffic to a VIP is tenant traffic, and an endpoint
	// outside the tenant (a hand-written Endpoints object) would get it
	// outside the tunnel. The guard drops such flows anyway; leaving those
	// backends out keeps connections from being balanced into that drop.
	tenantIPs := map[netip.Addr]bool{p.IP: true}
	for _, ip := range c.Peers {
		tenantIPs[ip] = true
	}
	for _, s := range snap.TenantServices(p.Tenant) {
		gs := registry.Service{Tenant: s.Tenant, Name: s.Name, VIP: s.VIP, Ports: slices.Clone(s.Ports)}
		for _, be := range s.Backends {
			if tenantIPs[be] {
				gs.Backends = append(gs.Backends, be)
			}
		}
		c.Services = append(c.Services, gs)
	}
	return c
}

func guardEqual(a, b guard.Config) bool {
	return a.TunnelIf == b.TunnelIf && a.ListenPort == b.ListenPort && a.FwMark == b.FwMark && a.Self == b.Self &&
		slices.Equal(a.Peers, b.Peers) &&
		slices.EqualFunc(a.Services, b.Services, func(x, y registry.Service) bool {
			return x.VIP == y.VIP && slices.Equal(x.Ports, y.Ports) && slices.Equal(x.Backends, y.Backends)
		})
}

// peerList is the tunnel peers of a pod: the other pods of its tenant whose
// agents published a key.
func peerList(p registry.Pod, snap *registry.Snapshot) []tunnel.Peer {
	var peers []tunnel.Peer
	for _, o := range snap.TenantPods(p.Tenant) {
		if o.Name == p.Name {
			continue
		}
		k, ok := snap.Keys[o.Name]
		if !ok {
			continue
		}
		pub, err := tunnel.ParsePublicKey(k.PublicKey)
		if err != nil {
			continue
		}
		peers = append(peers, tunnel.Peer{PublicKey: pub, IP: o.IP, Endpoint: k.Endpoint})
	}
	return peers
}

func isDesired(desired map[string]registry.Pod, name string) bool {
	_, ok := desired[name]
	return ok
}

func podByName(snap *registry.Snapshot, name string) (registry.Pod, bool) {
	i := slices.IndexFunc(snap.Pods, func(p registry.Pod) bool { return p.Name == name })
	if i < 0 {
		return registry.Pod{}, false
	}
	return snap.Pods[i], true
}

func sortedPods(m map[string]registry.Pod) []registry.Pod {
	out := make([]registry.Pod, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y registry.Pod) int { return cmp.Compare(x.Name, y.Name) })
	return out
}
