package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/transit/registry"
)

// world is two nodes' agents over one in-memory registry, one fake data
// plane and an in-memory KMS, with tenants blue (pods b1 on n1, b2 on n2)
// and red (r1 on n1), both enrolled.
type world struct {
	t      *testing.T
	reg    *memRegistry
	dp     *fakeDP
	kms    *keystest.Memory
	kek    *flakyKEK
	env    *keys.Envelope
	agents map[string]*Agent
	nextNS uint64
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, reg: newMemRegistry(), dp: newFakeDP(), kms: keystest.NewMemory("memory", nil), agents: map[string]*Agent{}}
	w.kek = &flakyKEK{KEKProvider: w.kms.Admin()}
	w.env = keys.NewEnvelope(w.kek, &keystest.AuditLog{}, time.Now)
	for _, tn := range []string{"blue", "red"} {
		if err := w.kms.Admin().CreateTenant(t.Context(), tn); err != nil {
			t.Fatal(err)
		}
		w.enroll(tn)
	}
	w.addPod("b1", "blue", "n1", "10.0.1.2")
	w.addPod("b2", "blue", "n2", "10.0.2.2")
	w.addPod("r1", "red", "n1", "10.0.1.3")
	for _, n := range []string{"n1", "n2"} {
		w.agents[n] = w.newAgent(n)
	}
	return w
}

func (w *world) newAgent(node string) *Agent {
	return New(Config{Node: node, Registry: w.reg, Keys: w.env, DataPlane: w.dp, Interval: time.Hour,
		KeyCheckInterval: time.Hour, CounterInterval: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func (w *world) enroll(tenant string) {
	w.t.Helper()
	dek, wk, err := w.env.NewDEK(w.t.Context(), tenant, registry.PSKPurpose)
	if err != nil {
		w.t.Fatal(err)
	}
	dek.Zero()
	blob, err := wk.MarshalBinary()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.reg.SetTenantKey(w.t.Context(), tenant, blob); err != nil {
		w.t.Fatal(err)
	}
}

func nsPath(pod string) string { return netns.Dir + "/pod-" + pod }

// addPod creates a pod's namespace and lists the pod.
func (w *world) addPod(name, tenant, node, ip string) {
	w.nextNS++
	w.dp.mu.Lock()
	w.dp.ns[nsPath(name)] = w.nextNS
	w.dp.mu.Unlock()
	w.reg.edit(func(s *registry.Snapshot) {
		s.Pods = append(s.Pods, registry.Pod{Name: name, Tenant: tenant, Node: node, IP: netip.MustParseAddr(ip), NetNS: nsPath(name)})
	})
}

// removePod takes a pod out of the registry; keepNS leaves its namespace.
func (w *world) removePod(name string) {
	w.reg.edit(func(s *registry.Snapshot) {
		s.Pods = slices.DeleteFunc(s.Pods, func(p registry.Pod) bool { return p.Name == name })
	})
}

// recreate gives a pod a new namespace at the same path.
func (w *world) recreate(name string) {
	w.nextNS++
	w.dp.mu.Lock()
	w.dp.ns[nsPath(name)] = w.nextNS
	w.dp.mu.Unlock()
}

// rounds runs n rounds of every agent, n1 first.
func (w *world) rounds(n int) {
	for range n {
		for _, node := range []string{"n1", "n2"} {
			w.agents[node].round(w.t.Context())
		}
	}
}

func (w *world) pubKey(pod string) string {
	w.t.Helper()
	tn := w.dp.tunnel(nsPath(pod))
	if tn == nil {
		w.t.Fatalf("pod %s has no tunnel", pod)
	}
	return tn.pub.String()
}

func (w *world) healthy(node string) {
	w.t.Helper()
	if st := w.agents[node].Status(); !st.Healthy {
		w.t.Errorf("agent %s unhealthy: %s", node, st.LastError)
	}
}

func TestReconcileServesPodsAddedAndRemoved(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	w.healthy("n1")
	w.healthy("n2")
	g, ok := w.dp.guard(nsPath("b1"))
	if !ok || !slices.Equal(g.Peers, []netip.Addr{netip.MustParseAddr("10.0.2.2")}) {
		t.Fatalf("b1's guard: %+v %v", g, ok)
	}
	b1, b2 := w.dp.tunnel(nsPath("b1")), w.dp.tunnel(nsPath("b2"))
	if got := b1.peerKeys(); !slices.Equal(got, []string{w.pubKey("b2")}) {
		t.Errorf("b1's peers %v, want b2's key", got)
	}
	if b1.psk.IsZero() || !b1.psk.Equal(&b2.psk) {
		t.Error("b1 and b2 do not share blue's non-zero PSK")
	}
	if r1 := w.dp.tunnel(nsPath("r1")); r1.psk.Equal(&b1.psk) || len(r1.peers) != 0 {
		t.Error("red's pod got blue's PSK or a peer")
	}
	if st := w.agents["n1"].Status(); len(st.Pods) != 2 || !st.Pods[0].Ready || st.Pods[0].Pod != "b1" {
		t.Errorf("n1 status: %+v", st.Pods)
	}

	w.addPod("b3", "blue", "n2", "10.0.2.3")
	w.rounds(2)
	if got := b1.peerKeys(); len(got) != 2 || !slices.Contains(got, w.pubKey("b3")) {
		t.Errorf("b1's peers after b3 came: %v", got)
	}
	if g, _ := w.dp.guard(nsPath("b1")); len(g.Peers) != 2 {
		t.Errorf("b1's guard after b3 came: %v", g.Peers)
	}

	b3 := w.dp.tunnel(nsPath("b3"))
	w.removePod("b3")
	w.rounds(2)
	if !b3.closed.Load() {
		t.Error("b3's tunnel still open after the pod left the registry")
	}
	if _, ok := w.dp.guard(nsPath("b3")); !ok {
		t.Error("b3's guard was removed for a pod that only left the registry")
	}
	if got := b1.peerKeys(); !slices.Equal(got, []string{w.pubKey("b2")}) {
		t.Errorf("b1's peers after b3 left: %v", got)
	}
	snap, _ := w.reg.Snapshot(t.Context())
	if _, ok := snap.Keys["b3"]; ok {
		t.Error("b3's key is still published")
	}
	w.healthy("n2")
}

func TestReconcilePodRekeyed(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	old := w.dp.tunnel(nsPath("b2"))
	oldKey := old.pub.String()
	w.recreate("b2")
	w.rounds(1)
	if !old.closed.Load() {
		t.Error("the re-created pod's old tunnel is still open")
	}
	fresh := w.pubKey("b2")
	if fresh == oldKey {
		t.Fatal("the re-created pod kept its key")
	}
	// n1 ran before n2 in that round; one more round and b1 knows only
	// the new key.
	w.rounds(1)
	if got := w.dp.tunnel(nsPath("b1")).peerKeys(); !slices.Equal(got, []string{fresh}) {
		t.Errorf("b1's peers %v, want only b2's new key", got)
	}
}

func TestReconcileRetriesAFailedPeerUpdate(t *testing.T) {
	w := newWorld(t)
	w.rounds(1)
	w.dp.mu.Lock()
	w.dp.failSetPeers = 1
	w.dp.mu.Unlock()
	w.agents["n1"].round(t.Context())
	st := w.agents["n1"].Status()
	if st.Healthy || st.Failures != 1 || !strings.Contains(st.LastError, "injected failure") {
		t.Errorf("after a failed peer update: healthy=%v failures=%d err=%q", st.Healthy, st.Failures, st.LastError)
	}
	w.rounds(1)
	w.healthy("n1")
	if got := w.dp.tunnel(nsPath("b1")).peerKeys(); !slices.Equal(got, []string{w.pubKey("b2")}) {
		t.Errorf("b1's peers after the retry: %v", got)
	}
}

func TestReconcileEmptyRegistryKeepsEverything(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	w.reg.edit(func(s *registry.Snapshot) { s.Tenants = map[string]registry.Tenant{} })
	w.agents["n1"].round(t.Context())
	st := w.agents["n1"].Status()
	if st.Healthy || !strings.Contains(st.LastError, "no enrolled tenant") {
		t.Errorf("status after the registry lost every tenant: %+v", st)
	}
	if tn := w.dp.tunnel(nsPath("b1")); tn.closed.Load() || len(tn.peers) != 1 {
		t.Error("b1's tunnel was changed by an empty registry")
	}
	if w.dp.count("RemoveGuard") != 0 {
		t.Error("a guard was removed")
	}
}

func TestReconcileTenantVanishedKeepsGuards(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	b1 := w.dp.tunnel(nsPath("b1"))
	w.reg.edit(func(s *registry.Snapshot) { delete(s.Tenants, "blue") })
	w.rounds(1)
	if !b1.closed.Load() || !w.dp.tunnel(nsPath("b2")).closed.Load() {
		t.Error("blue's tunnels stayed up after blue left the registry")
	}
	for _, p := range []string{"b1", "b2"} {
		if g, ok := w.dp.guard(nsPath(p)); !ok || len(g.Peers) != 1 {
			t.Errorf("pod %s lost its guard when its tenant vanished (traffic would go in clear)", p)
		}
	}
	if w.dp.count("RemoveGuard") != 0 {
		t.Error("a guard was removed")
	}
	st := w.agents["n1"].Status()
	if len(st.Held) != 1 || st.Held[0].Pod != "b1" || len(st.Pods) != 1 || st.Pods[0].Pod != "r1" {
		t.Errorf("n1 status: held %+v, pods %+v", st.Held, st.Pods)
	}
	rec := httptest.NewRecorder()
	w.agents["n1"].Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `tencrypt_transit_held_pods{tenant="blue"} 1`) {
		t.Errorf("/metrics lacks the held pod:\n%s", rec.Body)
	}
	w.healthy("n1")
	snap, _ := w.reg.Snapshot(t.Context())
	if _, ok := snap.Keys["b1"]; ok {
		t.Error("b1's key is still published")
	}
	// A pod moved to a tenant that is not enrolled is held the same way.
	w.reg.edit(func(s *registry.Snapshot) {
		for i := range s.Pods {
			if s.Pods[i].Name == "r1" {
				s.Pods[i].Tenant = "green"
			}
		}
	})
	w.rounds(1)
	if _, ok := w.dp.guard(nsPath("r1")); !ok || len(w.agents["n1"].Status().Held) != 2 {
		t.Error("a pod moved out of its tenant lost its guard or is not held")
	}

	// Enrolled again: served again, with a new tunnel.
	w.enroll("blue")
	w.rounds(2)
	if tn := w.dp.tunnel(nsPath("b1")); tn == b1 || tn.closed.Load() || len(tn.peers) != 1 {
		t.Error("b1 not served again after blue was enrolled again")
	}
	if st := w.agents["n1"].Status(); len(st.Held) != 1 || st.Held[0].Pod != "r1" {
		t.Errorf("held after re-enrollment: %+v", st.Held)
	}
}

func TestReconcileUnenrollRemovesGuards(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	if err := w.reg.UnenrollTenant(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	w.rounds(1)
	for _, p := range []string{"b1", "b2"} {
		if _, ok := w.dp.guard(nsPath(p)); ok {
			t.Errorf("pod %s kept its guard after blue was unenrolled", p)
		}
		if !w.dp.tunnel(nsPath(p)).closed.Load() {
			t.Errorf("pod %s kept its tunnel", p)
		}
	}
	if _, ok := w.dp.guard(nsPath("r1")); !ok {
		t.Error("red's guard went with blue's")
	}
	w.healthy("n1")
	removals := w.dp.count("RemoveGuard")
	w.rounds(2)
	if n := w.dp.count("RemoveGuard"); n != removals {
		t.Errorf("%d more guard removals in later rounds, want none (once per pod)", n-removals)
	}

	// Vanished first, then unenrolled: the held pod's guard goes then.
	w.reg.edit(func(s *registry.Snapshot) { delete(s.Tenants, "red") })
	w.rounds(1)
	if _, ok := w.dp.guard(nsPath("r1")); !ok {
		t.Fatal("r1 lost its guard when red vanished")
	}
	if err := w.reg.UnenrollTenant(t.Context(), "red"); err != nil {
		t.Fatal(err)
	}
	w.rounds(1)
	if _, ok := w.dp.guard(nsPath("r1")); ok {
		t.Error("r1 kept its guard after red was unenrolled")
	}
	if st := w.agents["n1"].Status(); len(st.Held) != 0 {
		t.Errorf("still held: %+v", st.Held)
	}
}

func TestReconcileUnenrolledWhileAgentDown(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	w.agents["n1"].shutdown()
	if _, ok := w.dp.guard(nsPath("b1")); !ok {
		t.Fatal("shutdown removed a guard")
	}
	if err := w.reg.UnenrollTenant(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	w.agents["n1"] = w.newAgent("n1")
	w.rounds(1)
	if _, ok := w.dp.guard(nsPath("b1")); ok {
		t.Error("a restarted agent left the guard of an unenrolled tenant's pod")
	}
}

func TestReconcileKMSErrorFailsClosed(t *testing.T) {
	w := newWorld(t)
	w.kek.down.Store(true)
	w.rounds(1)
	st := w.agents["n1"].Status()
	if st.Healthy || !strings.Contains(st.LastError, "open transit key") {
		t.Errorf("KMS down: healthy=%v err=%q", st.Healthy, st.LastError)
	}
	b1 := w.dp.tunnel(nsPath("b1"))
	if _, ok := w.dp.guard(nsPath("b1")); !ok || b1 == nil || len(b1.peers) != 0 || !b1.psk.IsZero() {
		t.Fatal("with the KMS down, b1 must have its guard and a tunnel with no peers and no PSK")
	}
	w.kek.down.Store(false)
	w.rounds(2)
	w.healthy("n1")
	if len(b1.peers) != 1 {
		t.Error("b1 got no peer once the KMS was back")
	}

	// Shredded: a state, not a failure; peers go, guards stay.
	if err := w.kms.Admin().Shred(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	for _, a := range w.agents {
		a.cfg.KeyCheckInterval = time.Nanosecond
	}
	w.rounds(1)
	w.healthy("n1")
	if len(b1.peers) != 0 || !b1.psk.IsZero() {
		t.Error("a shredded tenant's tunnel kept its peers or PSK")
	}
	if _, ok := w.dp.guard(nsPath("b1")); !ok {
		t.Error("a shredded tenant's pod lost its guard")
	}
	st = w.agents["n1"].Status()
	if i := slices.IndexFunc(st.Tenants, func(ts TenantStatus) bool { return ts.Tenant == "blue" }); i < 0 || st.Tenants[i].Usable {
		t.Errorf("tenants: %+v", st.Tenants)
	}
}

func TestReconcileRefusesNamespacesOutsideTheDirectory(t *testing.T) {
	reg := newMemRegistry()
	kms := keystest.NewMemory("memory", nil)
	env := keys.NewEnvelope(kms.Admin(), &keystest.AuditLog{}, time.Now)
	if err := kms.Admin().CreateTenant(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	reg.snap.Tenants["blue"] = registry.Tenant{PSK: []byte("x")}
	// The real data plane: these paths are refused before anything is
	// opened, so the test needs no root.
	for _, p := range []string{"/proc/1/ns/net", "/run/netns/../../proc/1/ns/net", "run/netns/x", "/run/netns"} {
		reg.snap.Pods = append(reg.snap.Pods, registry.Pod{Name: p, Tenant: "blue", Node: "n1", IP: netip.MustParseAddr("10.0.0.1"), NetNS: p})
	}
	a := New(Config{Node: "n1", Registry: reg, Keys: env, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	err := a.Reconcile(t.Context())
	if !errors.Is(err, netns.ErrOutside) {
		t.Fatalf("Reconcile = %v, want ErrOutside", err)
	}
	if n := strings.Count(err.Error(), "outside"); n != 4 {
		t.Errorf("%d of 4 paths refused: %v", n, err)
	}
	if len(a.pods) != 0 {
		t.Errorf("served %d pods at refused paths", len(a.pods))
	}
}

func TestStatusServedFromTheLastRound(t *testing.T) {
	w := newWorld(t)
	a := w.agents["n1"]
	w.rounds(2)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	reads := w.dp.count("GuardCounters")
	if reads != 3 {
		t.Errorf("%d counter reads in two rounds with a long interval, want 3 (once per pod)", reads)
	}
	for range 5 {
		for _, path := range []string{"/status", "/metrics", "/healthz"} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %s", path, resp.Status)
			}
			if path == "/metrics" && !strings.Contains(string(body), `tencrypt_transit_dropped_packets_total{pod="b1",reason="plaintext-out",tenant="blue"} 7`) {
				t.Errorf("/metrics lacks the cached counter:\n%s", body)
			}
		}
	}
	if n := w.dp.count("GuardCounters"); n != reads {
		t.Errorf("requests read the guard counters %d times; want none", n-reads)
	}

	// A round blocked in the data plane (nft, KMS) does not block health
	// or status.
	w.addPod("b4", "blue", "n1", "10.0.1.4")
	block, entered := make(chan struct{}), make(chan struct{}, 1)
	w.dp.mu.Lock()
	w.dp.block, w.dp.entered = block, entered
	w.dp.mu.Unlock()
	done := make(chan struct{})
	go func() { a.round(t.Context()); close(done) }()
	<-entered
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st, err := FetchStatus(t.Context(), srv.Client(), srv.URL)
	if err != nil || resp.StatusCode != 200 || len(st.Pods) != 2 {
		t.Errorf("during a round: healthz %s, status %+v %v", resp.Status, st.Pods, err)
	}
	w.dp.mu.Lock()
	w.dp.block = nil
	w.dp.mu.Unlock()
	close(block)
	<-done
	if st := a.Status(); len(st.Pods) != 3 {
		t.Errorf("after the round: %d pods, want 3", len(st.Pods))
	}
}

func TestMissingGuardIsAppliedAgain(t *testing.T) {
	w := newWorld(t)
	w.rounds(1)
	w.dp.mu.Lock()
	delete(w.dp.guards, nsPath("b1")) // someone in the pod deleted the table
	w.dp.mu.Unlock()
	a := w.agents["n1"]
	a.mu.Lock()
	for _, sp := range a.pods {
		sp.countersAt = time.Time{}
	}
	a.mu.Unlock()
	w.rounds(2)
	if _, ok := w.dp.guard(nsPath("b1")); !ok {
		t.Error("a guard found missing was not applied again")
	}
}

// waitUntil polls cond for up to 30 s (generous: the test asserts that
// something happens, not how fast).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 30 s for %s", what)
		}
	}
}

// A registry change runs a round at once: with hour-long periods, only the
// watch can have served the new pod.
func TestRegistryChangeTriggersARound(t *testing.T) {
	w := newWorld(t)
	a := w.agents["n1"]
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil(t, "the first round", func() bool { return a.Status().Rounds >= 1 })
	if st := a.Status(); st.LastError != "" {
		// A failed round is retried after a second, which would pass the
		// test without the watch.
		t.Fatalf("first round failed: %s", st.LastError)
	}
	w.addPod("b4", "blue", "n1", "10.0.1.4")
	waitUntil(t, "b4 served after the registry listed it", func() bool { return w.dp.tunnel(nsPath("b4")) != nil })
	waitUntil(t, "b1's guard to include b4", func() bool {
		g, _ := w.dp.guard(nsPath("b1"))
		return slices.Contains(g.Peers, netip.MustParseAddr("10.0.1.4"))
	})
}

// Rounds with nothing to do act on no pod: no guard applied, no tunnel
// made, no counters read before they are due. A change re-applies the
// guards of the pods it concerns only.
func TestIdleRoundsTouchNoPod(t *testing.T) {
	w := newWorld(t)
	w.rounds(2)
	ops := []string{"ApplyGuard", "RemoveGuard", "GuardCounters", "NewTunnel"}
	before := map[string]int{}
	for _, op := range ops {
		before[op] = w.dp.count(op)
	}
	w.rounds(3)
	for _, op := range ops {
		if n := w.dp.count(op); n != before[op] {
			t.Errorf("%s ran %d times in idle rounds", op, n-before[op])
		}
	}
	w.addPod("r2", "red", "n2", "10.0.2.9")
	applied := w.dp.count("ApplyGuard")
	w.rounds(1)
	// r1's guard (its peers changed) and r2's new one; blue's untouched.
	if n := w.dp.count("ApplyGuard") - applied; n != 2 {
		t.Errorf("a new red pod applied %d guards, want 2 (r1 and r2)", n)
	}
}
