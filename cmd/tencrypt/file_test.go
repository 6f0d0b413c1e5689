package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/rest/filecrypt"
	"github.com/tencrypt/tencrypt/rest/format"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// listTree returns the regular files under dir, relative, with contents.
func listTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func names(m map[string][]byte) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// fileEnv is a local keyring with tenants blue and red.
func newFileEnv(t *testing.T) *keysEnv {
	e := newKeysEnv(t)
	e.ok("keys", "init")
	e.ok("keys", "create", "blue")
	e.ok("keys", "create", "red")
	return e
}

// TestFileCLIEndToEnd encrypts a directory tree, carries it elsewhere with
// tar, decrypts it and compares byte for byte; then checks the failure
// cases leave no output.
func TestFileCLIEndToEnd(t *testing.T) {
	testenv.RequireTool(t, "tar")
	e := newFileEnv(t)
	src := filepath.Join(e.dir, "src")
	sizes := map[string]int{"empty": 0, "one": 1, "block": 4096, "block+1": 4097, "sub/dir/big": 1<<20 + 7, "sub/5000": 5000}
	for name, n := range sizes {
		writeFile(t, filepath.Join(src, name), randomBytes(n, uint64(n)))
	}
	if err := os.Symlink("one", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	e.ok("file", "encrypt", "--tenant", "blue", "-r", "src", "-o", "enc")
	enc := listTree(t, filepath.Join(e.dir, "enc"))
	if got, want := len(enc), len(sizes); got != want {
		t.Fatalf("encrypted %d files (%v), want %d (the symlink skipped)", got, names(enc), want)
	}
	for name, n := range sizes {
		ct := enc[name+".tenc"]
		if !bytes.HasPrefix(ct, []byte(format.Magic)) || bytes.Contains(ct, randomBytes(n, uint64(n))[:min(n, 64)]) && n >= 16 {
			t.Fatalf("%s.tenc is not an encrypted file", name)
		}
		if fi, err := os.Stat(filepath.Join(e.dir, "enc", name+".tenc")); err != nil || fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s.tenc: mode not kept: %v", name, err)
		}
	}

	// Carry the cipher tree elsewhere with tar.
	tarball := filepath.Join(e.dir, "enc.tar")
	if out, err := exec.Command("tar", "-C", e.dir, "-cf", tarball, "enc").CombinedOutput(); err != nil {
		t.Fatalf("tar c: %v %s", err, out)
	}
	elsewhere := filepath.Join(e.dir, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", elsewhere, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("tar x: %v %s", err, out)
	}
	e.ok("file", "decrypt", "-r", filepath.Join(elsewhere, "enc"), "-o", "out")
	out := listTree(t, filepath.Join(e.dir, "out"))
	if len(out) != len(sizes) {
		t.Fatalf("decrypted %v", names(out))
	}
	for name, n := range sizes {
		if !bytes.Equal(out[name], randomBytes(n, uint64(n))) {
			t.Fatalf("%s differs after encrypt, tar, decrypt", name)
		}
	}

	// An existing output is not replaced without --force.
	e.want(exitcodes.Usage, "file", "decrypt", "enc/one.tenc", "-o", "out/block")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "out", "block")); !bytes.Equal(b, randomBytes(4096, 4096)) {
		t.Fatal("an existing output was changed")
	}
	e.ok("file", "decrypt", "enc/one.tenc", "-o", "out/block", "--force")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "out", "block")); !bytes.Equal(b, randomBytes(1, 1)) {
		t.Fatal("--force did not replace the output")
	}

	// Another tenant's credentials cannot decrypt blue's file.
	red := *e
	red.env = append(slices.Clone(e.env), "TENCRYPT_LOCAL_KEY_FILE=", "TENCRYPT_LOCAL_TENANT=red",
		"TENCRYPT_LOCAL_TENANT_KEY_FILE="+filepath.Join(e.dir, "keyring.access", "red.key"))
	_, stderr, code := red.run("file", "decrypt", "enc/sub/5000.tenc", "-o", "red-out")
	if code != exitcodes.PermissionDenied && code != exitcodes.AuthFailed {
		t.Fatalf("red decrypting blue's file: exit %d, want %d or %d\n%s", code, exitcodes.PermissionDenied, exitcodes.AuthFailed, stderr)
	}
	t.Logf("red's credentials on blue's file: exit %d: %s", code, strings.TrimSpace(stderr))
	noFile(t, filepath.Join(e.dir, "red-out"))
	// Blue's own access key can.
	blue := *e
	blue.env = append(slices.Clone(e.env), "TENCRYPT_LOCAL_KEY_FILE=", "TENCRYPT_LOCAL_TENANT=blue",
		"TENCRYPT_LOCAL_TENANT_KEY_FILE="+filepath.Join(e.dir, "keyring.access", "blue.key"))
	blue.ok("file", "decrypt", "enc/sub/5000.tenc", "-o", "blue-out")
	// --tenant refuses files of another tenant.
	e.want(exitcodes.PermissionDenied, "file", "decrypt", "--tenant", "red", "enc/sub/5000.tenc", "-o", "red-out")
	noFile(t, filepath.Join(e.dir, "red-out"))

	// A tampered file fails with exit 4 and leaves nothing, not even a
	// temporary file.
	ct := bytes.Clone(enc["sub/dir/big.tenc"])
	ct[len(ct)/2] ^= 1
	writeFile(t, filepath.Join(e.dir, "bad", "big.tenc"), ct)
	e.want(exitcodes.AuthFailed, "file", "decrypt", "bad/big.tenc")
	if left := listTree(t, filepath.Join(e.dir, "bad")); len(left) != 1 {
		t.Fatalf("tampered decrypt left %v", names(left))
	}
	// Cut at a block boundary: the same.
	good := enc["sub/dir/big.tenc"]
	hdr, err := format.ReadHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.dir, "cut", "big.tenc"), good[:hdr.Size()+10*format.SealedBlockSize])
	e.want(exitcodes.AuthFailed, "file", "decrypt", "cut/big.tenc")
	if left := listTree(t, filepath.Join(e.dir, "cut")); len(left) != 1 {
		t.Fatalf("truncated decrypt left %v", names(left))
	}
	// Not a tencrypt file; a newer format version.
	writeFile(t, filepath.Join(e.dir, "plain.tenc"), []byte("hello, world"))
	e.want(exitcodes.NotTencrypt, "file", "decrypt", "plain.tenc")
	newer := bytes.Clone(good)
	newer[4] = 2
	writeFile(t, filepath.Join(e.dir, "newer.tenc"), newer)
	e.want(exitcodes.UnknownFormat, "file", "decrypt", "newer.tenc")
	e.want(exitcodes.UnknownFormat, "file", "inspect", "newer.tenc")
	noFile(t, filepath.Join(e.dir, "plain"))
	noFile(t, filepath.Join(e.dir, "newer"))
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Fatalf("%s exists; a failed command must leave no output", path)
	}
}

func TestFileCLIStdio(t *testing.T) {
	e := newFileEnv(t)
	pt := randomBytes(100000, 9)
	cmd := exec.CommandContext(t.Context(), e.bin, "file", "encrypt", "--tenant", "blue", "-")
	cmd.Env, cmd.Dir, cmd.Stdin = e.env, e.dir, bytes.NewReader(pt)
	ct, err := cmd.Output()
	if err != nil {
		t.Fatalf("encrypt -: %v", err)
	}
	cmd = exec.CommandContext(t.Context(), e.bin, "file", "decrypt", "-")
	cmd.Env, cmd.Dir, cmd.Stdin = e.env, e.dir, bytes.NewReader(ct)
	back, err := cmd.Output()
	if err != nil || !bytes.Equal(back, pt) {
		t.Fatalf("decrypt -: %v, %d bytes", err, len(back))
	}
	// inspect reads stdin too, and its JSON has the header's fields.
	cmd = exec.CommandContext(t.Context(), e.bin, "file", "inspect", "--json", "-")
	cmd.Env, cmd.Dir, cmd.Stdin = e.env, e.dir, bytes.NewReader(ct)
	js, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var ir filecrypt.Info
	if err := json.Unmarshal(js, &ir); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	if ir.Tenant != "blue" || ir.Provider != "local" || ir.KEKVersion != 1 || ir.PlaintextSize != int64(len(pt)) ||
		ir.FileSize != int64(len(ct)) || ir.Suite != "AES-256-GCM" || ir.BlockSize != 4096 || len(ir.FileID) != 32 || ir.Blocks != 25 {
		t.Fatalf("inspect: %+v", ir)
	}
	// The JSON never holds key material: only the fields above.
	var raw map[string]any
	_ = json.Unmarshal(js, &raw)
	for k := range raw {
		if strings.Contains(k, "key") && k != "kek_version" {
			t.Fatalf("inspect prints a field %q", k)
		}
	}
}

func TestFileCLIRewrap(t *testing.T) {
	e := newFileEnv(t)
	pt := randomBytes(3*4096+5, 3)
	writeFile(t, filepath.Join(e.dir, "d", "a"), pt)
	writeFile(t, filepath.Join(e.dir, "d", "b"), pt)
	e.ok("file", "encrypt", "--tenant", "blue", "-r", "d")
	before := listTree(t, filepath.Join(e.dir, "d"))
	e.ok("keys", "rotate", "blue")
	var res []fileRewrapResult
	if err := json.Unmarshal([]byte(e.ok("file", "rewrap", "--json", "d/a.tenc")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Status != "rewrapped" || res[0].Method != "in-place" || res[0].From != 1 || res[0].To != 2 {
		t.Fatalf("rewrap: %+v", res)
	}
	e.ok("file", "rewrap", "--copy", "d/b.tenc")
	after := listTree(t, filepath.Join(e.dir, "d"))
	for _, name := range []string{"a.tenc", "b.tenc"} {
		h0, _ := format.ReadHeader(bytes.NewReader(before[name]))
		h1, err := format.ReadHeader(bytes.NewReader(after[name]))
		if err != nil || h1.Key.KEKVersion != 2 || h1.FileID != h0.FileID {
			t.Fatalf("%s after rewrap: %v", name, err)
		}
		if !bytes.Equal(before[name][h0.Size():], after[name][h1.Size():]) {
			t.Fatalf("%s: rewrap changed the content blocks", name)
		}
	}
	if res := e.ok("file", "rewrap", "-r", "d"); !strings.Contains(res, "already at current version 2") {
		t.Fatalf("second rewrap: %s", res)
	}
	// Retiring version 1 must not break the rewrapped files.
	e.ok("keys", "retire", "blue", "--min-version", "2", "--check", "d")
	e.ok("file", "decrypt", "d/a.tenc", "-o", "a.out")
	e.ok("file", "decrypt", "d/b.tenc", "-o", "b.out")
	for _, f := range []string{"a.out", "b.out"} {
		if b, _ := os.ReadFile(filepath.Join(e.dir, f)); !bytes.Equal(b, pt) {
			t.Fatalf("%s differs after rewrap and retire", f)
		}
	}
}

func TestFileCLIProgress(t *testing.T) {
	e := newFileEnv(t)
	writeFile(t, filepath.Join(e.dir, "p"), randomBytes(1<<20, 5))
	_, stderr, code := e.run("file", "encrypt", "--tenant", "blue", "--progress", "p")
	if code != 0 || !strings.Contains(stderr, "p: 1 / 1 MiB (100%)") {
		t.Fatalf("exit %d, progress %q", code, stderr)
	}
	// Without --progress and not on a terminal: quiet.
	_, stderr, _ = e.run("file", "decrypt", "p.tenc", "-o", "p2")
	if stderr != "" {
		t.Fatalf("unexpected stderr %q", stderr)
	}
}

// TestFileCLINoSpace fills a small tmpfs: encrypt must exit with NoSpace and
// leave nothing in the destination.
func TestFileCLINoSpace(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mount", "umount")
	e := newFileEnv(t)
	small := filepath.Join(e.dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tencrypt-test", small).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (needs root and tmpfs): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", small).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", small, err, out)
		}
	})
	writeFile(t, filepath.Join(e.dir, "big"), randomBytes(1<<20, 8))
	e.want(exitcodes.NoSpace, "file", "encrypt", "--tenant", "blue", "big", "-o", filepath.Join(small, "big.tenc"))
	entries, err := os.ReadDir(small)
	if err != nil || len(entries) != 0 {
		t.Fatalf("the full file system holds %v after the failure (%v)", entries, err)
	}
	// A file that fits still works there.
	writeFile(t, filepath.Join(e.dir, "little"), randomBytes(1000, 1))
	e.ok("file", "encrypt", "--tenant", "blue", "little", "-o", filepath.Join(small, "little.tenc"))
}

func TestFileCLIBench(t *testing.T) {
	e := newFileEnv(t)
	var res filecrypt.BenchResult
	if err := json.Unmarshal([]byte(e.ok("file", "bench", "--size", "2", "--runs", "1", "--dir", e.dir, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Bytes != 2<<20 || res.EncryptMBps <= 0 || res.DecryptMBps <= 0 || res.RawSealMBps <= 0 || res.CopyMBps <= 0 {
		t.Fatalf("bench: %+v", res)
	}
	if left, _ := os.ReadDir(e.dir); slices.ContainsFunc(left, func(d fs.DirEntry) bool { return strings.HasPrefix(d.Name(), "tencrypt-bench-") }) {
		t.Fatal("bench left its directory behind")
	}
}

// TestFileCLIKilledLeavesNothing kills 'file encrypt', 'file decrypt' and
// 'file rewrap --copy' half-way through a 256 MiB file, on tmpfs and on the
// disk, and checks that no directory entry of any name appeared and that
// the input is intact. encrypt and decrypt are also stopped with SIGTERM,
// which must end them cleanly the same way.
func TestFileCLIKilledLeavesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "mount", "umount")
	for _, where := range []string{"tmpfs", "disk"} {
		t.Run(where, func(t *testing.T) {
			var dir string
			if where == "tmpfs" {
				dir = t.TempDir()
				if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1g", testenv.Name("tencrypt-kill"), dir).CombinedOutput(); err != nil {
					t.Fatalf("mount a tmpfs (needs root and tmpfs): %v %s", err, out)
				}
				t.Cleanup(func() {
					if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
						t.Errorf("umount %s: %v %s", dir, err, out)
					}
				})
			} else {
				var err error
				if dir, err = os.MkdirTemp("/var/tmp", testenv.Name("tencrypt-kill-")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
			}
			testKilledLeavesNothing(t, dir)
		})
	}
}

func testKilledLeavesNothing(t *testing.T, dir string) {
	e := newFileEnv(t)
	src, out, enc := filepath.Join(dir, "src"), filepath.Join(dir, "out"), filepath.Join(dir, "enc")
	for _, d := range []string{src, out, enc} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	big := filepath.Join(src, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.CopyN(f, rand.NewChaCha8([32]byte{1}), 256<<20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	bigTenc := filepath.Join(enc, "big.tenc")
	e.ok("file", "encrypt", "--tenant", "blue", big, "-o", bigTenc)

	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		killMidway(t, e, sig, out, big, "file", "encrypt", "--tenant", "blue", big, "-o", filepath.Join(out, "big.tenc"))
		killMidway(t, e, sig, out, bigTenc, "file", "decrypt", bigTenc, "-o", filepath.Join(out, "big"))
	}
	// rewrap --copy writes its temporary file beside the file it replaces.
	e.ok("keys", "rotate", "blue")
	killMidway(t, e, syscall.SIGKILL, enc, bigTenc, "file", "rewrap", "--copy", bigTenc)
	// And the file still decrypts to the original.
	e.ok("file", "decrypt", bigTenc, "-o", filepath.Join(out, "check"))
	if fileHash(t, filepath.Join(out, "check")) != fileHash(t, big) {
		t.Fatal("the file decrypted after the killed rewrap differs from the original")
	}
}

// killMidway starts tencrypt args, waits until it has written 16 MiB to a
// file in outDir (watching its descriptors, so "half-way" does not depend
// on timing), sends sig, and checks that outDir's entries and input's
// content are what they were.
func killMidway(t *testing.T, e *keysEnv, sig syscall.Signal, outDir, input string, args ...string) {
	t.Helper()
	before := dirNames(t, outDir)
	sum := fileHash(t, input)
	s := e.start(args...)
	cmd, stderr, exited := s.cmd, &s.stderr, s.exited
	fdDir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	var werr error
poll:
	for {
		select {
		case werr = <-exited:
			t.Fatalf("%v (%v) ended (%v) before it wrote 16 MiB to %s: the input is too small to stop it half-way\n%s", args, sig, werr, outDir, stderr.String())
		default:
		}
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || filepath.Dir(target) != outDir || target == input {
				continue
			}
			if fi, err := os.Stat(filepath.Join(fdDir, fd.Name())); err == nil && fi.Size() >= 16<<20 {
				break poll
			}
		}
		runtime.Gosched()
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	werr = <-exited
	if werr == nil {
		t.Fatalf("%v ended with success after %v", args, sig)
	}
	if after := dirNames(t, outDir); !slices.Equal(before, after) {
		t.Errorf("%v killed by %v: %s held %v, now %v", args, sig, outDir, before, after)
	}
	if fileHash(t, input) != sum {
		t.Errorf("%v killed by %v changed its input %s", args, sig, input)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

func fileHash(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil))
}
