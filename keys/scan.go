package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// HeadSize is how much of each file Holder.Match sees, and how much of a
// file no holder recognises is searched for embedded wrapped keys.
const HeadSize = 64 << 10

// KindUnknown is the kind of a wrapped key found in a file that no Holder
// recognises (by the magic, raw, base64 or hex encoded): it is reported and
// blocks a retire, but no rewrap can move it.
const KindUnknown = "unknown"

// ErrNotHolder: a file named for rewrap holds no wrapped key tencrypt
// knows how to move.
var ErrNotHolder = fmt.Errorf("%w: not a file that holds tencrypt wrapped keys (a wrapped-key blob, a tencrypt file, a volume's configuration, a transit registry)", ErrMalformed)

// ErrUnknownContainer: wrapped keys were found in a file no Holder
// recognises, so no rewrap can move them.
var ErrUnknownContainer = errors.New("wrapped keys found in a file of a kind tencrypt cannot rewrap: move them with the tool that wrote the file, or retire with --force once they are gone")

// KeyRef is a wrapped key found in a file.
type KeyRef struct {
	File string `json:"file"`
	// Offset is where the wrapped key starts in the file, where that is a
	// byte position a tool can use: a key of a KeyOffsetHolder (a blob
	// file: 0; a tencrypt file: in its header), or one embedded in a file
	// of no known kind (where its magic starts, raw or encoded). It is nil
	// for keys inside a JSON document (a volume's configuration, the
	// transit registry).
	Offset     *int64 `json:"offset,omitempty"`
	Kind       string `json:"kind"`
	Provider   string `json:"provider"`
	Tenant     string `json:"tenant"`
	Purpose    string `json:"purpose"`
	KEKVersion uint32 `json:"key_version"`
}

// ScanResult is what Scan found.
type ScanResult struct {
	// Files is the number of regular files read; Kinds counts them by
	// holder kind (KindOther for files with no wrapped key).
	Files int            `json:"checked_files"`
	Kinds map[string]int `json:"kinds"`
	Keys  []KeyRef       `json:"keys"`
	// Others names the first MaxOthers files of KindOther.
	Others []string `json:"others"`
}

// KindOther counts the files no holder recognises and that embed no
// wrapped key.
const KindOther = "other"

// MaxOthers bounds ScanResult.Others.
const MaxOthers = 20

// Below returns the keys of provider and tenant under KEK versions below
// minVersion: those a retire of minVersion would make unreadable.
func (r *ScanResult) Below(provider, tenant string, minVersion uint32) []KeyRef {
	out := []KeyRef{}
	for _, k := range r.Keys {
		if k.Provider == provider && k.Tenant == tenant && k.KEKVersion < minVersion {
			out = append(out, k)
		}
	}
	return out
}

// Scan finds every wrapped key in the files under paths (files or
// directories, walked): through the Holder that recognises each file, or,
// for files none recognises, by searching their first HeadSize bytes for
// the wrapped-key magic in raw, base64 or hex form. It fails closed: a file
// or directory that cannot be read, a file a holder claims but cannot
// parse, or an embedded magic that does not parse as a wrapped key is an
// error, never skipped, since a retire must not destroy a version because
// a file could not be read. Links to regular files are followed; links to
// anything else under a path are an error (name their target instead); a
// path that is itself a link to a directory is walked. Other special
// files (FIFOs, devices, sockets) hold no keys and are skipped.
func Scan(ctx context.Context, paths []string, holders []Holder) (*ScanResult, error) {
	res := &ScanResult{Kinds: map[string]int{}, Keys: []KeyRef{}, Others: []string{}}
	err := walkFiles(ctx, paths, holders, func(path, target string, _ bool) error {
		kind, wks, offs, err := fileKeys(target, holders)
		if err != nil {
			return err
		}
		res.Files++
		if kind == "" {
			kind = KindOther
			if len(res.Others) < MaxOthers {
				res.Others = append(res.Others, path)
			}
		}
		res.Kinds[kind]++
		for i, wk := range wks {
			ref := KeyRef{File: path, Kind: kind, Provider: wk.Provider, Tenant: wk.Tenant, Purpose: wk.Purpose, KEKVersion: wk.KEKVersion}
			if offs != nil {
				ref.Offset = &offs[i]
			}
			res.Keys = append(res.Keys, ref)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// rewrapWorkers is how many files RewrapPaths rewraps at once: each file
// waits on the backend (and the audit log's fsync) three or four times, so a
// few in flight hide that latency (measured: docs/KEYS.md).
const rewrapWorkers = 4

// RewrapPaths moves every wrapped key in the files under paths to its
// tenant's current KEK version, through the Holder of each file, and calls
// each for every key looked at (and once for every file that failed, with
// Status "error"). Links to files are followed and the target is rewritten;
// a file reached twice is rewrapped once. A file named in paths that no
// holder recognises is an error wrapping ErrNotHolder; one found in a
// directory is skipped, unless it holds embedded wrapped keys
// (ErrUnknownContainer). All files are tried; the error of the first file
// (in walk order) that failed is returned.
//
// Files are walked in order, rewrapped rewrapWorkers at a time, and
// reported in walk order: each is called from one goroutine at a time,
// never after RewrapPaths returns.
func RewrapPaths(ctx context.Context, paths []string, holders []Holder, m *Mover, each func(Moved)) error {
	type job struct {
		path, target string
		named        bool
		moved        []Moved
		err          error
		done         chan struct{}
	}
	work := make(chan *job)
	ordered := make(chan *job, 2*rewrapWorkers)
	var wg sync.WaitGroup
	for range rewrapWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j.moved, j.err = rewrapFile(ctx, j.path, j.target, j.named, holders, m)
				close(j.done)
			}
		}()
	}
	var first error
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for j := range ordered {
			<-j.done
			for _, mv := range j.moved {
				each(mv)
			}
			if j.err != nil && first == nil {
				first = j.err
			}
		}
	}()
	seen := map[string]bool{}
	err := walkFiles(ctx, paths, holders, func(path, target string, named bool) error {
		if seen[target] {
			return nil
		}
		seen[target] = true
		j := &job{path: path, target: target, named: named, done: make(chan struct{})}
		ordered <- j
		work <- j
		return nil
	})
	close(work)
	close(ordered)
	wg.Wait()
	<-emitted
	if err != nil {
		return err
	}
	return first
}

// rewrapFile rewraps one file (path as walked, target to write) and
// returns what to report: the keys looked at, and a Moved with Status
// "error" if it failed.
func rewrapFile(ctx context.Context, path, target string, named bool, holders []Holder, m *Mover) ([]Moved, error) {
	fail := func(moved []Moved, mv Moved, err error) ([]Moved, error) {
		mv.Status, mv.Error = StatusError, err.Error()
		return append(moved, mv), err
	}
	h, head, err := classify(target, holders)
	if err != nil {
		return fail(nil, Moved{File: path}, err)
	}
	if h == nil {
		wks, err := findEmbedded(path, head)
		switch {
		case err != nil:
			return fail(nil, Moved{File: path, Kind: KindUnknown}, err)
		case len(wks) > 0:
			return fail(nil, Moved{File: path, Kind: KindUnknown}, fmt.Errorf("%s: %d %w", path, len(wks), ErrUnknownContainer))
		case named:
			return fail(nil, Moved{File: path}, fmt.Errorf("%s: %w", path, ErrNotHolder))
		}
		return nil, nil
	}
	moved, err := h.Rewrap(ctx, target, m)
	for i := range moved {
		moved[i].File, moved[i].Kind = path, h.Kind()
	}
	if err != nil {
		return fail(moved, Moved{File: path, Kind: h.Kind()}, err)
	}
	return moved, nil
}

// walkFiles calls fn for every regular file under paths, with the path as
// walked, the path to write (a link's target) and whether it was named in
// paths itself. Links that cannot be followed are an error unless one of
// holders owns them (LinkHolder). It stops at the first error fn or the
// walk returns.
func walkFiles(ctx context.Context, paths []string, holders []Holder, fn func(path, target string, named bool) error) error {
	for _, root := range paths {
		// A link named on the command line is followed even to a
		// directory: it was named on purpose.
		if fi, err := os.Lstat(root); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(root); err == nil && st.IsDir() {
				resolved, err := filepath.EvalSymlinks(root)
				if err != nil {
					return fmt.Errorf("scan %s: %w", root, err)
				}
				root = resolved
			}
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			target := path
			if d.Type()&fs.ModeSymlink != 0 {
				// A wrapped key reached only through a link must not be
				// missed (retire would destroy a version in use): follow a
				// link to a file, refuse one to anything else.
				fi, err := os.Stat(path)
				if err != nil {
					if ownedLink(holders, path) {
						return nil
					}
					return fmt.Errorf("symbolic link %s: %w", path, err)
				}
				if !fi.Mode().IsRegular() {
					return fmt.Errorf("symbolic link %s points to a directory or special file, which the scan does not follow: name its target instead", path)
				}
				if target, err = filepath.EvalSymlinks(path); err != nil {
					return fmt.Errorf("symbolic link %s: %w", path, err)
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			return fn(path, target, path == root)
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", root, err)
		}
	}
	return nil
}

// ownedLink reports whether a holder owns the link at path that cannot be
// followed (LinkHolder).
func ownedLink(holders []Holder, path string) bool {
	target, err := os.Readlink(path)
	if err != nil {
		return false
	}
	for _, h := range holders {
		if lh, ok := h.(LinkHolder); ok && lh.OwnsLink(path, target) {
			return true
		}
	}
	return false
}

// classify reads the head of the file at path and returns the holder that
// recognises it, or nil.
func classify(path string, holders []Holder) (Holder, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	head, err := io.ReadAll(io.LimitReader(f, HeadSize))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, h := range holders {
		if h.Match(path, head) {
			return h, head, nil
		}
	}
	return nil, head, nil
}

// fileKeys returns the kind of the file at path ("" for none), the wrapped
// keys in it and, where known (see KeyRef.Offset), their offsets.
func fileKeys(path string, holders []Holder) (string, []WrappedKey, []int64, error) {
	h, head, err := classify(path, holders)
	if err != nil {
		return "", nil, nil, err
	}
	if h == nil {
		wks, offs, err := findEmbeddedAt(path, head)
		if len(wks) > 0 {
			return KindUnknown, wks, offs, err
		}
		return "", nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", nil, nil, err
	}
	defer f.Close()
	wks, err := h.Keys(f)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s looks like a %s but cannot be read: %w", path, h.Kind(), err)
	}
	if len(wks) == 0 {
		// A holder that claims a file by its name alone may be wrong about
		// it (an application's own "tencrypt.*" file): a key embedded in a
		// file said to hold none still counts, so the check stays closed.
		embedded, offs, err := findEmbeddedAt(path, head)
		if len(embedded) > 0 || err != nil {
			return KindUnknown, embedded, offs, err
		}
	}
	var offs []int64
	if oh, ok := h.(KeyOffsetHolder); ok && len(wks) == 1 {
		offs = []int64{oh.KeyOffset()}
	}
	return h.Kind(), wks, offs, nil
}

// The wrapped-key magic and version byte as they appear raw, in base64 at
// the start of an encoded value (the first 36 bits: "TCWK" and half of the
// version byte), and in hex.
var (
	rawSig = append([]byte(wrappedMagic), WrappedKeyVersion)
	b64Sig = []byte(base64.StdEncoding.EncodeToString([]byte(wrappedMagic + "\x01\x00"))[:6])
	hexSig = []byte(hex.EncodeToString(rawSig))
)

// findEmbedded searches head for wrapped keys in a file no holder knows:
// the raw blob (embedded in a binary header), or the blob in base64 or hex
// (inside JSON, YAML or text). A magic whose blob does not parse is an
// error: the file may hold a key the scan cannot read.
func findEmbedded(path string, head []byte) ([]WrappedKey, error) {
	wks, _, err := findEmbeddedAt(path, head)
	return wks, err
}

// findEmbeddedAt is findEmbedded that also returns where each key's magic
// starts in head.
func findEmbeddedAt(path string, head []byte) ([]WrappedKey, []int64, error) {
	var out []WrappedKey
	var offs []int64
	type encoding struct {
		name   string
		sig    []byte
		decode func(b []byte) []byte
	}
	encs := []encoding{
		{"raw", rawSig, func(b []byte) []byte { return b }},
		{"base64", b64Sig, decodeBase64Run},
		{"hex", hexSig, decodeHexRun},
	}
	lower := bytes.ToLower(head) // for hex in capitals
	for _, e := range encs {
		in := head
		if e.name == "hex" {
			in = lower
		}
		for off := 0; ; {
			i := bytes.Index(in[off:], e.sig)
			if i < 0 {
				break
			}
			off += i
			wk, _, err := ParseWrappedKey(e.decode(in[off:]))
			if err != nil {
				return out, offs, fmt.Errorf("%s: a wrapped key's magic (%s) at offset %d does not parse: %w; the scan cannot tell which key version it needs", path, e.name, off, err)
			}
			out = append(out, wk)
			offs = append(offs, int64(off))
			off += len(e.sig)
		}
	}
	return out, offs, nil
}

// decodeBase64Run decodes the run of base64 characters (standard or URL
// alphabet, padded or not) at the start of b.
func decodeBase64Run(b []byte) []byte {
	n := 0
	for n < len(b) && isBase64(b[n]) {
		n++
	}
	run := bytes.Map(func(r rune) rune {
		switch r {
		case '-':
			return '+'
		case '_':
			return '/'
		}
		return r
	}, b[:n])
	if len(run)%4 == 1 {
		run = run[:len(run)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(run)))
	n, _ = base64.RawStdEncoding.Decode(out, run)
	return out[:n]
}

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// decodeHexRun decodes the run of (lower-case) hex digits at the start of b.
func decodeHexRun(b []byte) []byte {
	n := 0
	for n < len(b) && (b[n] >= '0' && b[n] <= '9' || b[n] >= 'a' && b[n] <= 'f') {
		n++
	}
	out := make([]byte, n/2)
	n, _ = hex.Decode(out, b[:n&^1])
	return out[:n]
}
