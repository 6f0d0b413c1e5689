package names

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	iv := NewDirIV()
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
		{"175 bytes: still short", strings.Repeat("s", 175), false},
		{"176 bytes: long", strings.Repeat("l", 176), true},
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
	a, _ := tr.Encrypt("secret.txt", NewDirIV())
	b, _ := tr.Encrypt("secret.txt", NewDirIV())
	if a == b {
		t.Error("the same name in two directories encrypts the same")
	}
	iv := NewDirIV()
	c, _ := tr.Encrypt("secret.txt", iv)
	d, _ := newTransform(t, 2).Encrypt("secret.txt", iv)
	if c == d {
		t.Error("two volumes' keys give the same name")
	}
	if _, err := newTransform(t, 2).Decrypt(c, iv); !errors.Is(err, ErrBadName) {
		t.Errorf("another volume's key decrypted a name: %v", err)
	}
	if _, err := tr.Decrypt(c, NewDirIV()); !errors.Is(err, ErrBadName) {
		t.Errorf("a name moved to another directory decrypted: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	tr := newTransform(t, 1)
	for _, n := range []string{"", ".", "..", "a/b", "nul\x00", strings.Repeat("z", 256)} {
		if _, err := tr.Encrypt(n, DirIV{}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Encrypt(%q): %v, want ErrInvalidName", n, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	tr := newTransform(t, 1)
	iv := NewDirIV()
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
	enc, err := tr.EncryptSymlink("../some/where")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(enc, "where") || strings.Contains(enc, "/") {
		t.Errorf("target shows through: %q", enc)
	}
	if got, err := tr.DecryptSymlink(enc); err != nil || got != "../some/where" {
		t.Fatalf("DecryptSymlink: %q, %v", got, err)
	}
	b := []byte(enc)
	b[len(b)/2] ^= 1
	if _, err := tr.DecryptSymlink(string(b)); !errors.Is(err, ErrBadName) {
		t.Errorf("tampered target: %v", err)
	}
	if _, err := newTransform(t, 2).DecryptSymlink(enc); !errors.Is(err, ErrBadName) {
		t.Errorf("other volume: %v", err)
	}
	if _, err := tr.EncryptSymlink(""); err == nil {
		t.Error("empty target accepted")
	}
	// The longest target accepted still fits PATH_MAX once stored.
	longest, err := tr.EncryptSymlink(strings.Repeat("a", MaxSymlinkTarget))
	if err != nil || len(longest) > 4095 {
		t.Errorf("a %d-byte target: stored in %d characters, %v; want at most 4095", MaxSymlinkTarget, len(longest), err)
	}
	if _, err := tr.EncryptSymlink(strings.Repeat("a", MaxSymlinkTarget+1)); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a target one byte too long: %v, want ErrInvalidName", err)
	}
}

func TestDirIV(t *testing.T) {
	dir := t.TempDir()
	iv, err := WriteDirIV(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadDirIV(dir)
	if err != nil || got != iv {
		t.Fatalf("ReadDirIV: %x, %v", got, err)
	}
	if _, err := WriteDirIV(dir); err == nil {
		t.Error("WriteDirIV replaced an IV")
	}
	for _, n := range []int{0, 15, 17} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, DirIVFile), make([]byte, n), 0o400); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadDirIV(d); !errors.Is(err, ErrBadDirIV) {
			t.Errorf("%d-byte IV file: %v", n, err)
		}
	}
	if _, err := ReadDirIV(t.TempDir()); !errors.Is(err, ErrBadDirIV) {
		t.Errorf("missing IV file: %v", err)
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
	if _, err := ReadDirIV(dir); err != nil {
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
	iv := NewDirIV()
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
		{"version", `"version": 1`, `"version": 2`},
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
}
