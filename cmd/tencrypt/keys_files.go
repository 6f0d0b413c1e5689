package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/internal/keyholders"
	"github.com/tencrypt/tencrypt/keys"
)

// The wrapped-key commands: rewrap and retire find keys through every
// keys.Holder (internal/keyholders); the walking, the fail-closed scan and
// the atomic rewrites are in keys and in each format's package.

// errStillReferenced: retire found wrapped keys that still use the versions
// it was asked to destroy.
var errStillReferenced = errors.New("wrapped keys still use the versions to retire")

// errUnknownFiles: retire --strict found files of no known kind.
var errUnknownFiles = errors.New("checked files are of no kind tencrypt knows (the first are listed): move them out of the checked paths, or leave out --strict")

func newKeysRewrapCmd() *cobra.Command {
	var copyFiles, progress bool
	cmd := &cobra.Command{
		Use:   "rewrap PATH...",
		Short: "Move every wrapped key in files and directories to its tenant's current KEK version",
		Long: `rewrap finds the wrapped keys in each PATH (a file, or a directory and
everything under it) and rewraps every one that is under an older KEK version
than its tenant's current one. It knows every file in which tencrypt stores
wrapped keys:

  blob              a wrapped-key blob file (docs/WRAPPED-KEY.md)
  file              a tencrypt file's header (docs/FORMAT.md); the content is
                    not rewritten, only the header, in place when its size is
                    unchanged (else, or with --copy, through a temporary file)
  volume            a volume's configuration, tencrypt.volume (docs/NAMES.md):
                    its name key; a mounted volume keeps working
  transit-registry  a lab's transit registry (<state dir>/<lab>.transit.json):
                    each enrolled tenant's pre-shared key, rewrapped under the
                    registry's lock; the key itself, and so the tunnels, stay
                    the same ('tencrypt transit rotate' makes a new one)

Each file changes atomically: a synced temporary file renamed over it (its
mode kept), or a tencrypt file's header rewritten in place and synced; a
crash leaves the old or the new keys, never a mix. The key (DEK) does not
change, only its wrapping. Keys other than those of tencrypt files are
checked to unwrap to the same key before anything is written. Every unwrap and
rewrap is written to the audit log first; if that fails the file is not
changed.

Rewrap a volume while it is not mounted: a tencrypt file rewritten through a
temporary file (--copy, or a header that changes size) would lose writes made
through the mount to the file open at the time.

Links to files are followed and their target is rewritten; links to
directories found inside a PATH are refused (a PATH that is one is followed).
Files under a directory that hold no wrapped key are
left alone; a file named on the command line that holds none is an error, and
so is a file of another kind that embeds a wrapped key (no rewrap can move it).
All files are tried; the exit code is that of the first failure. With --json,
one entry per wrapped key (with its "kind") and one per failed file.`,
		Example: `  tencrypt keys rotate blue
  tencrypt keys rewrap /srv/blue.enc /var/lib/app/keys/ /run/tencrypt/lab/lab.transit.json
  tencrypt keys retire blue --min-version 2 --check /srv/blue.enc --check /var/lib/app/keys/ --check /run/tencrypt/lab/
  tencrypt keys rewrap --json a.wk b.wk`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				return runKeysRewrap(ctx, cmd, p, cfg, args, copyFiles, progress)
			})
		},
	}
	cmd.Flags().BoolVar(&copyFiles, "copy", false, "rewrite tencrypt files through a temporary file, never their header in place")
	cmd.Flags().BoolVar(&progress, "progress", false, "print each key on stderr as it is done")
	return cmd
}

// runKeysRewrap rewraps every holder under args and reports.
func runKeysRewrap(ctx context.Context, cmd *cobra.Command, p keys.KEKProvider, cfg keysConfig, args []string, copyFiles, progress bool) error {
	audit, err := keys.OpenAuditFile(cfg.AuditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	m := keys.NewMover(keys.NewEnvelope(p, audit, time.Now), caller("keys rewrap"))
	results, failed := []keys.Moved{}, false
	err = keys.RewrapPaths(ctx, args, keyholders.All(keyholders.Options{CopyFiles: copyFiles}), m, func(mv keys.Moved) {
		results = append(results, mv)
		if mv.Status == keys.StatusError {
			failed = true
			fmt.Fprintf(cmd.ErrOrStderr(), "tencrypt: %s\n", mv.Error)
		} else if progress {
			printMoved(cmd.ErrOrStderr(), mv)
		}
	})
	if rerr := report(cmd, results, func(w io.Writer) {
		for _, mv := range results {
			printMoved(w, mv)
		}
		fmt.Fprintln(w, summarizeMoved(results))
	}); rerr != nil {
		return rerr
	}
	if err != nil && failed { // already printed, per file
		return exitError{exitCode(err)}
	}
	return err // the walk itself failed
}

func printMoved(w io.Writer, mv keys.Moved) {
	switch mv.Status {
	case keys.StatusRewrapped:
		fmt.Fprintf(w, "%s (%s): tenant %s, version %d -> %d (%s)\n", mv.File, mv.Kind, mv.Tenant, mv.From, mv.To, mv.Method)
	case keys.StatusCurrent:
		fmt.Fprintf(w, "%s (%s): tenant %s, already at current version %d\n", mv.File, mv.Kind, mv.Tenant, mv.From)
	}
}

// summarizeMoved counts the results per kind: "blob: 2 rewrapped; volume:
// 1 current".
func summarizeMoved(results []keys.Moved) string {
	counts := map[string]map[string]int{}
	for _, mv := range results {
		k := mv.Kind
		if k == "" {
			k = "other"
		}
		if counts[k] == nil {
			counts[k] = map[string]int{}
		}
		counts[k][mv.Status]++
	}
	if len(counts) == 0 {
		return "no wrapped keys found"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		var st []string
		for _, s := range []string{keys.StatusRewrapped, keys.StatusCurrent, keys.StatusError} {
			if n := counts[k][s]; n > 0 {
				st = append(st, fmt.Sprintf("%d %s", n, s))
			}
		}
		parts = append(parts, k+": "+strings.Join(st, ", "))
	}
	return strings.Join(parts, "; ")
}

func newKeysRetireCmd() *cobra.Command {
	var minVersion uint32
	var check []string
	var force, strict bool
	cmd := &cobra.Command{
		Use:   "retire TENANT --min-version N (--check PATH... | --force)",
		Short: "Destroy a tenant's KEK versions below N, once nothing uses them (admin)",
		Long: `retire destroys every KEK version of TENANT below --min-version, for good:
anything still wrapped under them can no longer be opened. So retire first
searches the files and directories given with --check for wrapped keys of
TENANT below that version, in every file in which tencrypt stores them (the
kinds 'keys rewrap --help' lists: blob files, tencrypt files, volume
configurations, lab transit registries), and in other files for an embedded
wrapped key (raw, base64 or hex, in their first 64 KiB). It refuses, listing
them, if it finds any: rewrap them first ('tencrypt keys rewrap PATH...').

The check fails closed: a file or directory it cannot read, a file that looks
like one of those kinds but does not parse, or an embedded wrapped key that
does not parse stops retire before anything is destroyed. Links to files are
followed; links to directories found inside a PATH are refused (name their
target; a PATH that is a link is followed).

Other files (plaintext, a lab's state) are counted as "other" and do not stop
retire; with --strict they do, so that every file under the checked paths is
one tencrypt knows (a volume, a tree of tencrypt files, a blob directory).

Without --check it needs --force, which says you have checked yourself.
--min-version may be at most the current version.`,
		Example: `  tencrypt keys rotate blue
  tencrypt keys rewrap /srv/blue.enc blobs/
  tencrypt keys retire blue --min-version 2 --check /srv/blue.enc --check blobs/
  tencrypt keys retire blue --min-version 3 --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			if minVersion == 0 {
				return usageError{errors.New("keys retire: --min-version is required")}
			}
			if len(check) == 0 && !force {
				return usageError{errors.New("keys retire: say where wrapped keys live (--check PATH) so retire can make sure none still needs the old versions, or pass --force")}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				return runKeysRetire(ctx, cmd, p, tenant, minVersion, check, strict)
			})
		},
	}
	cmd.Flags().Uint32Var(&minVersion, "min-version", 0, "oldest version to keep; every version below it is destroyed")
	cmd.Flags().StringArrayVar(&check, "check", nil, "file or directory to search for wrapped keys still using old versions (repeatable)")
	cmd.Flags().BoolVar(&force, "force", false, "retire without searching for wrapped keys")
	cmd.Flags().BoolVar(&strict, "strict", false, "also refuse when a checked file is of no kind tencrypt knows")
	return cmd
}

// runKeysRetire checks the paths (fail closed) and retires only if no
// wrapped key still needs the versions below minVersion.
func runKeysRetire(ctx context.Context, cmd *cobra.Command, p keys.KEKProvider, tenant string, minVersion uint32, check []string, strict bool) error {
	scan := &keys.ScanResult{Kinds: map[string]int{}, Keys: []keys.KeyRef{}}
	if len(check) > 0 {
		var err error
		if scan, err = keys.Scan(ctx, check, keyholders.All(keyholders.Options{})); err != nil {
			return fmt.Errorf("keys retire: %w; nothing was retired (the check must read every file: repair or remove it, or check yourself and use --force)", err)
		}
	}
	stale := scan.Below(p.Name(), tenant, minVersion)
	others := scan.Kinds[keys.KindOther]
	out := struct {
		Tenant       string         `json:"tenant"`
		MinVersion   uint32         `json:"min_version"`
		CheckedFiles int            `json:"checked_files"`
		Kinds        map[string]int `json:"checked_kinds"`
		Others       []string       `json:"other_files"`
		StillInUse   []keys.KeyRef  `json:"still_referenced"`
		Retired      bool           `json:"retired"`
	}{tenant, minVersion, scan.Files, scan.Kinds, scan.Others, stale, false}
	if strict && others > 0 {
		if err := report(cmd, out, func(w io.Writer) {
			for _, f := range scan.Others {
				fmt.Fprintf(w, "%s: not a file tencrypt knows\n", f)
			}
		}); err != nil {
			return err
		}
		return fmt.Errorf("keys retire --strict: %d %w; nothing was retired", others, errUnknownFiles)
	}
	if len(stale) == 0 {
		if err := p.Retire(ctx, tenant, minVersion); err != nil {
			return err
		}
		out.Retired = true
	}
	if err := report(cmd, out, func(w io.Writer) {
		for _, r := range stale {
			fmt.Fprintf(w, "%s (%s): tenant %s, purpose %s, version %d\n", r.File, r.Kind, r.Tenant, r.Purpose, r.KEKVersion)
		}
		if out.Retired {
			fmt.Fprintf(w, "tenant %s: versions below %d destroyed (%d files checked: %s)\n", tenant, minVersion, scan.Files, kindCounts(scan.Kinds))
		}
	}); err != nil {
		return err
	}
	if len(stale) > 0 {
		unknown := 0
		for _, r := range stale {
			if r.Kind == keys.KindUnknown {
				unknown++
			}
		}
		hint := "rewrap them first (tencrypt keys rewrap PATH...)"
		if unknown > 0 {
			hint += fmt.Sprintf("; %d are in files of a kind tencrypt cannot rewrap: %v", unknown, keys.ErrUnknownContainer)
		}
		return fmt.Errorf("keys retire: %d %w below %d; nothing was retired: %s", len(stale), errStillReferenced, minVersion, hint)
	}
	return nil
}

// kindCounts prints files per kind: "2 file, 1 volume, 3 other".
func kindCounts(kinds map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
