// Package lab builds a small Kubernetes-like cluster on one machine out of
// Linux network namespaces: an underlay switch, nodes with a pod bridge and
// VXLAN between them, pods with a veth on their node's bridge, and Service
// VIPs translated on every node by nftables, as kube-proxy does. The demo
// and the integration tests of every plane run on it.
//
// Everything a lab creates lives in namespaces named with the lab's prefix
// (NamespacePrefix), and a state file records the plan before anything is
// built, so Down removes all of it even after a crash halfway through Up.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// DefaultStateDir is where labs record their state. It is on /run, a tmpfs,
// like /run/netns: both vanish together at reboot.
const DefaultStateDir = "/run/tencrypt/lab"

// Errors callers branch on.
var (
	// ErrNotUp: no lab of that name is recorded on this machine.
	ErrNotUp = errors.New("lab is not up")
	// ErrOtherTopology: a lab of that name is up with another topology.
	ErrOtherTopology = errors.New("a lab of this name is up with a different topology")
	// ErrUnknownTarget: lab exec was given a name that is no pod or node.
	ErrUnknownTarget = errors.New("no pod or node of that name")
)

// Manager brings labs up and down. It is safe to use from several processes
// at once: each operation on a lab holds that lab's lock file.
type Manager struct {
	stateDir string
	log      *slog.Logger
	// beforeStep, when set, runs before each build step; tests return an
	// error from it to stop Up midway as a crash would.
	beforeStep func(step string) error
}

// New returns a Manager keeping state in stateDir (DefaultStateDir if empty).
func New(stateDir string, log *slog.Logger) *Manager {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	return &Manager{stateDir: stateDir, log: log}
}

// Phase says how far a lab got.
type Phase string

const (
	// PhaseBuilding: Up started and has not finished; after a crash the lab
	// stays in this phase until Down or the next Up clears it.
	PhaseBuilding Phase = "building"
	// PhaseUp: every step of the plan was built.
	PhaseUp Phase = "up"
)

// State is what the state file holds.
type State struct {
	Version int       `json:"version"`
	Phase   Phase     `json:"phase"`
	Started time.Time `json:"started"`
	Plan    *Plan     `json:"plan"`
}

const stateVersion = 1

// Up builds the lab described by t. If the same lab is already up it does
// nothing; if a previous Up of it did not finish, it clears the leftovers
// first. On failure it removes what it built and returns the error.
func (m *Manager) Up(ctx context.Context, t *Topology) (*Plan, error) {
	plan, err := MakePlan(t)
	if err != nil {
		return nil, err
	}
	unlock, err := m.lock(plan.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if st, err := m.readState(plan.Name); err == nil {
		switch {
		case st.Phase == PhaseUp && samePlan(st.Plan, plan) && allExist(plan.Namespaces()):
			m.log.Info("lab is already up", "lab", plan.Name)
			return plan, nil
		case st.Phase == PhaseUp && !samePlan(st.Plan, plan):
			return nil, fmt.Errorf("%w: run 'tencrypt lab down --name %s' first", ErrOtherTopology, plan.Name)
		default:
			m.log.Warn("a previous lab up did not finish; removing its leftovers", "lab", plan.Name, "phase", st.Phase)
		}
	} else if !errors.Is(err, ErrNotUp) {
		return nil, err
	}
	if _, err := m.teardownLocked(plan.Name); err != nil {
		return nil, err
	}

	// Write-ahead: the state names every namespace before any exists.
	st := &State{Version: stateVersion, Phase: PhaseBuilding, Started: time.Now().UTC(), Plan: plan}
	if err := m.writeState(st); err != nil {
		return nil, err
	}
	m.log.Info("building lab", "lab", plan.Name, "nodes", len(plan.Nodes), "pods", len(plan.Pods), "services", len(plan.Services))
	b := &builder{plan: plan, step: m.beforeStep}
	if err := b.run(ctx); err != nil {
		if errors.Is(err, errSimulatedCrash) {
			return nil, err // a crash cleans nothing up; Down must cope
		}
		m.log.Error("lab up failed; removing what was built", "lab", plan.Name, "err", err)
		if _, derr := m.teardownLocked(plan.Name); derr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", derr))
		}
		return nil, err
	}
	st.Phase = PhaseUp
	if err := m.writeState(st); err != nil {
		return nil, err
	}
	m.log.Info("lab is up", "lab", plan.Name)
	return plan, nil
}

// errSimulatedCrash is returned by test hooks to stop Up without cleanup.
var errSimulatedCrash = errors.New("simulated crash")

// Down removes every namespace of the named lab, whether or not its state
// file survived, and the state file. It returns the namespaces it removed.
// Down of a lab that is not up removes nothing and is not an error.
func (m *Manager) Down(_ context.Context, name string) ([]string, error) {
	if !labNameRE.MatchString(name) {
		return nil, fmt.Errorf("lab name %q: want 1 to 8 lower-case letters or digits", name)
	}
	unlock, err := m.lock(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	removed, err := m.teardownLocked(name)
	if err == nil && len(removed) > 0 {
		m.log.Info("lab removed", "lab", name, "namespaces", len(removed))
	}
	return removed, err
}

// teardownLocked deletes the namespaces the state names and any other
// namespace carrying the lab's prefix (in case the state file was lost),
// then the state file. Deleting a namespace destroys every link, bridge,
// route and nftables table inside it, and the host ends of veths into it.
func (m *Manager) teardownLocked(name string) ([]string, error) {
	want := map[string]bool{}
	if st, err := m.readState(name); err == nil {
		for _, ns := range st.Plan.Namespaces() {
			want[ns] = true
		}
	} else if !errors.Is(err, ErrNotUp) {
		m.log.Warn("unreadable lab state; removing by name prefix", "lab", name, "err", err)
	}
	all, err := netns.List()
	if err != nil {
		return nil, err
	}
	prefix := NamespacePrefix(name)
	for _, ns := range all {
		if strings.HasPrefix(ns, prefix) {
			want[ns] = true
		}
	}
	var removed []string
	var errs []error
	for ns := range want {
		existed := netns.Exists(ns)
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		if existed {
			removed = append(removed, ns)
		}
	}
	if len(errs) > 0 {
		return removed, errors.Join(errs...)
	}
	for _, f := range []string{m.statePath(name), m.Registry(name).path()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
	}
	return removed, nil
}

// Status returns the recorded state of the named lab, with ErrNotUp if there
// is none, and the namespaces of its plan that are missing.
func (m *Manager) Status(name string) (*State, []string, error) {
	st, err := m.readState(name)
	if err != nil {
		return nil, nil, err
	}
	var missing []string
	for _, ns := range st.Plan.Namespaces() {
		if !netns.Exists(ns) {
			missing = append(missing, ns)
		}
	}
	return st, missing, nil
}

// RestartPod replaces a pod's network namespace with a new, empty one wired
// as before (same address, same bridge port), as when Kubernetes restarts a
// pod's sandbox. Anything inside the old namespace (a tunnel, a guard) is
// gone from the pod's point of view.
func (m *Manager) RestartPod(_ context.Context, labName, pod string) error {
	unlock, err := m.lock(labName)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := m.readState(labName)
	if err != nil {
		return err
	}
	p, ok := st.Plan.Pod(pod)
	if !ok {
		return fmt.Errorf("%w: %q in lab %q", ErrUnknownTarget, pod, labName)
	}
	node, _ := st.Plan.Node(p.Node)
	b := &builder{plan: st.Plan}
	defer b.close()
	if err := b.open(node.NetNS); err != nil {
		return err
	}
	// Someone (an agent) may still hold the old namespace open, which keeps
	// its veth pair alive: remove the pair from the node's end.
	if l, err := b.handles[node.NetNS].LinkByName(p.HostVeth); err == nil {
		if err := b.handles[node.NetNS].LinkDel(l); err != nil {
			return fmt.Errorf("remove old veth of %s: %w", pod, err)
		}
	}
	if err := netns.Delete(p.NetNS); err != nil {
		return err
	}
	if err := netns.Create(p.NetNS); err != nil {
		return err
	}
	if err := b.open(p.NetNS); err != nil {
		return err
	}
	if err := setUp(b.handles[p.NetNS], "lo"); err != nil {
		return err
	}
	if err := b.pod(p); err != nil {
		return fmt.Errorf("rewire %s: %w", pod, err)
	}
	m.log.Info("pod restarted with a new network namespace", "lab", labName, "pod", pod)
	return nil
}

// Command returns a command running argv inside a pod or node of a lab
// that is up.
func (m *Manager) Command(ctx context.Context, labName, target string, argv ...string) (*exec.Cmd, error) {
	st, err := m.readState(labName)
	if err != nil {
		return nil, err
	}
	ns := ""
	if p, ok := st.Plan.Pod(target); ok {
		ns = p.NetNS
	} else if n, ok := st.Plan.Node(target); ok {
		ns = n.NetNS
	} else {
		return nil, fmt.Errorf("%w: %q in lab %q (see 'tencrypt lab status')", ErrUnknownTarget, target, labName)
	}
	if !netns.Exists(ns) {
		return nil, fmt.Errorf("namespace %s of %q is missing: the lab is broken, run 'tencrypt lab down' and 'up' again", ns, target)
	}
	return NamespaceCommand(ctx, ns, argv...), nil
}

func (m *Manager) statePath(name string) string { return filepath.Join(m.stateDir, name+".json") }

func (m *Manager) readState(name string) (*State, error) {
	data, err := os.ReadFile(m.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no lab named %q on this machine (state dir %s)", ErrNotUp, name, m.stateDir)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil || st.Plan == nil {
		return nil, fmt.Errorf("lab state %s is corrupt; 'tencrypt lab down --name %s' removes the lab anyway", m.statePath(name), name)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("lab state %s has version %d, this tencrypt knows %d; 'tencrypt lab down --name %s' removes the lab anyway", m.statePath(name), st.Version, stateVersion, name)
	}
	return &st, nil
}

// writeState replaces the state file atomically: a crash leaves the old or
// the new state, never a mix.
func (m *Manager) writeState(st *State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.stateDir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(m.statePath(st.Plan.Name), data)
}

// lock takes the lab's lock file, so that two up or down runs on one lab
// never interleave.
func (m *Manager) lock(name string) (func(), error) {
	if err := os.MkdirAll(m.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(m.stateDir, name+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock lab %q: %w", name, err)
	}
	return func() { f.Close() }, nil
}

func samePlan(a, b *Plan) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func allExist(names []string) bool {
	for _, n := range names {
		if !netns.Exists(n) {
			return false
		}
	}
	return true
}
