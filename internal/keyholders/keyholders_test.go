package keyholders_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/keyholders"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/keys/vault/vaulttest"
	"github.com/tencrypt/tencrypt/lab"
	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/names"
	"github.com/tencrypt/tencrypt/transit/registry"
)

const tenant = "blue"

// world is a local keyring (unlocked by a key file) with tenant blue at KEK
// version 1, and a directory for the containers.
type world struct {
	t     *testing.T
	dir   string
	p     keys.KEKProvider
	audit *keystest.AuditLog
	env   *keys.Envelope
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	cfg := local.Config{Path: filepath.Join(dir, "keyring"), KeyFile: filepath.Join(dir, "admin.key")}
	if err := local.GenerateKeyFile(cfg.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := local.Init(t.Context(), local.InitOptions{Path: cfg.Path, KeyFile: cfg.KeyFile}); err != nil {
		t.Fatal(err)
	}
	p, err := local.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newWorldWith(t, p)
}

// newWorldWith is newWorld over another backend's provider, which it
// closes in Cleanup.
func newWorldWith(t *testing.T, p keys.KEKProvider) *world {
	t.Helper()
	t.Cleanup(func() { p.Close() })
	if err := p.CreateTenant(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: filepath.Join(t.TempDir(), "data"), p: p, audit: &keystest.AuditLog{}}
	w.env = keys.NewEnvelope(p, w.audit, time.Now)
	if err := os.Mkdir(w.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) scan(paths ...string) *keys.ScanResult {
	w.t.Helper()
	res, err := keys.Scan(w.t.Context(), paths, keyholders.All(keyholders.Options{}))
	if err != nil {
		w.t.Fatalf("scan: %v", err)
	}
	return res
}

// rewrap runs the rewrap of every holder over paths and returns what it
// reported.
func (w *world) rewrap(paths ...string) ([]keys.Moved, error) {
	var out []keys.Moved
	m := keys.NewMover(w.env, "test")
	err := keys.RewrapPaths(w.t.Context(), paths, keyholders.All(keyholders.Options{}), m, func(mv keys.Moved) { out = append(out, mv) })
	return out, err
}

// rotateRewrapRetire is the documented workflow: rotate, check that the
// scan sees the old version in use (retire would refuse), rewrap, check
// again (nothing below 2 is left) and retire version 1 for good.
func (w *world) rotateRewrapRetire(kind string, wantKeys int) {
	t := w.t
	t.Helper()
	ctx := t.Context()
	if v, err := w.p.Rotate(ctx, tenant); err != nil || v != 2 {
		t.Fatalf("rotate: %d, %v", v, err)
	}
	stale := w.scan(w.dir).Below(w.p.Name(), tenant, 2)
	if len(stale) != wantKeys {
		t.Fatalf("before rewrap: %d keys below version 2, want %d: %+v", len(stale), wantKeys, stale)
	}
	for _, k := range stale {
		if k.Kind != kind || k.KEKVersion != 1 {
			t.Fatalf("before rewrap: %+v, want kind %s version 1", k, kind)
		}
	}
	moved, err := w.rewrap(w.dir)
	if err != nil {
		t.Fatalf("rewrap: %v (%+v)", err, moved)
	}
	n := 0
	for _, mv := range moved {
		if mv.Kind == kind && mv.Status == keys.StatusRewrapped && mv.From == 1 && mv.To == 2 {
			n++
		}
	}
	if n != wantKeys {
		t.Fatalf("rewrap moved %d %s keys, want %d: %+v", n, kind, wantKeys, moved)
	}
	if stale := w.scan(w.dir).Below(w.p.Name(), tenant, 2); len(stale) != 0 {
		t.Fatalf("after rewrap, still below version 2: %+v", stale)
	}
	// A second rewrap finds everything current and writes nothing.
	again, err := w.rewrap(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range again {
		if mv.Status != keys.StatusCurrent {
			t.Fatalf("second rewrap: %+v", mv)
		}
	}
	if err := w.p.Retire(ctx, tenant, 2); err != nil {
		t.Fatalf("retire: %v", err)
	}
}

func TestTencFile(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	plain := bytes.Repeat([]byte("payroll "), 1000)
	for _, name := range []string{"a.tenc", "sub/b.tenc"} {
		path := filepath.Join(w.dir, name)
		os.MkdirAll(filepath.Dir(path), 0o700)
		var buf bytes.Buffer
		dek, wk, err := w.env.NewDEK(ctx, tenant, format.Purpose)
		if err != nil {
			t.Fatal(err)
		}
		fw, err := format.NewWriter(&buf, &dek, wk)
		dek.Zero()
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(plain)
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w.rotateRewrapRetire("file", 2)
	for _, name := range []string{"a.tenc", "sub/b.tenc"} {
		f, err := os.Open(filepath.Join(w.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := format.NewReader(f, func(wk keys.WrappedKey) (keys.DEK, error) {
			return w.env.Unwrap(ctx, wk, format.Purpose, "test")
		})
		if err != nil {
			t.Fatalf("%s after retire: %v", name, err)
		}
		got, err := io.ReadAll(r)
		f.Close()
		if err != nil || !bytes.Equal(got, plain) || r.Header().Key.KEKVersion != 2 {
			t.Fatalf("%s after retire: %v", name, err)
		}
	}
}

func TestBlob(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	dek, wk, err := w.env.NewDEK(ctx, tenant, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Zero()
	b, _ := wk.MarshalBinary()
	path := filepath.Join(w.dir, "app.wk")
	os.WriteFile(path, b, 0o640)
	w.rotateRewrapRetire("blob", 1)
	nwk, err := keys.ReadBlobFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.env.Unwrap(ctx, nwk, "app", "test")
	if err != nil || !got.Equal(&dek) {
		t.Fatalf("blob after retire: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("rewrap changed the mode to %v", fi.Mode().Perm())
	}
}

// volume makes a volume in w.dir/vol and returns an encrypted name of its
// root, to decrypt after the rotation.
func (w *world) volume() (string, string) {
	t := w.t
	cdir := filepath.Join(w.dir, "vol")
	v, err := names.InitVolume(t.Context(), cdir, w.env, tenant, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	enc := encryptName(t, w.env, cdir, v, "payroll.xlsx")
	return cdir, enc
}

func encryptName(t *testing.T, env *keys.Envelope, cdir string, v *names.Volume, name string) string {
	t.Helper()
	tr, err := v.Transform(t.Context(), env, "test")
	if err != nil {
		t.Fatal(err)
	}
	iv, err := tr.ReadRootID(cdir)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tr.Encrypt(name, iv)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// decryptName loads the volume afresh and decrypts enc in its root.
func decryptName(t *testing.T, env *keys.Envelope, cdir, enc string) (string, error) {
	t.Helper()
	v, err := names.LoadVolume(cdir)
	if err != nil {
		return "", err
	}
	tr, err := v.Transform(t.Context(), env, "test")
	if err != nil {
		return "", err
	}
	iv, err := tr.ReadRootID(cdir)
	if err != nil {
		return "", err
	}
	return tr.Decrypt(enc, iv)
}

func TestVolumeConfig(t *testing.T) {
	w := newWorld(t)
	cdir, enc := w.volume()
	// A volume's symlink: its stored target is encrypted (base64url), so it
	// cannot be followed, and the check must not fail on it.
	if err := os.Symlink("c29tZS1zZWFsZWQtdGFyZ2V0", filepath.Join(cdir, "bGluaw")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(cdir, names.VolumeFile))
	w.rotateRewrapRetire("volume", 1)
	name, err := decryptName(t, w.env, cdir, enc)
	if err != nil || name != "payroll.xlsx" {
		t.Fatalf("a name after rewrap and retire: %q, %v", name, err)
	}
	after, _ := os.ReadFile(filepath.Join(cdir, names.VolumeFile))
	var b, a map[string]any
	json.Unmarshal(before, &b)
	json.Unmarshal(after, &a)
	for k := range b {
		if k != "name_key" && a[k] != b[k] {
			t.Fatalf("rewrap changed field %s: %v -> %v", k, b[k], a[k])
		}
	}
	if len(a) != len(b) || a["name_key"] == b["name_key"] {
		t.Fatalf("rewrap: fields %v -> %v", b, a)
	}
	if fi, _ := os.Stat(filepath.Join(cdir, names.VolumeFile)); fi.Mode().Perm() != 0o400 {
		t.Fatalf("rewrap changed the configuration's mode to %v", fi.Mode().Perm())
	}
}

// TestVolumeConfigVault is TestVolumeConfig against a real Vault, whose
// rewrap happens inside Vault (transit rewrap).
func TestVolumeConfigVault(t *testing.T) {
	s := vaulttest.Start(t)
	p, err := vault.New(vault.Config{Addr: s.Addr, Token: s.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, p)
	cdir, enc := w.volume()
	w.rotateRewrapRetire("volume", 1)
	if name, err := decryptName(t, w.env, cdir, enc); err != nil || name != "payroll.xlsx" {
		t.Fatalf("a name after rewrap and retire (vault): %q, %v", name, err)
	}
}

// TestVolumeConfigNotRewrapped is the data loss of issue 16: the tencrypt
// files of a volume were rewrapped, its configuration was not. The check
// must see the configuration's old version (so retire refuses).
func TestVolumeConfigNotRewrapped(t *testing.T) {
	w := newWorld(t)
	cdir, _ := w.volume()
	if _, err := w.p.Rotate(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	// Only the tencrypt files' holder, as 'file rewrap -r' does: it sees
	// the configuration as a file of a kind it cannot rewrap.
	m := keys.NewMover(w.env, "test")
	if err := keys.RewrapPaths(t.Context(), []string{cdir}, []keys.Holder{format.Holder{}}, m, func(keys.Moved) {}); !errors.Is(err, keys.ErrUnknownContainer) {
		t.Fatalf("rewrap with the file holder only: %v, want ErrUnknownContainer", err)
	}
	stale := w.scan(w.dir).Below(w.p.Name(), tenant, 2)
	if len(stale) != 1 || stale[0].Kind != "volume" || stale[0].File != filepath.Join(cdir, names.VolumeFile) || stale[0].Purpose != names.Purpose {
		t.Fatalf("the volume configuration's old name key was not found: %+v", stale)
	}
}

func writeRegistry(t *testing.T, path string, tenants map[string][]byte) []byte {
	t.Helper()
	type tenantJSON struct {
		PSK []byte `json:"psk"`
	}
	ts := map[string]tenantJSON{}
	for k, v := range tenants {
		ts[k] = tenantJSON{PSK: v}
	}
	data, err := json.MarshalIndent(map[string]any{
		"keys":    map[string]registry.PodKey{"blue-1a": {Pod: "blue-1a", PublicKey: "cHVibGlj", Node: "n1"}},
		"tenants": ts,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func registryPSKs(t *testing.T, path string) []keys.WrappedKey {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wks, err := lab.RegistryHolder{}.Keys(f)
	if err != nil {
		t.Fatal(err)
	}
	return wks
}

func TestTransitRegistryPSK(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	// The registry as 'tencrypt transit enroll' leaves it, through the lab.
	reg := lab.New(w.dir, nil).Registry("demo")
	psk, wk, err := w.env.NewDEK(ctx, tenant, registry.PSKPurpose)
	if err != nil {
		t.Fatal(err)
	}
	defer psk.Zero()
	blob, _ := wk.MarshalBinary()
	if err := reg.SetTenantKey(ctx, tenant, blob); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "demo.transit.json")
	w.rotateRewrapRetire("transit-registry", 1)
	wks := registryPSKs(t, path)
	if len(wks) != 1 || wks[0].KEKVersion != 2 {
		t.Fatalf("registry after rewrap: %+v", wks)
	}
	got, err := w.env.Unwrap(ctx, wks[0], registry.PSKPurpose, "test")
	if err != nil || !got.Equal(&psk) {
		t.Fatalf("the rewrapped PSK is not the tenant's PSK: %v", err)
	}
}

// TestTransitRegistryAllOrNothing: one tenant's PSK cannot be rewrapped
// (tampered), so no tenant's is, and the file is unchanged.
func TestTransitRegistryAllOrNothing(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	if err := w.p.CreateTenant(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	_, good, _ := w.env.NewDEK(ctx, tenant, registry.PSKPurpose)
	_, bad, _ := w.env.NewDEK(ctx, "red", registry.PSKPurpose)
	bad.Ciphertext[len(bad.Ciphertext)-1] ^= 1
	gb, _ := good.MarshalBinary()
	bb, _ := bad.MarshalBinary()
	path := filepath.Join(w.dir, "demo.transit.json")
	before := writeRegistry(t, path, map[string][]byte{tenant: gb, "red": bb})
	w.p.Rotate(ctx, tenant)
	w.p.Rotate(ctx, "red")
	_, err := w.rewrap(path)
	if !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("rewrap of a registry with a tampered PSK: %v, want ErrAuth", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatal("a failed rewrap changed the registry")
	}
	// The check still sees both, so retire would refuse.
	if stale := w.scan(path).Below(w.p.Name(), tenant, 2); len(stale) != 1 {
		t.Fatalf("check after the failed rewrap: %+v", stale)
	}
}

func TestRewrapRefusesShreddedTenant(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	_, wk, _ := w.env.NewDEK(ctx, tenant, format.Purpose)
	b, _ := wk.MarshalBinary()
	path := filepath.Join(w.dir, "x.wk")
	os.WriteFile(path, b, 0o600)
	if err := w.p.Shred(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := w.rewrap(path); !errors.Is(err, keys.ErrShredded) {
		t.Fatalf("rewrap for a shredded tenant: %v, want ErrShredded", err)
	}
}

// TestRewrapRefusesOtherBackend: a key made by another backend is not
// compared with this backend's versions nor moved.
func TestRewrapRefusesOtherBackend(t *testing.T) {
	w := newWorld(t)
	wk := keys.WrappedKey{Provider: "vault", Tenant: tenant, Purpose: "app", KEKVersion: 9, Ciphertext: make([]byte, 60)}
	b, _ := wk.MarshalBinary()
	path := filepath.Join(w.dir, "vault.wk")
	os.WriteFile(path, b, 0o600)
	if _, err := w.rewrap(path); !errors.Is(err, keys.ErrMismatch) || !strings.Contains(err.Error(), "--backend vault") {
		t.Fatalf("rewrap of another backend's key: %v, want ErrMismatch naming the backend", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
		t.Fatal("the file changed")
	}
}

// TestScanFailsClosed: every file the scan cannot account for stops it.
func TestScanFailsClosed(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	_, wk, _ := w.env.NewDEK(ctx, tenant, "app")
	blob, _ := wk.MarshalBinary()
	tests := []struct {
		name    string
		file    string
		data    []byte
		link    string // make file a symbolic link to this instead
		wantErr string
	}{
		{name: "volume configuration not JSON", file: names.VolumeFile, data: []byte("{not json"), wantErr: "volume"},
		{name: "volume configuration copy without a name key", file: "tencrypt.volume.bak", data: []byte(`{"format": "tencrypt-volume", "version": 1}`), wantErr: "volume"},
		{name: "truncated tencrypt file", file: "x.tenc", data: []byte("TENC\x01\x01"), wantErr: "file"},
		{name: "blob with trailing bytes", file: "x.wk", data: append(bytes.Clone(blob), 0), wantErr: "blob"},
		{name: "registry not JSON", file: "demo.transit.json", data: []byte("[]"), wantErr: "transit-registry"},
		{name: "registry PSK of another tenant", file: "demo.transit.json", data: []byte(`{"tenants": {"red": {"psk": "` + base64.StdEncoding.EncodeToString(blob) + `"}}}`), wantErr: "transit-registry"},
		{name: "embedded base64 magic that does not parse", file: "app.yaml", data: []byte("key: VENXSwEAAAAA\n"), wantErr: "does not parse"},
		{name: "embedded raw magic that does not parse", file: "app.bin", data: []byte("xxTCWK\x01\x05blue"), wantErr: "does not parse"},
		{name: "link to a directory", file: "dirlink", link: "/", wantErr: "name its target"},
		{name: "dangling link", file: "dangling", link: "/nonexistent-tencrypt-target", wantErr: "symbolic link"},
		{name: "dangling link outside a cipher directory", file: "dangling", link: "c29tZS1zZWFsZWQtdGFyZ2V0", wantErr: "symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			if tt.link != "" {
				os.Symlink(tt.link, path)
			} else {
				os.WriteFile(path, tt.data, 0o600)
			}
			_, err := keys.Scan(ctx, []string{dir}, keyholders.All(keyholders.Options{}))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("scan: %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestScanEmbedded: a wrapped key inside a file no holder knows is found in
// each encoding, reported as unknown, and no rewrap claims to move it.
func TestScanEmbedded(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	_, wk, _ := w.env.NewDEK(ctx, tenant, "app")
	blob, _ := wk.MarshalBinary()
	encs := map[string][]byte{
		"raw.bin":    append([]byte("header:"), append(blob, "trailer"...)...),
		"b64.json":   []byte(`{"wrapped": "` + base64.StdEncoding.EncodeToString(blob) + `"}`),
		"b64url.yml": []byte("k: " + base64.RawURLEncoding.EncodeToString(blob) + "\n"),
		"hex.txt":    []byte("KEY=" + strings.ToUpper(hexString(blob)) + "\n"),
	}
	for name, data := range encs {
		os.WriteFile(filepath.Join(w.dir, name), data, 0o600)
	}
	os.WriteFile(filepath.Join(w.dir, "plain.txt"), []byte("nothing here, not even TCWK"), 0o600)
	res := w.scan(w.dir)
	if res.Files != 5 || res.Kinds[keys.KindUnknown] != 4 || res.Kinds["other"] != 1 {
		t.Fatalf("scan: %+v", res)
	}
	for _, k := range res.Keys {
		if k.Kind != keys.KindUnknown || k.Tenant != tenant || k.Purpose != "app" || k.KEKVersion != 1 {
			t.Fatalf("embedded key: %+v", k)
		}
	}
	if len(res.Keys) != 4 {
		t.Fatalf("found %d embedded keys, want 4", len(res.Keys))
	}
	if _, err := w.rewrap(filepath.Join(w.dir, "b64.json")); !errors.Is(err, keys.ErrUnknownContainer) {
		t.Fatalf("rewrap of an unknown container: %v", err)
	}
	if _, err := w.rewrap(filepath.Join(w.dir, "plain.txt")); !errors.Is(err, keys.ErrNotHolder) {
		t.Fatalf("rewrap of a file without keys: %v", err)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestRewrapFollowsLinks: a link to a blob is rewrapped through its
// target, which is rewritten once; the link stays a link.
func TestRewrapFollowsLinks(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	_, wk, _ := w.env.NewDEK(ctx, tenant, "app")
	blob, _ := wk.MarshalBinary()
	target := filepath.Join(t.TempDir(), "real.wk")
	os.WriteFile(target, blob, 0o600)
	link := filepath.Join(w.dir, "link.wk")
	os.Symlink(target, link)
	os.Symlink(target, filepath.Join(w.dir, "link2.wk"))
	if err := os.Link(target, filepath.Join(w.dir, "hardlink.wk")); err != nil {
		t.Fatal(err)
	}
	w.p.Rotate(ctx, tenant)
	if stale := w.scan(w.dir).Below(w.p.Name(), tenant, 2); len(stale) != 3 {
		t.Fatalf("keys behind links not found: %+v", stale)
	}
	// The hard link is a file of its own for the walk: replaced by its
	// rewrapped copy (the link between them is broken, as by any atomic
	// replacement); the target is rewritten once for its two links.
	moved, err := w.rewrap(w.dir)
	if err != nil || len(moved) != 2 || moved[0].Status != keys.StatusRewrapped || moved[1].Status != keys.StatusRewrapped {
		t.Fatalf("rewrap through links: %+v, %v", moved, err)
	}
	if stale := w.scan(w.dir).Below(w.p.Name(), tenant, 2); len(stale) != 0 {
		t.Fatalf("after rewrap through links: %+v", stale)
	}
	// A link to a directory is followed when it is named itself.
	dirLink := filepath.Join(t.TempDir(), "data-link")
	os.Symlink(w.dir, dirLink)
	if res := w.scan(dirLink); len(res.Keys) != 3 || res.Keys[0].KEKVersion != 2 {
		t.Fatalf("scan of a named link to a directory: %+v", res)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("rewrap replaced the link by a file")
	}
	if nwk, err := keys.ReadBlobFile(target); err != nil || nwk.KEKVersion != 2 {
		t.Fatalf("target after rewrap: %+v, %v", nwk, err)
	}
}
