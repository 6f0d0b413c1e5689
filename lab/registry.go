package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/transit/registry"
)

// Registry is the transit registry of a lab: pods and Services come from the
// lab's plan; published keys and enrolled tenants are kept in a file beside
// the lab's state, shared by the agents of all its nodes.
type Registry struct {
	m   *Manager
	lab string
}

var _ registry.Registry = (*Registry)(nil)

// Registry returns the transit registry of the named lab.
func (m *Manager) Registry(labName string) *Registry { return &Registry{m: m, lab: labName} }

// transitState is the registry file.
type transitState struct {
	Keys    map[string]registry.PodKey `json:"keys"`
	Tenants map[string]registry.Tenant `json:"tenants"`
	// Virtual are pods on nodes that do not exist (SetVirtualPods), for
	// scale benchmarks; their keys are in Keys.
	Virtual []registry.Pod `json:"virtual_pods,omitempty"`
}

func (r *Registry) path() string { return filepath.Join(r.m.stateDir, r.lab+".transit.json") }

// Snapshot implements registry.Registry.
func (r *Registry) Snapshot(context.Context) (*registry.Snapshot, error) {
	st, err := r.m.readState(r.lab)
	if err != nil {
		return nil, err
	}
	if st.Phase != PhaseUp {
		return nil, fmt.Errorf("lab %q is still being built", r.lab)
	}
	ts, err := r.read()
	if err != nil {
		return nil, err
	}
	snap := &registry.Snapshot{Keys: ts.Keys, Tenants: ts.Tenants}
	for _, p := range st.Plan.Pods {
		snap.Pods = append(snap.Pods, registry.Pod{
			Name: p.Name, Tenant: p.Tenant, Node: p.Node, IP: p.IP, NetNS: netns.Path(p.NetNS),
		})
	}
	snap.Pods = append(snap.Pods, ts.Virtual...)
	snap.Services = append(snap.Services, st.Plan.Services...)
	return snap, nil
}

// PublishKey implements registry.Registry.
func (r *Registry) PublishKey(_ context.Context, k registry.PodKey) error {
	st, err := r.m.readState(r.lab)
	if err != nil {
		return err
	}
	if _, ok := st.Plan.Pod(k.Pod); !ok {
		return fmt.Errorf("%w: %q in lab %q", registry.ErrUnknownPod, k.Pod, r.lab)
	}
	if k.Published.IsZero() {
		k.Published = time.Now().UTC()
	}
	return r.update(func(ts *transitState) error {
		ts.Keys[k.Pod] = k
		return nil
	})
}

// WithdrawKey implements registry.Registry.
func (r *Registry) WithdrawKey(_ context.Context, pod string) error {
	return r.update(func(ts *transitState) error {
		delete(ts.Keys, pod)
		return nil
	})
}

// SetTenantKey implements registry.Registry. It also enrolls again a
// tenant that was unenrolled.
func (r *Registry) SetTenantKey(_ context.Context, tenant string, blob []byte) error {
	return r.update(func(ts *transitState) error {
		ts.Tenants[tenant] = registry.Tenant{PSK: blob}
		return nil
	})
}

// UnenrollTenant implements registry.Registry: the tenant stays in the file
// (or is added to it, if it vanished), marked removed, so that every agent
// sees it and removes its guards.
func (r *Registry) UnenrollTenant(_ context.Context, tenant string) error {
	return r.update(func(ts *transitState) error {
		ts.Tenants[tenant] = registry.Tenant{Removed: true}
		return nil
	})
}

func (r *Registry) read() (*transitState, error) {
	ts := &transitState{Keys: map[string]registry.PodKey{}, Tenants: map[string]registry.Tenant{}}
	data, err := os.ReadFile(r.path())
	if errors.Is(err, os.ErrNotExist) {
		return ts, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, ts); err != nil {
		return nil, fmt.Errorf("lab registry %s is corrupt: %w", r.path(), err)
	}
	if ts.Keys == nil {
		ts.Keys = map[string]registry.PodKey{}
	}
	if ts.Tenants == nil {
		ts.Tenants = map[string]registry.Tenant{}
	}
	return ts, nil
}

// update changes the registry file under its lock (agents of several nodes
// write it) and replaces it atomically; nothing is written if fn fails.
func (r *Registry) update(fn func(*transitState) error) error {
	if err := os.MkdirAll(r.m.stateDir, 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(r.path()+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	ts, err := r.read()
	if err != nil {
		return err
	}
	if err := fn(ts); err != nil {
		return err
	}
	data, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(r.path(), data)
}

// writeFileAtomic replaces path with data: a crash leaves the old or the
// new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.Write(path, append(data, '\n'), atomicfile.Options{Perm: 0o644, Replace: true})
}
