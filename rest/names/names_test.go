package names

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

func newEnv(t testing.TB) *keys.Envelope {
	t.Helper()
	p := keystest.NewMemory("local", nil).Admin()
	if err := p.CreateTenant(context.Background(), "blue"); err != nil {
		t.Fatal(err)
	}
	return keys.NewEnvelope(p, &keystest.AuditLog{}, time.Now)
}

func newTransform(t testing.TB, seed byte) *Transform {
	t.Helper()
	var dek keys.DEK
	for i := range dek {
		dek[i] = seed + byte(i)
	}
	tr, err := NewTransform(&dek, []byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestNameRoundTrip(t *testing.T) {
	tr := newTransform(t, 1)
	iv := NewDirID()
	tests := []struct {
		name  string
		plain string
		long  bool
	}{
		{"one byte", "a", false},
		{"fifteen", strings.Repeat("x", 15), false},
		{"sixteen (a whole pad block)", strings.Repeat("y", 16), false},
		{"unicode", "résumé ☃.txt", false},
		{"dots and spaces", ".. .hidden ", false},
		{"159 bytes: still short", strings.Repeat("s", MaxShortName), false},
		{"160 bytes: long", strings.Repeat("l", MaxShortName+1), true},
		{"255 bytes: long", strings.Repeat("m", 255), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := tr.Encrypt(tt.plain, iv)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.plain) > 4 && strings.Contains(enc, tt.plain) || strings.ContainsAny(enc, "/.=") {
				t.Errorf("encrypted name %q shows the plaintext, padding or a reserved character", enc)
			}
			stored, long := Stored(enc)
			if long != tt.long || len(stored) > NameMax {
				t.Errorf("stored %q: long %v, want %v (len %d)", stored, long, tt.long, len(stored))
			}
			if long && (!IsLong(stored) || IsSidecar(stored) || !IsSidecar(Sidecar(stored)) || CheckSidecar(stored, enc) != nil) {
				t.Error("long-name helpers disagree")
			}
			got, err := tr.Decrypt(enc, iv)
			if err != nil || got != tt.plain {
				t.Fatalf("Decrypt: %q, %v", got, err)
			}
		})
	}
}

func TestEqualNamesDifferAcrossDirectoriesAndVolumes(t *testing.T) {
	tr := newTransform(t, 1)
	a, _ := tr.Encrypt("secret.txt", NewDirID())
	b, _ := tr.Encrypt("secret.txt", NewDirID())
	if a == b {
		t.Error("the same name in two directories encrypts the same")
	}
	iv := NewDirID()
	c, _ := tr.Encrypt("secret.txt", iv)
	d, _ := newTransform(t, 2).Encrypt("secret.txt", iv)
	if c == d {
		t.Error("two volumes' keys give the same name")
	}
	if _, err := newTransform(t, 2).Decrypt(c, iv); !errors.Is(err, ErrBadName) {
		t.Errorf("another volume's key decrypted a name: %v", err)
	}
	if _, err := tr.Decrypt(c, NewDirID()); !errors.Is(err, ErrBadName) {
		t.Errorf("a name moved to another directory decrypted: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	tr := newTransform(t, 1)
	for _, n := range []string{"", ".", "..", "a/b", "nul\x00", strings.Repeat("z", 256)} {
		if _, err := tr.Encrypt(n, DirID{}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Encrypt(%q): %v, want ErrInvalidName", n, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	tr := newTransform(t, 1)
	iv := NewDirID()
	enc, _ := tr.Encrypt("hello", iv)
	flipped := []byte(enc)
	if flipped[3] == 'A' {
		flipped[3] = 'B'
	} else {
		flipped[3] = 'A'
	}
	tests := []struct{ name, enc string }{
		{"empty", ""},
		{"not base64url", "abc+/"},
		{"padding chars", enc + "=="},
		{"not a block multiple", enc[:len(enc)-2]},
		{"a changed character", string(flipped)},
		{"reserved name", DirIVFile},
		{"a newline inside (Go's base64 skips it)", enc[:10] + "\n" + enc[10:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := tr.Decrypt(tt.enc, iv); !errors.Is(err, ErrBadName) {
				t.Errorf("Decrypt(%q) = %q, %v; want ErrBadName", tt.enc, got, err)
			}
		})
	}
	if err := CheckSidecar(LongNamePrefix+"x", enc); !errors.Is(err, ErrBadName) {
		t.Errorf("a mismatched sidecar was accepted: %v", err)
	}
}

func TestSymlinkTargets(t *testing.T) {
	tr := newTransform(t, 1)
	dir, other := NewDirID(), NewDirID()
	enc, err := tr.EncryptSymlink("../some/where", dir, "link1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(enc, "where") || strings.Contains(enc, "/") {
		t.Errorf("target shows through: %q", enc)
	}
	if got, err := tr.DecryptSymlink(enc, dir, "link1"); err != nil || got != "../some/where" {
		t.Fatalf("DecryptSymlink: %q, %v", got, err)
	}
	b := []byte(enc)
	b[len(b)/2] ^= 1
	if _, err := tr.DecryptSymlink(string(b), dir, "link1"); !errors.Is(err, ErrBadName) {
		t.Errorf("tampered target: %v", err)
	}
	if _, err := newTransform(t, 2).DecryptSymlink(enc, dir, "link1"); !errors.Is(err, ErrBadName) {
		t.Errorf("other volume: %v", err)
	}
	// Bound to its entry: copied to another symlink of the same directory,
	// or to a symlink of the same name in another directory, it fails.
	if _, err := tr.DecryptSymlink(enc, dir, "link2"); !errors.Is(err, ErrBadName) {
		t.Errorf("target copied to another symlink: %v", err)
	}
	if _, err := tr.DecryptSymlink(enc, other, "link1"); !errors.Is(err, ErrBadName) {
		t.Errorf("target copied to another directory: %v", err)
	}
	if _, err := tr.EncryptSymlink("", dir, "link1"); err == nil {
		t.Error("empty target accepted")
	}
	// The longest target accepted still fits PATH_MAX once stored.
	longest, err := tr.EncryptSymlink(strings.Repeat("a", MaxSymlinkTarget), dir, "l")
	if err != nil || len(longest) > 4095 {
		t.Errorf("a %d-byte target: stored in %d characters, %v; want at most 4095", MaxSymlinkTarget, len(longest), err)
	}
	if _, err := tr.EncryptSymlink(strings.Repeat("a", MaxSymlinkTarget+1), dir, "l"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a target one byte too long: %v, want ErrInvalidName", err)
	}
}

// TestNamesBoundToDirectory: no name of one directory decrypts in another
// (EME alone let some through: a garbled name with valid padding).
func TestNamesBoundToDirectory(t *testing.T) {
	tr := newTransform(t, 1)
	a, b := NewDirID(), NewDirID()
	for i := range 2000 {
		name := fmt.Sprintf("f%d", i)
		if i%7 == 0 {
			name = strings.Repeat("x", i%255+1)
		}
		enc, err := tr.Encrypt(name, a)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tr.Decrypt(enc, b); !errors.Is(err, ErrBadName) {
			t.Fatalf("%q moved to another directory decrypted to %q, %v", name, got, err)
		}
	}
}

func TestLongNames(t *testing.T) {
	tr := newTransform(t, 1)
	dir, other := NewDirID(), NewDirID()
	long1, long2 := strings.Repeat("a", 200), strings.Repeat("b", 255)
	enc1, _ := tr.Encrypt(long1, dir)
	enc2, _ := tr.Encrypt(long2, dir)
	st1, l1 := Stored(enc1)
	st2, _ := Stored(enc2)
	if !l1 || len(enc2) > MaxEncName || len(st1) != 61 {
		t.Fatalf("long names: %v, %d > %d, %d", l1, len(enc2), MaxEncName, len(st1))
	}
	if got, err := tr.DecryptLong(st1, []byte(enc1), dir); err != nil || got != long1 {
		t.Fatalf("DecryptLong: %q, %v", got, err)
	}
	tests := []struct {
		name    string
		stored  string
		sidecar string
		dir     DirID
	}{
		{"sidecar swapped with another's", st1, enc2, dir},
		{"entry and sidecar moved to another directory", st1, enc1, other},
		{"sidecar truncated", st1, enc1[:len(enc1)-1], dir},
		{"sidecar too long", st1, enc1 + strings.Repeat("A", MaxEncName), dir},
		{"not a long name", enc1[:40], enc1, dir},
		{"sidecar of a short name", st1[:len(st1)-1] + "A", "AAAA", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := tr.DecryptLong(tt.stored, []byte(tt.sidecar), tt.dir); !errors.Is(err, ErrBadName) {
				t.Errorf("DecryptLong = %q, %v; want ErrBadName", got, err)
			}
		})
	}
	_ = st2
}

func TestReserved(t *testing.T) {
	for _, s := range []string{DirIVFile, DirIVNextFile, VolumeFile, LongNamePrefix + "x" + LongNameSuffix} {
		if !IsReserved(s) {
			t.Errorf("%q not reserved", s)
		}
	}
	for _, s := range []string{LongNamePrefix + "x", "abcd", "tencrypt"} {
		if IsReserved(s) {
			t.Errorf("%q reserved", s)
		}
	}
}

func mkdirFD(t *testing.T, path string) int {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := openDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func readDirID(t *testing.T, tr *Transform, path string, l Loc) (DirID, error) {
	t.Helper()
	fd, err := openDir(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	id, _, err := tr.ReadDirID(fd, l)
	return id, err
}

func TestDirIV(t *testing.T) {
	tr := newTransform(t, 1)
	root := t.TempDir()
	rfd := mkdirFD(t, root)
	rootID, err := tr.CreateDirIV(rfd, RootLoc())
	if err != nil {
		t.Fatal(err)
	}
	got, err := readDirID(t, tr, root, RootLoc())
	if err != nil || got != rootID {
		t.Fatalf("ReadDirID: %x, %v", got, err)
	}
	if got, err := tr.ReadRootID(root); err != nil || got != rootID {
		t.Fatalf("ReadRootID: %v", err)
	}
	if _, err := tr.CreateDirIV(rfd, RootLoc()); err == nil {
		t.Error("CreateDirIV replaced an IV")
	}
	if fi, err := os.Stat(filepath.Join(root, DirIVFile)); err != nil || fi.Size() != int64(DirIVFileSize) || fi.Mode().Perm() != 0o400 {
		t.Errorf("IV file: %v, %v", fi, err)
	}
	// Two subdirectories, a and b, of the root, and c inside a.
	aLoc, bLoc := ChildLoc(rootID, "aaaa"), ChildLoc(rootID, "bbbb")
	aID, _ := tr.CreateDirIV(mkdirFD(t, filepath.Join(root, "aaaa")), aLoc)
	bID, _ := tr.CreateDirIV(mkdirFD(t, filepath.Join(root, "bbbb")), bLoc)
	cLoc := ChildLoc(aID, "cccc")
	if _, err := tr.CreateDirIV(mkdirFD(t, filepath.Join(root, "aaaa", "cccc")), cLoc); err != nil {
		t.Fatal(err)
	}
	if aID == bID || aID == rootID {
		t.Fatal("two directories share an ID")
	}
	ivOf := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(root, p, DirIVFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rootIV, aIV, bIV, cIV := ivOf("."), ivOf("aaaa"), ivOf("bbbb"), ivOf("aaaa/cccc")
	forged := bytes.Clone(aIV)
	forged[len(forged)-20] ^= 1
	tests := []struct {
		name string
		data []byte
		loc  Loc
	}{
		{"root IV copied to a subdirectory", rootIV, aLoc},
		{"subdirectory IV copied to the root", aIV, RootLoc()},
		{"IVs of two siblings swapped", bIV, aLoc},
		{"IV moved to another parent", cIV, ChildLoc(bID, "cccc")},
		{"directory renamed without resealing", aIV, ChildLoc(rootID, "zzzz")},
		{"another volume's root IV", newTransform(t, 2).SealDirIV(NewDirID(), RootLoc()), RootLoc()},
		{"a byte flipped", forged, aLoc},
		{"truncated", aIV[:DirIVFileSize-1], aLoc},
		{"extended", append(bytes.Clone(aIV), 0), aLoc},
		{"empty", nil, aLoc},
		{"format-1 IV (16 random bytes)", aIV[:16], aLoc},
		{"wrong magic", append([]byte("XDIV"), aIV[4:]...), aLoc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := tr.OpenDirIV(tt.data, tt.loc); !errors.Is(err, ErrBadDirIV) || id != (DirID{}) {
				t.Errorf("OpenDirIV: %x, %v; want ErrBadDirIV", id, err)
			}
			// The same through a directory's file, without a pending IV to
			// fall back to.
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, DirIVFile), tt.data, 0o400); err != nil {
				t.Fatal(err)
			}
			if _, err := readDirID(t, tr, d, tt.loc); !errors.Is(err, ErrBadDirIV) {
				t.Errorf("ReadDirID: %v; want ErrBadDirIV", err)
			}
		})
	}
	if id, err := tr.OpenDirIV(aIV, aLoc); err != nil || id != aID {
		t.Errorf("a's own IV: %v", err)
	}
	if _, err := readDirID(t, tr, t.TempDir(), aLoc); !errors.Is(err, ErrBadDirIV) {
		t.Errorf("missing IV file: %v", err)
	}
	// Not a regular file: refused at once, never read (a FIFO would block).
	for _, kind := range []string{"fifo", "symlink", "dir"} {
		d := t.TempDir()
		p := filepath.Join(d, DirIVFile)
		switch kind {
		case "fifo":
			must(t, unix.Mkfifo(p, 0o600))
		case "symlink":
			must(t, os.Symlink(filepath.Join(root, "aaaa", DirIVFile), p))
		case "dir":
			must(t, os.Mkdir(p, 0o700))
		}
		if _, err := readDirID(t, tr, d, aLoc); !errors.Is(err, ErrBadDirIV) {
			t.Errorf("%s as IV file: %v", kind, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMoveDir: renaming a directory keeps its ID, at every crash point.
func TestMoveDir(t *testing.T) {
	tr := newTransform(t, 1)
	root := t.TempDir()
	parent := NewDirID()
	from, to := ChildLoc(parent, "from"), ChildLoc(parent, "to")
	fd := mkdirFD(t, filepath.Join(root, "from"))
	id, err := tr.CreateDirIV(fd, from)
	if err != nil {
		t.Fatal(err)
	}
	// Crash after PrepareMove, before the rename: still at from, the
	// pending IV is ignored, and a later move replaces it.
	must(t, tr.PrepareMove(fd, id, to))
	if got, err := readDirID(t, tr, filepath.Join(root, "from"), from); err != nil || got != id {
		t.Fatalf("before the rename: %v", err)
	}
	must(t, tr.PrepareMove(fd, id, to))
	// Crash after the rename, before CommitMove: recovered from the
	// pending IV, which is then committed.
	must(t, os.Rename(filepath.Join(root, "from"), filepath.Join(root, "to")))
	got, recovered, err := tr.ReadDirID(fd, to)
	if err != nil || got != id || !recovered {
		t.Fatalf("after the rename: %v, recovered %v", err, recovered)
	}
	if _, err := os.Stat(filepath.Join(root, "to", DirIVNextFile)); !os.IsNotExist(err) {
		t.Errorf("pending IV left after recovery: %v", err)
	}
	if got, recovered, err := tr.ReadDirID(fd, to); err != nil || got != id || recovered {
		t.Fatalf("after recovery: %v", err)
	}
	// A complete move, and an aborted one.
	back := ChildLoc(NewDirID(), "back")
	must(t, tr.PrepareMove(fd, id, back))
	must(t, CommitMove(fd))
	if got, _, err := tr.ReadDirID(fd, back); err != nil || got != id {
		t.Fatalf("after commit: %v", err)
	}
	if _, _, err := tr.ReadDirID(fd, to); !errors.Is(err, ErrBadDirIV) {
		t.Errorf("the old place still opens: %v", err)
	}
	must(t, tr.PrepareMove(fd, id, to))
	AbortMove(fd)
	if _, err := os.Stat(filepath.Join(root, "to", DirIVNextFile)); !os.IsNotExist(err) {
		t.Errorf("pending IV left after abort: %v", err)
	}
	// rmdir's removal and restore.
	must(t, RemoveDirIV(fd))
	must(t, tr.RestoreDirIV(fd, id, back))
	if got, _, err := tr.ReadDirID(fd, back); err != nil || got != id {
		t.Fatalf("after restore: %v", err)
	}
}

func TestVolume(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t)
	dir := filepath.Join(t.TempDir(), "cipher")
	v, err := InitVolume(ctx, dir, env, "blue", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitVolume(ctx, dir, env, "blue", time.Now()); !errors.Is(err, ErrVolumeExists) {
		t.Errorf("second init: %v", err)
	}
	a0, err := v.Transform(ctx, env, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a0.ReadRootID(dir); err != nil {
		t.Error(err)
	}
	loaded, err := LoadVolume(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID != v.ID || loaded.Tenant != "blue" || loaded.NameKey.Purpose != Purpose {
		t.Errorf("loaded %+v, want %+v", loaded, v)
	}
	a, err := v.Transform(ctx, env, "test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := loaded.Transform(ctx, env, "test")
	if err != nil {
		t.Fatal(err)
	}
	iv := NewDirID()
	ea, _ := a.Encrypt("x", iv)
	eb, _ := b.Encrypt("x", iv)
	if ea != eb {
		t.Error("the reloaded volume encrypts names differently")
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := InitVolume(ctx, other, env, "blue", time.Now()); err == nil {
		t.Error("init in a non-empty directory")
	}
	if _, err := LoadVolume(t.TempDir()); !errors.Is(err, ErrNoVolume) {
		t.Errorf("no volume: %v", err)
	}
	if _, err := LoadVolume(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrNoVolume) {
		t.Errorf("no directory: %v", err)
	}
	// A volume file that is a symlink (to a real one) or a FIFO is refused
	// without being followed or blocking on.
	for _, kind := range []string{"symlink", "fifo"} {
		d := t.TempDir()
		p := filepath.Join(d, VolumeFile)
		if kind == "symlink" {
			must(t, os.Symlink(filepath.Join(dir, VolumeFile), p))
		} else {
			must(t, unix.Mkfifo(p, 0o600))
		}
		if _, err := LoadVolume(d); !errors.Is(err, ErrBadVolume) {
			t.Errorf("%s as the volume file: %v, want ErrBadVolume", kind, err)
		}
	}
	if _, err := InitVolume(ctx, t.TempDir(), env, "green", time.Now()); !errors.Is(err, keys.ErrUnknownTenant) {
		t.Errorf("unknown tenant: %v", err)
	}
}

func TestParseVolumeRejects(t *testing.T) {
	env := newEnv(t)
	v, err := InitVolume(context.Background(), t.TempDir(), env, "blue", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _ := v.Marshal()
	tests := []struct{ name, from, to string }{
		{"format", `"tencrypt-volume"`, `"other"`},
		{"version", `"version": 2`, `"version": 3`},
		{"version 1", `"version": 2`, `"version": 1`},
		{"volume id", `"volume_id": "`, `"volume_id": "zz`},
		{"tenant", `"tenant": "blue"`, `"tenant": "red"`},
		{"name key", `"name_key": "`, `"name_key": "!`},
		{"created", `"created": "`, `"created": "x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(string(good), tt.from, tt.to, 1)
			if bad == string(good) {
				t.Fatalf("edit %q not applied", tt.from)
			}
			if _, err := ParseVolume([]byte(bad)); !errors.Is(err, ErrBadVolume) {
				t.Errorf("ParseVolume: %v, want ErrBadVolume", err)
			}
		})
	}
	if _, err := ParseVolume(good); err != nil {
		t.Errorf("good volume: %v", err)
	}
	_, err = ParseVolume([]byte(strings.Replace(string(good), `"version": 2`, `"version": 1`, 1)))
	if !errors.Is(err, ErrVolumeV1) || !strings.Contains(err.Error(), "volume format 1 is no longer supported") || !strings.Contains(err.Error(), "tencrypt volume init") {
		t.Errorf("a format-1 volume: %v; want ErrVolumeV1 saying what to do", err)
	}
}
