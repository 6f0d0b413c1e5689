// Package registry is the transit plane's view of the cluster: which pods
// exist, on which node, in which tenant and at which address; the tenants'
// Services; the public keys the agents publish for their pods; and each
// enrolled tenant's wrapped pre-shared key.
//
// The lab implements Registry over its state directory; a Kubernetes
// implementation reads pods and Services from the API server. Agents read
// whole snapshots (reconciliation is level-based) when Watch says something
// changed, and every so often anyway, so a missed notification costs only
// delay.
package registry

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// ErrUnknownPod: PublishKey for a pod the registry does not list.
var ErrUnknownPod = errors.New("unknown pod")

// Registry is the source of truth for the agents. Implementations are safe
// for concurrent use, including by agents in several processes.
type Registry interface {
	// Snapshot returns the current state. The caller owns the result.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// PublishKey records the key an agent generated for a pod it serves,
	// replacing any earlier one.
	PublishKey(ctx context.Context, k PodKey) error
	// WithdrawKey removes a pod's key (the agent stopped serving it).
	// Withdrawing a key that is not there is not an error.
	WithdrawKey(ctx context.Context, pod string) error
	// SetTenantKey enrolls a tenant in transit encryption, or replaces its
	// pre-shared key after a rotation: blob is a keys.WrappedKey with
	// purpose PSKPurpose, marshalled.
	SetTenantKey(ctx context.Context, tenant string, blob []byte) error
	// UnenrollTenant takes a tenant out of transit encryption, on an
	// operator's explicit request: the tenant stays listed, marked Removed
	// and without its PSK, so that agents remove its pods' guards (a
	// tenant that merely disappears keeps them). SetTenantKey enrolls it
	// again. A tenant the registry does not list (one that vanished, whose
	// pods' guards the agents keep) is recorded as unenrolled too, which
	// releases those guards; unenrolling twice is not an error.
	UnenrollTenant(ctx context.Context, tenant string) error
	// Watch returns a channel that receives a value soon after the registry
	// may have changed (changes are coalesced: one value may stand for
	// many, and a value may come with no change). It is closed when ctx is
	// done or the watch breaks. A registry that cannot watch returns a nil
	// channel; callers then rely on their periodic reads.
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// ErrNotEnrolled: an operation (a rotation) on a tenant the registry does
// not list as enrolled.
var ErrNotEnrolled = errors.New("tenant not enrolled in transit encryption")

// PSKPurpose is the keys purpose of a tenant's transit pre-shared key.
const PSKPurpose = "transit-psk"

// Snapshot is the cluster at one moment.
type Snapshot struct {
	Pods     []Pod     `json:"pods"`
	Services []Service `json:"services"`
	// Keys are the published pod keys, by pod name.
	Keys map[string]PodKey `json:"keys"`
	// Tenants are the enrolled tenants, and the unenrolled ones (Removed),
	// by name.
	Tenants map[string]Tenant `json:"tenants"`
}

// Pod is a pod as the transit plane needs it.
type Pod struct {
	// Name is unique in the cluster ("namespace/name" on Kubernetes).
	Name   string     `json:"name"`
	Tenant string     `json:"tenant"`
	Node   string     `json:"node"`
	IP     netip.Addr `json:"ip"`
	// NetNS is the path of the pod's network namespace, meaningful on its
	// node only. Agents act on it only if it is a network namespace beneath
	// their namespace directory (/run/netns unless configured), reached
	// without symbolic links.
	NetNS string `json:"netns"`
}

// Service is a tenant's ClusterIP Service.
type Service struct {
	Tenant   string       `json:"tenant"`
	Name     string       `json:"name"`
	VIP      netip.Addr   `json:"vip"`
	Ports    []Port       `json:"ports"`
	Backends []netip.Addr `json:"backends"`
}

// Port is one port of a Service. TargetPort 0 means the same as Port, as in
// Kubernetes. The guard, the lab and the registry share this one type.
type Port struct {
	Protocol   string `json:"protocol"`
	Port       uint16 `json:"port"`
	TargetPort uint16 `json:"target_port"`
}

// PodKey is a pod's published WireGuard identity.
type PodKey struct {
	Pod string `json:"pod"`
	// PublicKey is base64, as `wg` prints it.
	PublicKey string         `json:"public_key"`
	Endpoint  netip.AddrPort `json:"endpoint"`
	// Node is the agent's node; Published is when.
	Node      string    `json:"node"`
	Published time.Time `json:"published"`
}

// Tenant is an enrolled tenant, or the record that one was unenrolled.
type Tenant struct {
	// PSK is the tenant's pre-shared key, wrapped under its KEK; empty once
	// Removed.
	PSK []byte `json:"psk,omitempty"`
	// Removed marks a tenant an operator unenrolled: agents remove its
	// pods' guards. It is the only registry state that does; a tenant
	// missing from the registry keeps its guards (its traffic stays
	// blocked), because a registry can lose entries by accident.
	Removed bool `json:"removed,omitempty"`
}

// Enrolled reports whether the tenant is listed and not removed.
func (s *Snapshot) Enrolled(tenant string) bool {
	t, ok := s.Tenants[tenant]
	return ok && !t.Removed
}

// Unenrolled reports whether the tenant was explicitly unenrolled.
func (s *Snapshot) Unenrolled(tenant string) bool {
	t, ok := s.Tenants[tenant]
	return ok && t.Removed
}

// TenantPods returns the pods of one tenant.
func (s *Snapshot) TenantPods(tenant string) []Pod {
	var out []Pod
	for _, p := range s.Pods {
		if p.Tenant == tenant {
			out = append(out, p)
		}
	}
	return out
}

// TenantServices returns the Services of one tenant.
func (s *Snapshot) TenantServices(tenant string) []Service {
	var out []Service
	for _, svc := range s.Services {
		if svc.Tenant == tenant {
			out = append(out, svc)
		}
	}
	return out
}
