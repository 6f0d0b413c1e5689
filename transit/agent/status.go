package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// Status is what `tencrypt transit status` shows and /status serves.
type Status struct {
	Node      string         `json:"node"`
	Healthy   bool           `json:"healthy"`
	LastRound time.Time      `json:"last_round,omitzero"`
	LastError string         `json:"last_error,omitempty"`
	Rounds    uint64         `json:"rounds"`
	Failures  uint64         `json:"failed_rounds"`
	Tenants   []TenantStatus `json:"tenants"`
	Pods      []PodStatus    `json:"pods"`
}

// TenantStatus is an enrolled tenant as this agent sees it.
type TenantStatus struct {
	Tenant string `json:"tenant"`
	// Usable is false when the tenant's transit key cannot be opened, for
	// the reason in Problem (its keys were shredded, say).
	Usable     bool   `json:"usable"`
	KEKVersion uint32 `json:"kek_version,omitempty"`
	// CurrentKEKVersion is the tenant's newest KEK version as the key
	// backend last reported it; above KEKVersion, the transit key awaits
	// `tencrypt transit rotate`.
	CurrentKEKVersion uint32 `json:"current_kek_version,omitempty"`
	Problem           string `json:"problem,omitempty"`
}

// PodStatus is one served pod.
type PodStatus struct {
	Pod       string             `json:"pod"`
	Tenant    string             `json:"tenant"`
	IP        netip.Addr         `json:"ip"`
	PublicKey string             `json:"public_key"`
	TunnelMTU int                `json:"tunnel_mtu"`
	TunnelUp  bool               `json:"tunnel_up"`
	Peers     []tunnel.PeerStats `json:"peers"`
	// ExpectedPeers is the number of other pods in the tenant. Ready means
	// the tunnel is up with a peer for each of them.
	ExpectedPeers int  `json:"expected_peers"`
	Ready         bool `json:"ready"`
	// Dropped are the guard's counters: plaintext or forged packets from or
	// to tenant peers that it stopped.
	Dropped    guard.Counters `json:"dropped"`
	GuardError string         `json:"guard_error,omitempty"`
}

// Totals sums the pod's tunnel counters over its peers: bytes received and
// sent, and how many peers completed a handshake.
func (p *PodStatus) Totals() (rx, tx uint64, handshaken int) {
	for _, peer := range p.Peers {
		rx += peer.RxBytes
		tx += peer.TxBytes
		if !peer.LastHandshake.IsZero() {
			handshaken++
		}
	}
	return rx, tx, handshaken
}

// MeshProblems checks several agents' statuses against each other and
// returns what keeps the tenants' meshes from being complete: a pod that is
// not ready, or a pod whose tunnel does not (yet) know the current public key
// of another pod of its tenant served by one of these agents. That happens
// for up to a reconcile round after a pod gets a new key (an agent restart);
// until then handshakes with the new key fail. Nil means every pod can reach
// every other pod of its tenant.
func MeshProblems(statuses []Status) []string {
	type pod struct {
		tenant string
		key    string
	}
	pods := map[string]pod{}
	for _, st := range statuses {
		for _, p := range st.Pods {
			pods[p.Pod] = pod{p.Tenant, p.PublicKey}
		}
	}
	var problems []string
	for _, st := range statuses {
		for _, p := range st.Pods {
			if !p.Ready {
				problems = append(problems, fmt.Sprintf("pod %s is not ready: %d of %d peers", p.Pod, len(p.Peers), p.ExpectedPeers))
				continue
			}
			known := map[string]bool{}
			for _, peer := range p.Peers {
				known[peer.PublicKey.String()] = true
			}
			for name, o := range pods {
				if name != p.Pod && o.tenant == p.Tenant && !known[o.key] {
					problems = append(problems, fmt.Sprintf("pod %s does not know %s's current key yet", p.Pod, name))
				}
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// healthyAfter is how many intervals may pass without a successful round
// before the agent reports itself unhealthy.
const healthyAfter = 3

// Status reports the agent's state. It reads the devices and the guards, so
// it costs a little: call it per scrape or request, not per packet.
func (a *Agent) Status(ctx context.Context) Status {
	a.mu.Lock()
	st := Status{
		Node:      a.cfg.Node,
		LastRound: a.lastRound,
		Rounds:    a.rounds,
		Failures:  a.failures,
		Healthy:   a.lastErr == nil && !a.lastRound.IsZero() && time.Since(a.lastRound) < healthyAfter*a.cfg.Interval,
	}
	if a.lastErr != nil {
		st.LastError = a.lastErr.Error()
	}
	for t, k := range a.psks {
		st.Tenants = append(st.Tenants, TenantStatus{Tenant: t, Usable: k.usable, KEKVersion: k.version, CurrentKEKVersion: k.kekCurrent, Problem: k.problem})
	}
	type served struct {
		sp  servedPod
		tun *tunnel.Tunnel
	}
	var pods []served
	for _, sp := range a.pods {
		pods = append(pods, served{*sp, sp.tun})
	}
	a.mu.Unlock()

	for _, p := range pods {
		ps := PodStatus{
			Pod: p.sp.pod.Name, Tenant: p.sp.pod.Tenant, IP: p.sp.pod.IP,
			PublicKey: p.tun.PublicKey().String(), TunnelMTU: p.tun.MTU(), ExpectedPeers: p.sp.expectedPeers,
		}
		if peers, err := p.tun.Stats(); err == nil {
			ps.TunnelUp, ps.Peers = true, peers
			ps.Ready = len(peers) == ps.ExpectedPeers
		}
		if c, err := guard.ReadCounters(ctx, p.sp.pod.NetNS); err == nil {
			ps.Dropped = c
		} else {
			ps.GuardError = err.Error()
		}
		st.Pods = append(st.Pods, ps)
	}
	slices.SortFunc(st.Tenants, func(x, y TenantStatus) int { return cmp.Compare(x.Tenant, y.Tenant) })
	slices.SortFunc(st.Pods, func(x, y PodStatus) int { return cmp.Compare(x.Pod, y.Pod) })
	return st
}

// Handler serves /metrics (Prometheus), /healthz (200 or 503) and /status
// (JSON).
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ok := a.lastErr == nil && !a.lastRound.IsZero() && time.Since(a.lastRound) < healthyAfter*a.cfg.Interval
		msg := "ok\n"
		if a.lastErr != nil {
			msg = a.lastErr.Error() + "\n"
		} else if !ok {
			msg = "no successful reconcile round recently\n"
		}
		a.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(msg))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status(r.Context()))
	})
	return mux
}

var (
	descPods       = prometheus.NewDesc("tencrypt_transit_pods", "Pods this agent serves, by tenant.", []string{"tenant"}, nil)
	descPeers      = prometheus.NewDesc("tencrypt_transit_peers", "Tunnel peers of a served pod.", []string{"pod", "tenant"}, nil)
	descHandshakes = prometheus.NewDesc("tencrypt_transit_peers_with_handshake", "Peers of a served pod with a completed handshake.", []string{"pod", "tenant"}, nil)
	descRx         = prometheus.NewDesc("tencrypt_transit_received_bytes_total", "Bytes received through a pod's tunnel.", []string{"pod", "tenant"}, nil)
	descTx         = prometheus.NewDesc("tencrypt_transit_sent_bytes_total", "Bytes sent through a pod's tunnel.", []string{"pod", "tenant"}, nil)
	descDropped    = prometheus.NewDesc("tencrypt_transit_dropped_packets_total", "Packets the guard dropped, by reason.", []string{"pod", "tenant", "reason"}, nil)
	descRounds     = prometheus.NewDesc("tencrypt_transit_reconcile_rounds_total", "Reconcile rounds.", nil, nil)
	descFailures   = prometheus.NewDesc("tencrypt_transit_reconcile_failures_total", "Reconcile rounds that failed.", nil, nil)
	descHealthy    = prometheus.NewDesc("tencrypt_transit_agent_healthy", "1 if the latest reconcile round succeeded recently.", nil, nil)
)

// collector turns Status into metrics at scrape time, so the numbers come
// from the devices and guards themselves.
type collector struct{ a *Agent }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPods, descPeers, descHandshakes, descRx, descTx, descDropped, descRounds, descFailures, descHealthy} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := c.a.Status(ctx)
	perTenant := map[string]int{}
	for _, p := range st.Pods {
		perTenant[p.Tenant]++
		rx, tx, shaken := p.Totals()
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(len(p.Peers)), p.Pod, p.Tenant)
		ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.GaugeValue, float64(shaken), p.Pod, p.Tenant)
		ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(rx), p.Pod, p.Tenant)
		ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(tx), p.Pod, p.Tenant)
		for reason, n := range map[string]uint64{
			guard.CounterPlaintextIn:  p.Dropped.PlaintextInPackets,
			guard.CounterVIPIn:        p.Dropped.VIPInPackets,
			guard.CounterPlaintextOut: p.Dropped.PlaintextOutPackets,
			guard.CounterVIPOut:       p.Dropped.VIPOutPackets,
		} {
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), p.Pod, p.Tenant, reason)
		}
	}
	for t, n := range perTenant {
		ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(n), t)
	}
	healthy := 0.0
	if st.Healthy {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(st.Rounds))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy)
}
