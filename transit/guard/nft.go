package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// Apply installs or replaces the guard in the namespace at nsPath (e.g.
// /run/netns/NAME or /proc/PID/ns/net) in one atomic nft transaction. It is
// idempotent, keeps the drop counters, and never leaves a moment without a
// guard, so the agent may re-apply on every reconcile and on restart (to
// adopt what a previous run left). Call it before creating the tunnel and its
// routes. An invalid cfg changes nothing and returns ErrInvalidConfig.
func Apply(ctx context.Context, nsPath string, cfg Config) error {
	p, err := validate(cfg)
	if err != nil {
		return err
	}
	err = runNft(ctx, nsPath, applyScript(p), "-f", "-")
	if err == nil {
		return nil
	}
	// A table an older or newer tencrypt laid out differently cannot be
	// refilled in place; replace it whole (still one transaction).
	if rerr := runNft(ctx, nsPath, replaceScript(p), "-f", "-"); rerr != nil {
		return fmt.Errorf("apply guard in %s: %w", nsPath, errors.Join(err, rerr))
	}
	return nil
}

// Remove deletes the guard from the namespace at nsPath. Removing an absent
// guard is not an error. Tear the tunnel and its routes down first: after
// Remove, tenant traffic is no longer held back.
func Remove(ctx context.Context, nsPath string) error {
	if err := runNft(ctx, nsPath, removeScript(), "-f", "-"); err != nil {
		return fmt.Errorf("remove guard in %s: %w", nsPath, err)
	}
	return nil
}

// Installed reports whether the guard table exists in the namespace at nsPath.
func Installed(ctx context.Context, nsPath string) (bool, error) {
	var out bytes.Buffer
	if err := runNftOut(ctx, nsPath, &out, "", "-j", "list", "tables", "inet"); err != nil {
		return false, fmt.Errorf("list tables in %s: %w", nsPath, err)
	}
	tables, err := parseTables(out.Bytes())
	if err != nil {
		return false, err
	}
	for _, t := range tables {
		if t.Family == "inet" && t.Name == Table {
			return true, nil
		}
	}
	return false, nil
}

// ReadCounters returns the guard's drop counters in the namespace at nsPath,
// or an error wrapping ErrNotInstalled if there is no guard.
func ReadCounters(ctx context.Context, nsPath string) (Counters, error) {
	var out bytes.Buffer
	err := runNftOut(ctx, nsPath, &out, "", "-j", "list", "counters", "table", "inet", Table)
	if err != nil {
		var ne *nftError
		if errors.As(err, &ne) && strings.Contains(ne.stderr, "No such file or directory") {
			return Counters{}, fmt.Errorf("read counters in %s: %w", nsPath, ErrNotInstalled)
		}
		return Counters{}, fmt.Errorf("read counters in %s: %w", nsPath, err)
	}
	return parseCounters(out.Bytes())
}

// nftError is nft's own refusal (a non-zero exit), with what it said.
type nftError struct {
	stderr string
	err    error
}

func (e *nftError) Error() string {
	return fmt.Sprintf("nft: %s (%v)", strings.TrimSpace(e.stderr), e.err)
}

func (e *nftError) Unwrap() error { return e.err }

func runNft(ctx context.Context, nsPath, stdin string, args ...string) error {
	return runNftOut(ctx, nsPath, nil, stdin, args...)
}

// runNftOut runs the nft binary inside the namespace at nsPath. The child is
// started from inside netns.Handle.Do: fork happens on the locked thread that
// has entered the namespace, and a child inherits its parent thread's
// namespaces. Unlike `nsenter --net=PATH`, this enters the namespace through
// the descriptor we opened and checked is an nsfs file, so a path replaced
// between check and use cannot send the rules elsewhere, and it needs no
// util-linux. (kube-proxy's knftables also runs the nft binary.)
func runNftOut(ctx context.Context, nsPath string, stdout *bytes.Buffer, stdin string, args ...string) error {
	h, err := netns.OpenPath(nsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	var stderr bytes.Buffer
	return h.Do(func() error {
		cmd := exec.CommandContext(ctx, "nft", args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		if stdout != nil {
			cmd.Stdout = stdout
		}
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ee):
			return &nftError{stderr: stderr.String(), err: err}
		default:
			return fmt.Errorf("run nft: %w (is the nftables package installed? run scripts/setup)", err)
		}
	})
}

// nftJSON is the part of `nft -j list ...` output the guard reads.
type nftJSON struct {
	Nftables []struct {
		Table *struct {
			Family string `json:"family"`
			Name   string `json:"name"`
		} `json:"table"`
		Counter *struct {
			Family  string `json:"family"`
			Table   string `json:"table"`
			Name    string `json:"name"`
			Packets uint64 `json:"packets"`
			Bytes   uint64 `json:"bytes"`
		} `json:"counter"`
	} `json:"nftables"`
}

type tableID struct{ Family, Name string }

func parseTables(data []byte) ([]tableID, error) {
	var doc nftJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse nft table list: %w", err)
	}
	var ts []tableID
	for _, o := range doc.Nftables {
		if o.Table != nil {
			ts = append(ts, tableID{o.Table.Family, o.Table.Name})
		}
	}
	return ts, nil
}

// parseCounters reads the guard's counters from `nft -j list counters`. A
// guard counter missing from the list is an error: the table is not ours, or
// is damaged, and reporting zero drops would hide that.
func parseCounters(data []byte) (Counters, error) {
	var doc nftJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return Counters{}, fmt.Errorf("parse nft counters: %w", err)
	}
	var c Counters
	fields := map[string][2]*uint64{
		CounterPlaintextIn:  {&c.PlaintextInPackets, &c.PlaintextInBytes},
		CounterVIPIn:        {&c.VIPInPackets, &c.VIPInBytes},
		CounterPlaintextOut: {&c.PlaintextOutPackets, &c.PlaintextOutBytes},
		CounterVIPOut:       {&c.VIPOutPackets, &c.VIPOutBytes},
	}
	found := map[string]bool{}
	for _, o := range doc.Nftables {
		k := o.Counter
		if k == nil || k.Family != "inet" || k.Table != Table {
			continue
		}
		if f, ok := fields[k.Name]; ok {
			*f[0], *f[1] = k.Packets, k.Bytes
			found[k.Name] = true
		}
	}
	for _, n := range counterNames {
		if !found[n] {
			return Counters{}, fmt.Errorf("nft counters: %q missing from table inet %s: re-apply the guard", n, Table)
		}
	}
	return c, nil
}
