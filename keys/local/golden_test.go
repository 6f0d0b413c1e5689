package local

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

var update = flag.Bool("update", false, "rewrite testdata/v2 (the golden format 2 keyring)")

// The golden keyrings hold tenants blue (versions 1 and 2), red (version
// 1) and green (shredded). wrapped.txt has one line per tenant and
// ciphertext: tenant, version, hex ciphertext of goldenPlain under
// goldenAAD.
const (
	goldenPlain = "tencrypt v1 keyring golden DEK!!"
	goldenAAD   = "golden aad"
)

// copyDir copies a testdata keyring into a fresh directory, so tests may
// write to it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func goldenConfig(dir string) Config {
	return Config{Path: filepath.Join(dir, "keyring"), KeyFile: filepath.Join(dir, "admin.key"), AccessKeyDir: filepath.Join(dir, "access")}
}

// writeGoldenV2 makes testdata/v2 with the code as it is.
func writeGoldenV2(t *testing.T) {
	ctx := t.Context()
	dir := "testdata/v2"
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	cfg := goldenConfig(dir)
	os.WriteFile(cfg.KeyFile, []byte("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\n"), 0o600)
	if err := Init(ctx, InitOptions{Path: cfg.Path, KeyFile: cfg.KeyFile}); err != nil {
		t.Fatal(err)
	}
	p := open(t, cfg)
	var lines strings.Builder
	for _, n := range []string{"blue", "green", "red"} {
		if err := p.CreateTenant(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Rotate(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"blue", "red"} {
		v, ct, err := p.Wrap(ctx, n, []byte(goldenPlain), []byte(goldenAAD))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&lines, "%s %d %x\n", n, v, ct)
	}
	green, _ := os.ReadFile(cfg.AccessKeyPath("green"))
	if err := p.Shred(ctx, "green"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "green-shredded.key"), green, 0o600)
	os.WriteFile(filepath.Join(dir, "wrapped.txt"), []byte(lines.String()), 0o644)
	os.Remove(cfg.Path + ".lock")
}

// checkGolden asserts what every golden keyring holds, once in format 2:
// the tenants, their versions, the pinned ciphertexts opening for admin and
// tenant alike, and no tenant name in the file.
func checkGolden(t *testing.T, dir string) {
	t.Helper()
	ctx := t.Context()
	cfg := goldenConfig(dir)
	a := open(t, cfg)
	ts, err := a.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, ti := range ts {
		got = append(got, fmt.Sprintf("%s %d-%d %v", ti.Tenant, ti.MinVersion, ti.Current, ti.Shredded))
	}
	if want := "blue 1-2 false, green 0-0 true, red 1-1 false"; strings.Join(got, ", ") != want {
		t.Fatalf("tenants %q, want %q", strings.Join(got, ", "), want)
	}
	wrapped, err := os.ReadFile(filepath.Join(dir, "wrapped.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(wrapped)) {
		f := strings.Fields(line)
		v, _ := strconv.Atoi(f[1])
		ct, _ := hex.DecodeString(f[2])
		tp := open(t, tenantConfig(cfg, f[0]))
		for _, p := range []keys.KEKProvider{a, tp} {
			pt, err := p.Unwrap(ctx, f[0], uint32(v), ct, []byte(goldenAAD))
			if err != nil || string(pt) != goldenPlain {
				t.Fatalf("%s v%d: unwrap: %q, %v", f[0], v, pt, err)
			}
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d pinned ciphertexts, want 2", n)
	}
	data, _ := os.ReadFile(cfg.Path)
	for _, name := range []string{"blue", "green", "red"} {
		if bytes.Contains(data, []byte(name)) {
			t.Fatalf("tenant name %q readable in the keyring", name)
		}
	}
	f, err := parseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.hdr.version != 2 || len(f.slots) != minSlots || f.slotPlain != minSlotPlain || len(data) != headerSize+4096+28+8+8*(16+28+309) {
		t.Fatalf("format 2 keyring: version %d, %d slots of %d, %d bytes", f.hdr.version, len(f.slots), f.slotPlain, len(data))
	}
}

// TestGoldenV2 pins format 2: a keyring written by this code when format 2
// was defined must open, with the same tenants and keys, in every later
// version. With -update it rewrites the golden keyring first.
func TestGoldenV2(t *testing.T) {
	if *update {
		writeGoldenV2(t)
	}
	dir := copyDir(t, "testdata/v2")
	checkGolden(t, dir)
	stale := Config{Path: filepath.Join(dir, "keyring"), Tenant: "green", TenantKeyFile: filepath.Join(dir, "green-shredded.key")}
	gp := open(t, stale)
	if _, _, err := gp.Wrap(t.Context(), "green", make([]byte, 32), nil); !errors.Is(err, keys.ErrShredded) {
		t.Fatalf("shredded green's old access key: %v, want ErrShredded", err)
	}
}

// TestMigrateV1 migrates the golden format 1 keyring (written by tencrypt
// before format 2) and checks nothing was lost.
func TestMigrateV1(t *testing.T) {
	ctx := t.Context()
	dir := copyDir(t, "testdata/v1")
	cfg := goldenConfig(dir)
	v1, _ := os.ReadFile(cfg.Path)
	for _, c := range []Config{cfg, tenantConfig(cfg, "blue")} {
		_, err := Open(ctx, c)
		if !errors.Is(err, keys.ErrUnknownFormat) || !strings.Contains(err.Error(), "keys migrate") {
			t.Fatalf("Open of a format 1 keyring: %v, want ErrUnknownFormat naming keys migrate", err)
		}
	}
	if _, err := Migrate(ctx, tenantConfig(cfg, "blue")); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("Migrate with a tenant access key: %v, want ErrPermissionDenied", err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	GenerateKeyFile(wrong)
	if _, err := Migrate(ctx, Config{Path: cfg.Path, KeyFile: wrong}); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("Migrate with a wrong admin key: %v, want ErrAuth", err)
	}
	if now, _ := os.ReadFile(cfg.Path); !bytes.Equal(now, v1) {
		t.Fatal("a failed migration changed the keyring")
	}
	from, err := Migrate(ctx, cfg)
	if err != nil || from != 1 {
		t.Fatalf("Migrate: %d, %v", from, err)
	}
	checkGolden(t, dir)
	migrated, _ := os.ReadFile(cfg.Path)
	if from, err := Migrate(ctx, cfg); err != nil || from != 2 {
		t.Fatalf("second Migrate: %d, %v", from, err)
	}
	if now, _ := os.ReadFile(cfg.Path); !bytes.Equal(now, migrated) {
		t.Fatal("Migrate of a format 2 keyring changed it")
	}
}
