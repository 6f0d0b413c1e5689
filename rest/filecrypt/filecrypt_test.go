package filecrypt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/rest/format"
)

func envelope(t *testing.T, tenants ...string) *keys.Envelope {
	t.Helper()
	p := keystest.NewMemory("memory", time.Now).Admin()
	for _, tenant := range tenants {
		if err := p.CreateTenant(t.Context(), tenant); err != nil {
			t.Fatal(err)
		}
	}
	return keys.NewEnvelope(p, &keystest.AuditLog{}, time.Now)
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// dsts lists the jobs' outputs relative to dir, directories with a slash.
func dsts(dir string, jobs []Job) []string {
	var out []string
	for _, j := range jobs {
		rel, _ := filepath.Rel(dir, j.Dst)
		if j.Dst == "-" {
			rel = "-"
		}
		if j.Dir {
			rel += "/"
		}
		out = append(out, rel)
	}
	slices.Sort(out)
	return out
}

func TestPlan(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a"), []byte("a"))
	write(t, filepath.Join(dir, "tree", "b"), []byte("b"))
	write(t, filepath.Join(dir, "tree", "sub", "c"), []byte("c"))
	write(t, filepath.Join(dir, "tree", "old.tenc"), []byte("x"))
	write(t, filepath.Join(dir, "x.tenc"), []byte("x"))
	if err := os.Symlink("b", filepath.Join(dir, "tree", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "outdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	in := func(names ...string) []string {
		for i, n := range names {
			if n != "-" {
				names[i] = filepath.Join(dir, n)
			}
		}
		return names
	}
	tests := []struct {
		name    string
		sources []string
		p       Params
		op      Op
		want    []string
		err     error
	}{
		{"one file beside", in("a"), Params{}, OpEncrypt, []string{"a.tenc"}, nil},
		{"one file to a name", in("a"), Params{Output: filepath.Join(dir, "z")}, OpEncrypt, []string{"z"}, nil},
		{"into a directory", in("a", "x.tenc"), Params{Output: filepath.Join(dir, "outdir")}, OpEncrypt, []string{"outdir/a.tenc", "outdir/x.tenc.tenc"}, nil},
		{"stdin to stdout", in("-"), Params{}, OpEncrypt, []string{"-"}, nil},
		{"tree beside, .tenc and links skipped", in("tree"), Params{Recursive: true}, OpEncrypt, []string{"tree/b.tenc", "tree/sub/c.tenc"}, nil},
		{"tree elsewhere", in("tree"), Params{Recursive: true, Output: filepath.Join(dir, "enc")}, OpEncrypt, []string{"enc/", "enc/b.tenc", "enc/sub/", "enc/sub/c.tenc"}, nil},
		{"decrypt takes only .tenc", in("tree"), Params{Recursive: true}, OpDecrypt, []string{"tree/old"}, nil},
		{"decrypt drops the suffix", in("x.tenc"), Params{}, OpDecrypt, []string{"x"}, nil},
		{"directory without -r", in("tree"), Params{}, OpEncrypt, nil, ErrUsage},
		{"decrypt without the suffix", in("a"), Params{}, OpDecrypt, nil, ErrUsage},
		{"several sources to a file", in("a", "x.tenc"), Params{Output: filepath.Join(dir, "z")}, OpEncrypt, nil, ErrUsage},
		{"stdin among others", in("-", "a"), Params{}, OpEncrypt, nil, ErrUsage},
		{"a directory to stdout", in("tree"), Params{Recursive: true, Output: "-"}, OpEncrypt, nil, ErrUsage},
		{"missing source", in("nosuch"), Params{}, OpEncrypt, nil, fs.ErrNotExist},
		{"existing output", in("tree/old.tenc"), Params{Output: filepath.Join(dir, "a")}, OpDecrypt, nil, ErrOutputExists},
		{"existing output with force", in("tree/old.tenc"), Params{Output: filepath.Join(dir, "a"), Force: true}, OpDecrypt, []string{"a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := Plan(tt.sources, tt.p, tt.op)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Plan: %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dsts(dir, jobs); !slices.Equal(got, tt.want) {
				t.Fatalf("outputs %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEncryptDecryptTree round-trips a tree through the library, checks that
// a tampered file fails alone and leaves no output, and that Inspect reads
// the header's claims.
func TestEncryptDecryptTree(t *testing.T) {
	ctx := t.Context()
	env := envelope(t, "blue", "red")
	dir := t.TempDir()
	files := map[string][]byte{"empty": nil, "one": {1}, "sub/big": randomBytes(3*format.BlockSize+5, 7)}
	for name, data := range files {
		write(t, filepath.Join(dir, "src", name), data)
	}
	enc, dec := filepath.Join(dir, "enc"), filepath.Join(dir, "dec")
	if err := Encrypt(ctx, env, Params{Recursive: true, Output: enc, Tenant: "blue"}, []string{filepath.Join(dir, "src")}, IO{}); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(filepath.Join(enc, "sub", "big.tenc"), nil)
	if err != nil || info.Tenant != "blue" || info.PlaintextSize != int64(len(files["sub/big"])) || info.Blocks != 4 {
		t.Fatalf("Inspect: %+v, %v", info, err)
	}
	found, err := Find([]string{enc}, true)
	if err != nil || len(found) != len(files) {
		t.Fatalf("Find: %v, %v", found, err)
	}
	// Tamper with one file: it fails, the others are still decrypted.
	bad := filepath.Join(enc, "one.tenc")
	ct, _ := os.ReadFile(bad)
	ct[len(ct)-1] ^= 1
	write(t, bad, ct)
	var reported []error
	err = Decrypt(ctx, env, Params{Recursive: true, Output: dec, Tenant: "blue"}, []string{enc}, IO{OnError: func(err error) { reported = append(reported, err) }})
	var je *JobsError
	if !errors.As(err, &je) || je.Failed != 1 || !errors.Is(err, format.ErrAuth) || len(reported) != 1 {
		t.Fatalf("Decrypt with one tampered file: %v (reported %v), want one JobsError matching format.ErrAuth", err, reported)
	}
	if _, err := os.Lstat(filepath.Join(dec, "one")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the tampered file left an output: %v", err)
	}
	for name, data := range files {
		if name == "one" {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(dec, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s after the round trip: %v", name, err)
		}
	}
	// Another tenant is refused; through stdout, nothing is written.
	var out bytes.Buffer
	err = Decrypt(ctx, env, Params{Output: "-", Tenant: "red"}, []string{filepath.Join(enc, "sub", "big.tenc")}, IO{Stdout: &out})
	if !errors.Is(err, keys.ErrPermissionDenied) || out.Len() != 0 {
		t.Fatalf("Decrypt of blue's file as red: %v, %d bytes out", err, out.Len())
	}
}

func TestStreamsStopOnCancel(t *testing.T) {
	env := envelope(t, "blue")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out bytes.Buffer
	err := EncryptStream(ctx, env, "blue", strings.NewReader("data"), &out, "x")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("EncryptStream after cancel: %v", err)
	}
	err = Run(ctx, []Job{{Src: "-", Dst: "-"}}, false, IO{}, func(context.Context, io.Reader, io.Writer, string) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
}
