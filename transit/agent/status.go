package agent

import (
	"cmp"
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
	// Held are pods whose tenant left the registry without being
	// unenrolled: no tunnel, guard kept (their tenant traffic is dropped)
	// until the tenant is enrolled again or unenrolled.
	Held []HeldPod `json:"held,omitempty"`
}

// HeldPod is a pod the agent keeps guarded without serving it.
type HeldPod struct {
	Pod    string `json:"pod"`
	Tenant string `json:"tenant"`
	Reason string `json:"reason"`
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
	// to tenant peers that it stopped, as read at CountersRead (the agent
	// reads them every --counter-interval, not per request).
	Dropped      guard.Counters `json:"dropped"`
	CountersRead time.Time      `json:"counters_read,omitzero"`
	GuardError   string         `json:"guard_error,omitempty"`
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

// Status reports the agent's state as of its latest round. It takes no
// lock and runs nothing: a round publishes what it found (tunnel statistics
// each round, guard counters every CounterInterval), so health and status
// answer at once even while a round waits on the KMS or nft.
func (a *Agent) Status() Status {
	st := *a.status.Load()
	st.Healthy = st.LastError == "" && !st.LastRound.IsZero() && time.Since(st.LastRound) < healthyAfter*a.cfg.Interval
	return st
}

// publishLocked replaces the status the handlers serve with the agent's
// state now. It reads the tunnels' statistics (in-process, cheap).
func (a *Agent) publishLocked() {
	st := &Status{Node: a.cfg.Node, LastRound: a.lastRound, Rounds: a.rounds, Failures: a.failures,
		Tenants: []TenantStatus{}, Pods: []PodStatus{}}
	if a.lastErr != nil {
		st.LastError = a.lastErr.Error()
	}
	for t, k := range a.psks {
		st.Tenants = append(st.Tenants, TenantStatus{Tenant: t, Usable: k.usable, KEKVersion: k.version, CurrentKEKVersion: k.kekCurrent, Problem: k.problem})
	}
	for _, sp := range a.pods {
		ps := PodStatus{
			Pod: sp.pod.Name, Tenant: sp.pod.Tenant, IP: sp.pod.IP,
			PublicKey: sp.tun.PublicKey().String(), TunnelMTU: sp.tun.MTU(), ExpectedPeers: sp.expectedPeers,
			Dropped: sp.counters, CountersRead: sp.countersAt, GuardError: sp.countersErr,
		}
		if peers, err := sp.tun.Stats(); err == nil {
			ps.TunnelUp, ps.Peers = true, peers
			ps.Ready = len(peers) == ps.ExpectedPeers
		}
		st.Pods = append(st.Pods, ps)
	}
	for _, h := range a.held {
		st.Held = append(st.Held, HeldPod{Pod: h.pod.Name, Tenant: h.pod.Tenant, Reason: h.reason})
	}
	slices.SortFunc(st.Tenants, func(x, y TenantStatus) int { return cmp.Compare(x.Tenant, y.Tenant) })
	slices.SortFunc(st.Pods, func(x, y PodStatus) int { return cmp.Compare(x.Pod, y.Pod) })
	slices.SortFunc(st.Held, func(x, y HeldPod) int { return cmp.Compare(x.Pod, y.Pod) })
	a.status.Store(st)
}

// Handler serves /metrics (Prometheus), /healthz (200 or 503) and /status
// (JSON), all from the status the latest round published: no request runs
// nft, calls the KMS or waits for a round. They have no authentication:
// bind them to loopback or a node-local address (docs/TRANSIT.md says what
// they reveal).
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		st := a.Status()
		msg := "ok\n"
		if st.LastError != "" {
			msg = st.LastError + "\n"
		} else if !st.Healthy {
			msg = "no successful reconcile round recently\n"
		}
		if !st.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(msg))
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status())
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
	descHeld       = prometheus.NewDesc("tencrypt_transit_held_pods", "Pods kept guarded without a tunnel because their tenant left the registry without being unenrolled, by tenant.", []string{"tenant"}, nil)
	descRounds     = prometheus.NewDesc("tencrypt_transit_reconcile_rounds_total", "Reconcile rounds.", nil, nil)
	descFailures   = prometheus.NewDesc("tencrypt_transit_reconcile_failures_total", "Reconcile rounds that failed.", nil, nil)
	descHealthy    = prometheus.NewDesc("tencrypt_transit_agent_healthy", "1 if the latest reconcile round succeeded recently.", nil, nil)
)

// collector turns the published Status into metrics at scrape time.
type collector struct{ a *Agent }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPods, descPeers, descHandshakes, descRx, descTx, descDropped, descHeld, descRounds, descFailures, descHealthy} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Status()
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
	held := map[string]int{}
	for _, h := range st.Held {
		held[h.Tenant]++
	}
	for t, n := range held {
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(n), t)
	}
	healthy := 0.0
	if st.Healthy {
		healthy = 1
	}
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(st.Rounds))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy)
}
