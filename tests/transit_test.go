package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/internal/nettest"
	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/lab"
	"github.com/tencrypt/tencrypt/transit/agent"
	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// transitLab is the default lab with tenant blue enrolled in transit
// encryption, red not, and one agent process per node.
type transitLab struct {
	t        *testing.T
	m        *lab.Manager
	name     string
	stateDir string
	plan     *lab.Plan
	env      []string
	agents   map[string]*agentProc
	// agentArgs are the agents' interval flags.
	agentArgs []string
}

type agentProc struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

// syncBuffer collects a child's output; os/exec copies into it from its own
// goroutine while the test may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitTimeout bounds every wait for a condition; it is a deadline for a
// test that would otherwise hang, not a performance assertion.
const waitTimeout = 30 * time.Second

func newTransitLab(t *testing.T) *transitLab {
	t.Helper()
	return newTransitLabWith(t, "--interval", "200ms", "--key-check-interval", "500ms")
}

// newTransitLabWith starts the agents with agentArgs (their interval flags).
func newTransitLabWith(t *testing.T, agentArgs ...string) *transitLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "nft")
	dir := t.TempDir()
	l := &transitLab{
		t:         t,
		name:      testenv.Name("x"),
		stateDir:  filepath.Join(dir, "lab"),
		agents:    map[string]*agentProc{},
		agentArgs: agentArgs,
		env: append(os.Environ(),
			"TENCRYPT_LOCAL_PATH="+filepath.Join(dir, "keyring"),
			"TENCRYPT_LOCAL_KEY_FILE="+filepath.Join(dir, "admin.key"),
			"TENCRYPT_AUDIT_LOG="+filepath.Join(dir, "audit.jsonl"),
		),
	}
	l.m = lab.New(l.stateDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	topo := lab.DefaultTopology()
	topo.Name = l.name
	t.Cleanup(func() {
		for node := range l.agents {
			l.stopAgent(node, syscall.SIGTERM)
		}
		if _, err := l.m.Down(context.Background(), l.name); err != nil {
			t.Errorf("cleanup: lab down: %v", err)
		}
	})
	var err error
	if l.plan, err = l.m.Up(context.Background(), topo); err != nil {
		t.Fatal(err)
	}
	l.run("keys", "init")
	l.run("keys", "create", "blue")
	l.run("keys", "create", "red")
	l.run("transit", "enroll", "blue", "--name", l.name, "--state-dir", l.stateDir)
	for _, n := range l.plan.Nodes {
		l.startAgent(n.Name)
	}
	l.waitReady()
	return l
}

// run runs the binary and fails the test if it exits non-zero.
func (l *transitLab) run(args ...string) string {
	l.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = l.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("tencrypt %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (l *transitLab) startAgent(node string) {
	l.t.Helper()
	addr := freePort(l.t)
	if old, ok := l.agents[node]; ok {
		addr = old.addr
	}
	a := &agentProc{addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command(bin, append([]string{"agent", "--name", l.name, "--state-dir", l.stateDir, "--node", node,
		"--listen", addr}, l.agentArgs...)...)
	a.cmd.Env = l.env
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	l.agents[node] = a
}

func (l *transitLab) stopAgent(node string, sig syscall.Signal) {
	a, ok := l.agents[node]
	if !ok {
		return
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(waitTimeout):
		a.cmd.Process.Kill()
		<-a.done
	}
	if strings.Contains(a.log.String(), "WARNING: DATA RACE") {
		l.t.Errorf("the race detector fired in agent %s (binary built with TENCRYPT_TEST_RACE=1)", node)
	}
	if l.t.Failed() {
		l.t.Logf("agent %s log:\n%s", node, a.log)
	}
}

func (l *transitLab) status(node string) (agent.Status, error) {
	var st agent.Status
	resp, err := http.Get("http://" + l.agents[node].addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitFor polls cond until it holds or waitTimeout passes.
func (l *transitLab) waitFor(what string, cond func() (bool, string)) {
	l.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("timed out waiting for %s: %s", what, last)
}

// waitReady waits until every blue pod's tunnel knows the current key of
// every other blue pod.
func (l *transitLab) waitReady() {
	l.t.Helper()
	l.waitFor("blue's mesh to be complete", func() (bool, string) {
		var all []agent.Status
		for node := range l.agents {
			st, err := l.status(node)
			if err != nil {
				return false, err.Error()
			}
			all = append(all, st)
		}
		n := 0
		for _, st := range all {
			n += len(st.Pods)
		}
		if n != 4 {
			return false, fmt.Sprintf("%d of 4 pods served", n)
		}
		problems := agent.MeshProblems(all)
		return len(problems) == 0, strings.Join(problems, "; ")
	})
}

func (l *transitLab) ns(name string) *netns.Handle {
	l.t.Helper()
	nsName := ""
	if p, ok := l.plan.Pod(name); ok {
		nsName = p.NetNS
	} else if n, ok := l.plan.Node(name); ok {
		nsName = n.NetNS
	} else if name == "underlay" {
		nsName = l.plan.UnderlayNS
	}
	h, err := netns.Open(nsName)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { h.Close() })
	return h
}

func (l *transitLab) ip(pod string) netip.Addr {
	p, _ := l.plan.Pod(pod)
	return p.IP
}

// captures watches every port of every switch: each pod's veth on its
// node's bridge, and each node's port on the underlay switch, where an
// attacker on the pod network or the overlay sits. (A capture on a bridge
// device itself would miss frames switched between its ports.)
func (l *transitLab) captures() map[string]*nettest.Capture {
	caps := map[string]*nettest.Capture{}
	for _, p := range l.plan.Pods {
		caps[p.Name] = nettest.StartCapture(l.t, l.ns(p.Node), p.HostVeth)
	}
	for _, n := range l.plan.Nodes {
		caps["underlay/"+n.Name] = nettest.StartCapture(l.t, l.ns("underlay"), n.UnderlayPort)
	}
	return caps
}

func marker(what string) []byte {
	b := make([]byte, 8)
	rand.Read(b)
	return []byte("TENCRYPT-MARKER-" + what + "-" + hex.EncodeToString(b))
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sendTCP(t *testing.T, h *netns.Handle, to netip.AddrPort, payload []byte) {
	t.Helper()
	c, err := nettest.Dial(ctxTimeout(t), h, "tcp4", to)
	if err != nil {
		t.Fatalf("connect to %s: %v", to, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	// The listener echoes: reading the echo proves the reply path too.
	buf := make([]byte, len(payload))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, payload) {
		t.Fatalf("echo from %s: %q, %v", to, buf, err)
	}
}

func TestTransitEncryptsSameTenantTraffic(t *testing.T) {
	l := newTransitLab(t)
	caps := l.captures()
	var secret [][]byte

	tests := []struct {
		name, from, to string
		network        string
		viaVIP         bool
	}{
		{"same node tcp", "blue-1a", "blue-1b", "tcp", false},
		{"same node udp", "blue-1b", "blue-1a", "udp", false},
		{"across nodes tcp", "blue-1a", "blue-2b", "tcp", false},
		{"across nodes udp", "blue-2a", "blue-1b", "udp", false},
		{"service VIP tcp", "blue-2b", "", "tcp", true},
		{"service VIP udp", "blue-1a", "", "udp", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := marker(strings.ReplaceAll(tt.name, " ", "-"))
			secret = append(secret, mk)
			port := uint16(9000)
			var listeners []*nettest.Listener
			targets := []string{tt.to}
			if tt.viaVIP {
				port, targets = 8080, []string{"blue-1a", "blue-1b", "blue-2a", "blue-2b"}
			}
			for _, pod := range targets {
				addr := netip.AddrPortFrom(netip.IPv4Unspecified(), port)
				if tt.network == "tcp" {
					listeners = append(listeners, nettest.ListenTCP(t, l.ns(pod), addr))
				} else {
					listeners = append(listeners, nettest.ListenUDP(t, l.ns(pod), addr))
				}
			}
			dst := netip.AddrPortFrom(l.ip(tt.to), port)
			if tt.viaVIP {
				dst = netip.AddrPortFrom(netip.MustParseAddr("10.96.0.10"), 80)
			}
			if tt.network == "tcp" {
				sendTCP(t, l.ns(tt.from), dst, mk)
			} else if err := nettest.SendUDP(ctxTimeout(t), l.ns(tt.from), dst, mk); err != nil {
				t.Fatal(err)
			}
			if tt.network == "udp" || tt.viaVIP {
				ctx := ctxTimeout(t)
				got := make(chan int, len(listeners))
				for i, ln := range listeners {
					go func() {
						if ln.WaitFor(ctx, mk) == nil {
							got <- i
						}
					}()
				}
				select {
				case <-got:
				case <-ctx.Done():
					t.Fatalf("%s never arrived", mk)
				}
			}
		})
	}

	// Positive control: red is not enrolled, so its traffic is left alone,
	// in plaintext, and the captures can see a marker when there is one.
	plain := marker("red-plaintext")
	ln := nettest.ListenTCP(t, l.ns("red-2a"), netip.AddrPortFrom(netip.IPv4Unspecified(), 9001))
	sendTCP(t, l.ns("red-1a"), netip.AddrPortFrom(l.ip("red-2a"), 9001), plain)
	if !ln.Seen(plain) {
		t.Fatal("red's plaintext did not arrive")
	}
	for _, at := range []string{"red-1a", "underlay/node1", "underlay/node2", "red-2a"} {
		if err := caps[at].WaitFor(ctxTimeout(t), plain); err != nil {
			t.Fatalf("capture at %s did not see red's plaintext: the capture is blind (%v)", at, err)
		}
	}

	for at, c := range caps {
		// Stop drains what the kernel queued: only then is "not seen" a proof.
		for _, mk := range secret {
			c.AssertNotSeen(t, mk)
		}
		// Blue pods' ports see WireGuard directly; the underlay sees it
		// inside VXLAN, which the capture does not unwrap.
		if strings.HasPrefix(at, "blue-") && c.Stats().WireGuard == 0 {
			t.Errorf("capture at %s saw no WireGuard packets", at)
		}
	}
}

// dropped reads a pod's guard counters.
func (l *transitLab) dropped(pod string) guard.Counters {
	l.t.Helper()
	c, err := guard.ReadCounters(context.Background(), netns.Path(l.nsName(pod)))
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func (l *transitLab) nsName(pod string) string {
	p, _ := l.plan.Pod(pod)
	return p.NetNS
}

func TestTransitGuardDropsForgedPlaintext(t *testing.T) {
	l := newTransitLab(t)
	victim := "blue-2a"
	ln := nettest.ListenUDP(t, l.ns(victim), netip.AddrPortFrom(netip.IPv4Unspecified(), 9100))
	tcp := nettest.ListenTCP(t, l.ns(victim), netip.AddrPortFrom(netip.IPv4Unspecified(), 9101))
	before := l.dropped(victim)

	forged := marker("forged")
	src := l.ip("blue-1a") // a tenant peer's address, forged
	// From a pod of another tenant on another node, and from the underlay
	// switch itself: both positions of the threat model.
	for _, from := range []*netns.Handle{l.ns("red-1a"), l.ns("red-2a")} {
		if err := nettest.InjectUDP(from, netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(l.ip(victim), 9100), forged); err != nil {
			t.Fatal(err)
		}
		if err := nettest.InjectTCPSYN(from, netip.AddrPortFrom(src, 40001), netip.AddrPortFrom(l.ip(victim), 9101), forged); err != nil {
			t.Fatal(err)
		}
	}
	// The guard's counter moving is the proof the packets reached the pod.
	l.waitFor("the guard to count 4 forged packets", func() (bool, string) {
		c := l.dropped(victim)
		n := c.PlaintextInPackets - before.PlaintextInPackets
		return n >= 4, fmt.Sprintf("%d counted", n)
	})
	if ln.Seen(forged) || len(tcp.Accepted()) > 0 {
		t.Error("a forged plaintext packet from a tenant peer's address was delivered")
	}

	// Real traffic from that peer still arrives, through the tunnel.
	real := marker("real")
	if err := nettest.SendUDP(ctxTimeout(t), l.ns("blue-1a"), netip.AddrPortFrom(l.ip(victim), 9100), real); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctxTimeout(t), real); err != nil {
		t.Fatal(err)
	}
}

func TestTransitReplayedAndModifiedWireGuardDropped(t *testing.T) {
	l := newTransitLab(t)
	victim, sender := "blue-2a", "blue-1a"
	// The victim's bridge port carries its traffic decapsulated from VXLAN:
	// the attacker's view of the WireGuard packets themselves.
	vp, _ := l.plan.Pod(victim)
	bridge := nettest.StartCapture(t, l.ns("node2"), vp.HostVeth)
	ln := nettest.ListenUDP(t, l.ns(victim), netip.AddrPortFrom(netip.IPv4Unspecified(), 9200))
	mk := marker("replay")
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(sender), netip.AddrPortFrom(l.ip(victim), 9200), mk); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctxTimeout(t), mk); err != nil {
		t.Fatal(err)
	}
	// Find the WireGuard transport packet that carried it (the largest
	// WireGuard datagram from sender to victim so far).
	// Stop drains the capture, so every frame that passed is in Frames.
	if err := bridge.Stop(); err != nil {
		t.Fatal(err)
	}
	var wg []byte
	for _, f := range bridge.Frames() {
		info, ok := nettest.ParseFrame(f)
		if !ok || info.Proto != nettest.ProtoUDP || info.Src != l.ip(sender) || info.Dst != l.ip(victim) || info.DstPort != tunnel.ListenPort {
			continue
		}
		// Ethernet 14, IPv4 20 (no options here), UDP 8.
		payload := f[14+20+8:]
		if len(payload) > len(wg) && payload[0] == 4 { // 4: WireGuard transport data
			wg = bytes.Clone(payload)
		}
	}
	if wg == nil {
		t.Fatal("no WireGuard transport packet from sender to victim was captured")
	}
	modified := bytes.Clone(wg)
	modified[len(modified)-20] ^= 0x01
	from := netip.AddrPortFrom(l.ip(sender), tunnel.ListenPort)
	to := netip.AddrPortFrom(l.ip(victim), tunnel.ListenPort)
	for _, p := range [][]byte{wg, modified} {
		if err := nettest.InjectUDP(l.ns("red-1a"), from, to, p); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh marker sent afterwards on the same path; once it is in, the
	// injected packets, queued before it, have been processed.
	after := marker("after")
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(sender), netip.AddrPortFrom(l.ip(victim), 9200), after); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctxTimeout(t), after); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range ln.Received() {
		if bytes.Contains(r.Data, mk) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the marked datagram was delivered %d times; a replayed or modified WireGuard packet got through", n)
	}
}

func TestTransitFailsClosedWhenAgentKilled(t *testing.T) {
	l := newTransitLab(t)
	caps := l.captures()
	src, dst := "blue-1a", "blue-2a"
	ln := nettest.ListenTCP(t, l.ns(dst), netip.AddrPortFrom(netip.IPv4Unspecified(), 9300))
	c, err := nettest.Dial(ctxTimeout(t), l.ns(src), "tcp4", netip.AddrPortFrom(l.ip(dst), 9300))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := marker("before-kill")
	c.Write(first)
	if err := ln.WaitFor(ctxTimeout(t), first); err != nil {
		t.Fatal(err)
	}

	// SIGKILL mid-transfer: no chance to clean up.
	l.stopAgent("node1", syscall.SIGKILL)
	delete(l.agents, "node1")
	l.waitFor("tenc0 to vanish with the agent", func() (bool, string) {
		out, _ := exec.Command("ip", "-n", l.nsName(src), "link", "show", tunnel.DeviceName).CombinedOutput()
		return strings.Contains(string(out), "does not exist"), string(out)
	})
	before := l.dropped(src)
	during := marker("agent-dead")
	c.Write(during) // queued in TCP, retransmitted, dropped by the guard
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(src), netip.AddrPortFrom(l.ip(dst), 9301), during); err == nil {
		t.Error("a UDP send to a tenant peer succeeded with no tunnel; want it refused by the guard")
	}
	l.waitFor("the guard to drop outgoing plaintext", func() (bool, string) {
		n := l.dropped(src).PlaintextOutPackets - before.PlaintextOutPackets
		return n >= 2, fmt.Sprintf("%d dropped", n)
	})

	// Back up: the same TCP connection resumes through a new tunnel.
	l.startAgent("node1")
	l.waitReady()
	if err := ln.WaitFor(ctxTimeout(t), during); err != nil {
		t.Fatalf("the connection did not resume after the agent came back: %v", err)
	}
	for _, cp := range caps {
		cp.AssertNotSeen(t, first)
		cp.AssertNotSeen(t, during)
	}
}

// With periodic rounds an hour apart, only registry notifications can
// build the mesh (each agent learns the other's keys after its first round)
// and rebuild it after an agent restarts with new keys; an open connection
// resumes, and nothing crosses the pod network in clear.
func TestTransitAgentsReconcileOnRegistryChange(t *testing.T) {
	l := newTransitLabWith(t, "--interval", "1h", "--counter-interval", "1h", "--key-check-interval", "1h")
	caps := l.captures()
	src, dst := "blue-1a", "blue-2b"
	ln := nettest.ListenTCP(t, l.ns(dst), netip.AddrPortFrom(netip.IPv4Unspecified(), 9310))
	c, err := nettest.Dial(ctxTimeout(t), l.ns(src), "tcp4", netip.AddrPortFrom(l.ip(dst), 9310))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := marker("watch-before")
	c.Write(first)
	if err := ln.WaitFor(ctxTimeout(t), first); err != nil {
		t.Fatal(err)
	}
	l.stopAgent("node2", syscall.SIGTERM)
	l.startAgent("node2")
	l.waitReady()
	after := marker("watch-after")
	c.Write(after)
	if err := ln.WaitFor(ctxTimeout(t), after); err != nil {
		t.Fatalf("the connection did not resume after node2's agent restarted: %v", err)
	}
	for _, cp := range caps {
		cp.AssertNotSeen(t, first)
		cp.AssertNotSeen(t, after)
	}
}

func TestTransitPodRecreatedWithNewKey(t *testing.T) {
	l := newTransitLab(t)
	pod, peer := "blue-2b", "blue-1a"
	keyOf := func(node, p string) string {
		st, err := l.status(node)
		if err != nil {
			return ""
		}
		for _, ps := range st.Pods {
			if ps.Pod == p {
				return ps.PublicKey
			}
		}
		return ""
	}
	old := keyOf("node2", pod)
	if old == "" {
		t.Fatal("no key for the pod")
	}
	if err := l.m.RestartPod(context.Background(), l.name, pod); err != nil {
		t.Fatal(err)
	}
	var fresh string
	l.waitFor("a new key for the re-created pod, known to its peer", func() (bool, string) {
		fresh = keyOf("node2", pod)
		if fresh == "" || fresh == old {
			return false, "pod still has its old key"
		}
		st, err := l.status("node1")
		if err != nil {
			return false, err.Error()
		}
		for _, ps := range st.Pods {
			if ps.Pod != peer {
				continue
			}
			hasNew, hasOld := false, false
			for _, p := range ps.Peers {
				hasNew = hasNew || p.PublicKey.String() == fresh
				hasOld = hasOld || p.PublicKey.String() == old
			}
			return hasNew && !hasOld, fmt.Sprintf("peer has new=%v old=%v", hasNew, hasOld)
		}
		return false, "peer not served"
	})
	mk := marker("recreated")
	ln := nettest.ListenUDP(t, l.ns(pod), netip.AddrPortFrom(netip.IPv4Unspecified(), 9400))
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(peer), netip.AddrPortFrom(l.ip(pod), 9400), mk); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctxTimeout(t), mk); err != nil {
		t.Fatal(err)
	}
}

func TestTransitAgentEndpoints(t *testing.T) {
	l := newTransitLab(t)
	a := l.agents["node1"]
	resp, err := http.Get("http://" + a.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	resp, err = http.Get("http://" + a.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tencrypt_transit_pods{tenant="blue"} 2`,
		`tencrypt_transit_peers{pod="blue-1a",tenant="blue"} 3`,
		`tencrypt_transit_dropped_packets_total{pod="blue-1a",reason="plaintext-in",tenant="blue"}`,
		`tencrypt_transit_agent_healthy 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	out := l.run("transit", "status", "--agent", a.addr, "--agent", l.agents["node2"].addr, "--json")
	var sts []agent.Status
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 2 || len(sts[0].Pods) != 2 {
		t.Errorf("transit status --json: %v\n%s", err, out)
	}
	// The agent's log names keys by abbreviation only: no private or
	// pre-shared key material, whose hex or base64 forms are long.
	if logs := a.log.String(); strings.Contains(logs, "private_key") || strings.Contains(logs, "preshared_key") {
		t.Errorf("agent log mentions key material:\n%s", logs)
	}
}

// tenantState returns what an agent says of a tenant.
func (l *transitLab) tenantState(node, tenant string) (agent.TenantStatus, bool) {
	st, err := l.status(node)
	if err != nil {
		return agent.TenantStatus{}, false
	}
	for _, t := range st.Tenants {
		if t.Tenant == tenant {
			return t, true
		}
	}
	return agent.TenantStatus{}, false
}

func TestTransitKeyRotationAndShredding(t *testing.T) {
	l := newTransitLab(t)
	src, dst := "blue-1a", "blue-2b"
	ln := nettest.ListenTCP(t, l.ns(dst), netip.AddrPortFrom(netip.IPv4Unspecified(), 9500))
	c, err := nettest.Dial(ctxTimeout(t), l.ns(src), "tcp4", netip.AddrPortFrom(l.ip(dst), 9500))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := marker("before-rotation")
	c.Write(before)
	if err := ln.WaitFor(ctxTimeout(t), before); err != nil {
		t.Fatal(err)
	}

	// Rotate the KEK, then move transit onto it: every agent takes the new
	// PSK and tunnels re-handshake; the open connection carries on.
	l.run("keys", "rotate", "blue")
	l.waitFor("the agents to notice the KEK rotation", func() (bool, string) {
		for node := range l.agents {
			ts, _ := l.tenantState(node, "blue")
			if ts.CurrentKEKVersion != 2 || ts.KEKVersion != 1 {
				return false, fmt.Sprintf("%s: %+v", node, ts)
			}
		}
		return true, ""
	})
	l.run("transit", "rotate", "blue", "--name", l.name, "--state-dir", l.stateDir)
	l.waitFor("both agents to use the PSK under KEK version 2", func() (bool, string) {
		for node := range l.agents {
			ts, ok := l.tenantState(node, "blue")
			if !ok || !ts.Usable || ts.KEKVersion != 2 {
				return false, fmt.Sprintf("%s: %+v", node, ts)
			}
		}
		return true, ""
	})
	after := marker("after-rotation")
	c.Write(after)
	if err := ln.WaitFor(ctxTimeout(t), after); err != nil {
		t.Fatalf("the connection did not survive the PSK rotation: %v", err)
	}

	// Shred the tenant: agents notice, tunnels lose their peers, the guards
	// drop the tenant's traffic. Nothing falls back to plaintext.
	l.run("keys", "shred", "blue", "--yes")
	l.waitFor("both agents to report blue's transit key unusable", func() (bool, string) {
		for node := range l.agents {
			ts, ok := l.tenantState(node, "blue")
			if !ok || ts.Usable || !strings.Contains(ts.Problem, "shredded") {
				return false, fmt.Sprintf("%s: %+v", node, ts)
			}
		}
		return true, ""
	})
	l.waitFor("blue's tunnels to have no peers", func() (bool, string) {
		st, err := l.status("node1")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range st.Pods {
			if len(p.Peers) != 0 {
				return false, fmt.Sprintf("%s has %d peers", p.Pod, len(p.Peers))
			}
		}
		return true, ""
	})
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(src), netip.AddrPortFrom(l.ip(dst), 9501), marker("shredded")); err == nil {
		t.Error("a UDP send to a tenant peer succeeded after the tenant was shredded; want the guard to refuse it")
	}
	// A shredded tenant is a state, not an agent failure.
	for node := range l.agents {
		if st, err := l.status(node); err != nil || !st.Healthy {
			t.Errorf("agent %s unhealthy after a shred: %+v %v", node, st.LastError, err)
		}
	}
}

// editRegistry changes the lab's registry file under its lock, as someone
// with write access to it (or a lost entry) would.
func (l *transitLab) editRegistry(fn func(tenants map[string]json.RawMessage)) {
	l.t.Helper()
	path := filepath.Join(l.stateDir, l.name+".transit.json")
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		l.t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	var tenants map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		l.t.Fatal(err)
	}
	if err := json.Unmarshal(doc["tenants"], &tenants); err != nil {
		l.t.Fatal(err)
	}
	fn(tenants)
	if doc["tenants"], err = json.Marshal(tenants); err != nil {
		l.t.Fatal(err)
	}
	if data, err = json.Marshal(doc); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		l.t.Fatal(err)
	}
}

func (l *transitLab) guardInstalled(pod string) bool {
	l.t.Helper()
	ok, err := guard.Installed(context.Background(), netns.Path(l.nsName(pod)))
	if err != nil {
		l.t.Fatal(err)
	}
	return ok
}

func TestTransitTenantVanishedKeepsGuardsUntilUnenrolled(t *testing.T) {
	l := newTransitLab(t)
	// Red enrolled too, so that blue vanishing leaves the registry listing a
	// tenant (an empty registry is refused as a whole).
	l.run("transit", "enroll", "red", "--name", l.name, "--state-dir", l.stateDir)
	src, dst := "blue-1a", "blue-2a"
	blue := []string{"blue-1a", "blue-1b", "blue-2a", "blue-2b"}
	l.editRegistry(func(tenants map[string]json.RawMessage) { delete(tenants, "blue") })
	l.waitFor("blue's pods to lose their tunnels and be held", func() (bool, string) {
		held := 0
		for node := range l.agents {
			st, err := l.status(node)
			if err != nil {
				return false, err.Error()
			}
			for _, p := range st.Pods {
				if p.Tenant == "blue" {
					return false, "blue pod " + p.Pod + " still served"
				}
			}
			held += len(st.Held)
		}
		return held == len(blue), fmt.Sprintf("%d held", held)
	})
	for _, p := range blue {
		if !l.guardInstalled(p) {
			t.Errorf("pod %s lost its guard when blue vanished from the registry", p)
		}
	}
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(src), netip.AddrPortFrom(l.ip(dst), 9601), marker("vanished")); err == nil {
		t.Error("a UDP send to a tenant peer succeeded after the tenant vanished; want the guard to refuse it")
	}

	// The operator's explicit unenrollment releases the guards: blue's
	// traffic is plain again, as asked.
	l.run("transit", "unenroll", "blue", "--name", l.name, "--state-dir", l.stateDir)
	l.waitFor("blue's guards to be removed", func() (bool, string) {
		for _, p := range blue {
			if l.guardInstalled(p) {
				return false, p + " still guarded"
			}
		}
		return true, ""
	})
	ln := nettest.ListenUDP(t, l.ns(dst), netip.AddrPortFrom(netip.IPv4Unspecified(), 9602))
	mk := marker("unenrolled")
	if err := nettest.SendUDP(ctxTimeout(t), l.ns(src), netip.AddrPortFrom(l.ip(dst), 9602), mk); err != nil {
		t.Fatal(err)
	}
	if err := ln.WaitFor(ctxTimeout(t), mk); err != nil {
		t.Errorf("plain traffic after unenrollment: %v", err)
	}
	for node := range l.agents {
		if st, err := l.status(node); err != nil || !st.Healthy || len(st.Held) != 0 {
			t.Errorf("agent %s after unenrollment: %+v %v", node, st, err)
		}
	}
}
