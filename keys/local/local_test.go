package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

// newKeyring creates a key-file keyring in a fresh temp dir and returns its
// admin config.
func newTestKeyring(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{Path: filepath.Join(dir, "keyring"), KeyFile: filepath.Join(dir, "admin.key")}
	if err := GenerateKeyFile(cfg.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := Init(t.Context(), InitOptions{Path: cfg.Path, KeyFile: cfg.KeyFile}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func open(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func tenantConfig(admin Config, tenant string) Config {
	return Config{Path: admin.Path, Tenant: tenant, TenantKeyFile: admin.AccessKeyPath(tenant)}
}

func TestConformance(t *testing.T) {
	cfg := newTestKeyring(t)
	admin := open(t, cfg)
	keystest.Run(t, keystest.Harness{
		Admin:     func(*testing.T) keys.KEKProvider { return admin },
		ForTenant: func(t *testing.T, tenant string) keys.KEKProvider { return open(t, tenantConfig(cfg, tenant)) },
	})
}

// A second admin provider on the same file (another process, in effect)
// sees the first one's changes, and its writes do not undo them.
func TestConformanceTwoAdmins(t *testing.T) {
	cfg := newTestKeyring(t)
	a1, a2 := open(t, cfg), open(t, cfg)
	n := 0
	keystest.Run(t, keystest.Harness{
		Admin: func(*testing.T) keys.KEKProvider {
			n++
			if n%2 == 0 {
				return a2
			}
			return a1
		},
		ForTenant: func(t *testing.T, tenant string) keys.KEKProvider { return open(t, tenantConfig(cfg, tenant)) },
	})
}

func TestPassphraseKeyring(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring")
	opts := InitOptions{Path: path, Passphrase: []byte("correct horse"), KDFTime: 1, KDFMemoryKiB: 64, KDFThreads: 1}
	if err := Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if err := Init(ctx, InitOptions{Path: path, Passphrase: []byte("other")}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second Init: %v, want an error saying the keyring exists", err)
	}
	p := open(t, Config{Path: path, Passphrase: []byte("correct horse")})
	if err := p.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "pass")
	os.WriteFile(pf, []byte("correct horse\nignored second line\n"), 0o600)
	open(t, Config{Path: path, PassphraseFile: pf})

	_, err := Open(ctx, Config{Path: path, Passphrase: []byte("wrong horse")})
	if !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("wrong passphrase: %v, want ErrAuth", err)
	}
	kf := filepath.Join(dir, "k")
	GenerateKeyFile(kf)
	_, err = Open(ctx, Config{Path: path, KeyFile: kf})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("key file on a passphrase keyring: %v, want ErrConfig", err)
	}
}

func TestFileModes(t *testing.T) {
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	if err := p.CreateTenant(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cfg.Path, cfg.KeyFile, cfg.AccessKeyPath("blue")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.Path), ".*tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

// The access key file is removed on shred, and a stale one can no longer
// open anything.
func TestShredRemovesAccessKey(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	p.CreateTenant(ctx, "blue")
	keyCopy, _ := os.ReadFile(cfg.AccessKeyPath("blue"))
	if err := p.Shred(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.AccessKeyPath("blue")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("access key file still there after shred: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "blue.key")
	os.WriteFile(stale, keyCopy, 0o600)
	tp := open(t, Config{Path: cfg.Path, Tenant: "blue", TenantKeyFile: stale})
	if _, _, err := tp.Wrap(ctx, "blue", make([]byte, 32), nil); !errors.Is(err, keys.ErrShredded) {
		t.Fatalf("Wrap with a stale access key after shred: %v, want ErrShredded", err)
	}
	raw, _ := os.ReadFile(cfg.Path)
	if bytes.Contains(raw, []byte("blue")) {
		t.Fatal("the shredded tenant's name is readable in the keyring")
	}
	// The name stays taken: the admin body keeps the tombstone.
	if err := p.CreateTenant(ctx, "blue"); !errors.Is(err, keys.ErrShredded) {
		t.Fatalf("CreateTenant of a shredded name: %v, want ErrShredded", err)
	}
}

// Blue's access key presented as red's does not open red's record: the
// scoping is in the cryptography, not only in check().
func TestAccessKeyIsCryptographic(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	p.CreateTenant(ctx, "blue")
	p.CreateTenant(ctx, "red")
	_, err := Open(ctx, Config{Path: cfg.Path, Tenant: "red", TenantKeyFile: cfg.AccessKeyPath("blue")})
	if !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("red's record opened with blue's access key: %v, want ErrAuth", err)
	}
	data, _ := os.ReadFile(cfg.Path)
	blueKey, _ := readKeyFile(cfg.AccessKeyPath("blue"), "k")
	if _, err := openTenant(data, "red", &blueKey); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("openTenant(red) with blue's key: %v, want ErrAuth", err)
	}
	if _, err := openAdmin(data, &blueKey); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("openAdmin with blue's access key: %v, want ErrAuth", err)
	}
}

// TestBrokenKeyrings pins the error for each kind of damage: format errors
// for structure, ErrAuth for anything that parses but does not authenticate.
func TestBrokenKeyrings(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	p.CreateTenant(ctx, "blue")
	good, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	future := bytes.Clone(good)
	future[9] = 3
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, keys.ErrMalformed},
		{"not a keyring", []byte("hello, world, this is not a keyring at all, not even close......................"), keys.ErrMalformed},
		{"truncated header", good[:40], keys.ErrMalformed},
		{"truncated body", good[:len(good)/2], keys.ErrMalformed},
		{"last byte cut", good[:len(good)-1], keys.ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), keys.ErrMalformed},
		{"unknown version", future, keys.ErrUnknownFormat},
		{"reserved byte", flip(11), keys.ErrMalformed},
		{"salt", flip(30), keys.ErrAuth},
		{"keyring id", flip(45), keys.ErrAuth},
		{"write id", flip(63), keys.ErrAuth},
		{"admin body", flip(headerSize + 20), keys.ErrAuth},
		{"admin tag", flip(headerSize + int(binary.BigEndian.Uint32(good[72:])) - 1), keys.ErrAuth},
		{"slot count", flip(headerSize + int(binary.BigEndian.Uint32(good[72:])) + 3), keys.ErrMalformed},
		{"slot size", flip(headerSize + int(binary.BigEndian.Uint32(good[72:])) + 7), keys.ErrMalformed},
		{"a slot", flip(len(good) - 1), keys.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(cfg.Path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(ctx, cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if tt.want != keys.ErrAuth && errors.Is(err, keys.ErrAuth) {
				t.Fatalf("a format error also reads as ErrAuth: %v", err)
			}
		})
	}
	// Every byte flipped fails for the admin. It fails for the tenant in
	// what the tenant reads: the keyring and write IDs, the index's sizes
	// and its own slot. (Other slots are other tenants' or random.)
	os.WriteFile(cfg.Path, good, 0o600)
	tcfg := tenantConfig(cfg, "blue")
	open(t, tcfg)
	f, _ := parseFile(good)
	access, _ := readKeyFile(tcfg.TenantKeyFile, "k")
	lk := locatorKey(&access, &f.hdr)
	loc := locator(&lk, &f.hdr)
	own, found := f.find(loc)
	if !found {
		t.Fatal("blue's slot not found")
	}
	ownStart := bytes.Index(good, own.loc[:])
	ownEnd := ownStart + locatorSize + len(own.sealed)
	indexStart := headerSize + len(f.admin)
	tenantReads := func(i int) bool {
		return i < 24 || i >= 40 && i < 72 || i >= indexStart && i < indexStart+8 || i >= ownStart && i < ownEnd
	}
	adminKey, _ := readKeyFile(cfg.KeyFile, "k")
	master, err := (&unlockSecret{keyFile: adminKey}).master(&f.hdr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		if _, err := openAdmin(flip(i), &master); err == nil {
			t.Fatalf("admin opened a keyring with byte %d flipped", i)
		}
		if !tenantReads(i) {
			continue
		}
		if _, err := openTenant(flip(i), "blue", &access); err == nil {
			t.Fatalf("tenant opened a keyring with byte %d flipped", i)
		}
	}
	if _, err := openTenant(good, "blue", &access); err != nil {
		t.Fatalf("tenant on the good keyring: %v", err)
	}
}

func TestMissingKeyring(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "k")
	GenerateKeyFile(kf)
	_, err := Open(t.Context(), Config{Path: filepath.Join(dir, "nope"), KeyFile: kf})
	if err == nil || !strings.Contains(err.Error(), "keys init") {
		t.Fatalf("missing keyring: %v, want a hint to run keys init", err)
	}
	if err := GenerateKeyFile(kf); err == nil {
		t.Fatal("GenerateKeyFile replaced an existing key file")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no path", Config{KeyFile: "k"}},
		{"no unlock", Config{Path: "p"}},
		{"two unlocks", Config{Path: "p", KeyFile: "k", PassphraseFile: "f"}},
		{"tenant key without tenant", Config{Path: "p", TenantKeyFile: "t"}},
		{"tenant without key", Config{Path: "p", KeyFile: "k", Tenant: "blue"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate: %v, want ErrConfig", err)
			}
		})
	}
}

// TestConcurrentProcesses runs several processes that each create tenants
// in the same keyring at once; with the lock and the re-read under it, none
// loses another's tenants.
func TestConcurrentProcesses(t *testing.T) {
	cfg := newTestKeyring(t)
	const procs, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for i := range procs {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperCreateTenants$")
			cmd.Env = append(os.Environ(), "TENCRYPT_LOCAL_HELPER=1", "TENCRYPT_LOCAL_PATH="+cfg.Path,
				"TENCRYPT_LOCAL_KEY_FILE="+cfg.KeyFile, "TENCRYPT_LOCAL_PREFIX=p"+strconv.Itoa(i), "TENCRYPT_LOCAL_N="+strconv.Itoa(each))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	p := open(t, cfg)
	all, err := p.Tenants(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != procs*each {
		t.Fatalf("after %d processes created %d tenants each, the keyring has %d", procs, each, len(all))
	}
	for _, ti := range all {
		if ti.Current != 2 {
			t.Fatalf("tenant %s at version %d, want 2 (created and rotated once)", ti.Tenant, ti.Current)
		}
	}
}

// TestHelperCreateTenants is the child of TestConcurrentProcesses.
func TestHelperCreateTenants(t *testing.T) {
	if os.Getenv("TENCRYPT_LOCAL_HELPER") != "1" {
		return // only meaningful as a child process
	}
	ctx := context.Background()
	p, err := Open(ctx, Config{Path: os.Getenv("TENCRYPT_LOCAL_PATH"), KeyFile: os.Getenv("TENCRYPT_LOCAL_KEY_FILE")})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("TENCRYPT_LOCAL_N"))
	for i := range n {
		name := fmt.Sprintf("%s-t%d", os.Getenv("TENCRYPT_LOCAL_PREFIX"), i)
		if err := p.CreateTenant(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Rotate(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// Reissuing an access key revokes the old one and keeps the KEKs.
func TestReissueAccessKey(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	if err := p.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	oldKey := filepath.Join(t.TempDir(), "old.key")
	b, _ := os.ReadFile(cfg.AccessKeyPath("blue"))
	os.WriteFile(oldKey, b, 0o600)
	old := open(t, Config{Path: cfg.Path, Tenant: "blue", TenantKeyFile: oldKey})
	pt := []byte("0123456789abcdef0123456789abcdef")
	v, ct, err := old.Wrap(ctx, "blue", pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	path, err := p.ReissueAccessKey(ctx, "blue")
	if err != nil || path != cfg.AccessKeyPath("blue") {
		t.Fatalf("ReissueAccessKey: %q, %v", path, err)
	}
	if _, _, err := old.Wrap(ctx, "blue", pt, nil); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("old access key after reissue: %v, want ErrAuth", err)
	}
	nw := open(t, tenantConfig(cfg, "blue"))
	got, err := nw.Unwrap(ctx, "blue", v, ct, nil)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("new access key on a ciphertext from before: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new access key mode %v", fi.Mode().Perm())
	}
	if _, err := nw.ReissueAccessKey(ctx, "blue"); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("tenant reissuing its own key: %v, want ErrPermissionDenied", err)
	}
}

// TestIndexRevealsNothing is finding 5 of issue 16: what a holder of one
// access key (or of the file alone) reads of the others. Two keyrings with
// different tenants, names, states and version counts (within one bucket
// of versions and of slots) are the same size and name no tenant; writes
// leave no count in the file; a tenant's open sees only itself.
func TestIndexRevealsNothing(t *testing.T) {
	ctx := t.Context()
	small := newTestKeyring(t)
	ps := open(t, small)
	if err := ps.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	big := newTestKeyring(t)
	pb := open(t, big)
	long := "a-much-longer-tenant-name-0123456789"
	for _, n := range []string{long, "green", "red"} {
		if err := pb.CreateTenant(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for range versionBucket - 1 {
		if _, err := pb.Rotate(ctx, long); err != nil {
			t.Fatal(err)
		}
	}
	pb.Rotate(ctx, "green")
	if err := pb.Shred(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(small.Path)
	b, _ := os.ReadFile(big.Path)
	if len(a) != len(b) {
		t.Fatalf("1 tenant with 1 version: %d bytes; 3 tenants (8 versions, 2, shredded): %d bytes", len(a), len(b))
	}
	for _, n := range []string{"blue", long, "green", "red"} {
		if bytes.Contains(a, []byte(n)) || bytes.Contains(b, []byte(n)) {
			t.Fatalf("tenant name %q readable in a keyring", n)
		}
	}
	for _, data := range [][]byte{a, b} {
		f, err := parseFile(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.slots) != minSlots {
			t.Fatalf("%d slots, want %d", len(f.slots), minSlots)
		}
	}
	// A write changes no size and leaves no counter: the generation is
	// sealed in the admin body, and the write ID is random.
	fa, _ := parseFile(a)
	ps.Rotate(ctx, "blue")
	a2, _ := os.ReadFile(small.Path)
	fa2, _ := parseFile(a2)
	if len(a2) != len(a) || fa.hdr.writeID == fa2.hdr.writeID || !bytes.Equal(a[:56], a2[:56]) {
		t.Fatal("a rotation changed the size or the fixed header, or kept the write ID")
	}
	// Locators change with every write, so a slot cannot be followed from
	// one write to the next.
	for _, s := range fa.slots {
		if _, ok := fa2.find(s.loc); ok {
			t.Fatalf("locator %x survived a write", s.loc)
		}
	}
	// Green's access key opens green's slot and nothing else.
	gk, _ := readKeyFile(big.AccessKeyPath("green"), "k")
	st, err := openTenant(b, "green", &gk)
	if err != nil || len(st.tenants) != 1 || st.tenants["green"] == nil || st.gen != 0 {
		t.Fatalf("green's view: %v, %v", st, err)
	}
}

// A format 2 keyring keeps its size across most writes, and a file system
// may reuse an inode and, with a coarse clock, give it the same mtime: the
// write ID in the header still tells a tenant provider the file changed.
func TestTenantSeesRewriteWithSameStat(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	a := open(t, cfg)
	if err := a.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(cfg.Path)
	if _, err := a.Rotate(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(cfg.Path)
	if len(b1) != len(b2) {
		t.Fatalf("a rotation changed the size: %d, %d", len(b1), len(b2))
	}
	fi, _ := os.Stat(cfg.Path)
	same := func(data []byte) {
		// In place: same inode, same size, and the mtime put back.
		if err := os.WriteFile(cfg.Path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(cfg.Path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	same(b1)
	tp := open(t, tenantConfig(cfg, "blue"))
	if ti, err := tp.Tenant(ctx, "blue"); err != nil || ti.Current != 1 {
		t.Fatalf("before: %+v, %v", ti, err)
	}
	same(b2)
	if ti, err := tp.Tenant(ctx, "blue"); err != nil || ti.Current != 2 {
		t.Fatalf("after the file changed under the same inode, size and mtime: %+v, %v; want version 2", ti, err)
	}
}

// An open admin provider refuses an older copy of the keyring put back in
// place, which would bring retired versions back.
func TestAdminRefusesRollback(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	a := open(t, cfg)
	if err := a.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(cfg.Path)
	a.Rotate(ctx, "blue")
	if err := a.Retire(ctx, "blue", 2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path+".old", old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cfg.Path+".old", cfg.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tenant(ctx, "blue"); !errors.Is(err, keys.ErrAuth) || !strings.Contains(err.Error(), "older copy") {
		t.Fatalf("open admin provider after a rollback: %v, want ErrAuth naming an older copy", err)
	}
	if _, err := a.Rotate(ctx, "blue"); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("write after a rollback: %v, want ErrAuth", err)
	}
	// A fresh provider cannot tell, as docs/KEYRING.md says.
	if ti, err := open(t, cfg).Tenant(ctx, "blue"); err != nil || ti.MinVersion != 1 {
		t.Fatalf("fresh admin provider on the old copy: %+v, %v", ti, err)
	}
}

// A reissue the keyring refuses (an unknown tenant) leaves the access key
// directory as it was: no new key file and no temporary file.
func TestReissueRefusedWritesNothing(t *testing.T) {
	ctx := t.Context()
	cfg := newTestKeyring(t)
	p := open(t, cfg)
	if err := p.CreateTenant(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfg.AccessKeyPath("blue"))
	list := func() []string {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	before := list()
	if _, err := p.ReissueAccessKey(ctx, "red"); !errors.Is(err, keys.ErrUnknownTenant) {
		t.Fatalf("reissue of an unknown tenant: %v, want ErrUnknownTenant", err)
	}
	if after := list(); !slices.Equal(before, after) {
		t.Fatalf("access key directory %q, was %q", after, before)
	}
}
