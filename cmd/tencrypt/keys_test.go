package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/backend"
	"github.com/tencrypt/tencrypt/keys/local"
	volnames "github.com/tencrypt/tencrypt/rest/names"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// tencryptBinary builds the tencrypt binary once per test run.
func tencryptBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		buildDir, buildErr = os.MkdirTemp("", "tencrypt-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "tencrypt")
		out, err := exec.Command(goBin, "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("cannot build the tencrypt binary: %v", buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// keysEnv is a local keyring in a temp dir, driven through the binary.
type keysEnv struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func newKeysEnv(t *testing.T) *keysEnv {
	dir := t.TempDir()
	e := &keysEnv{t: t, bin: tencryptBinary(t), dir: dir}
	e.env = append(os.Environ(),
		"TENCRYPT_LOCAL_PATH="+filepath.Join(dir, "keyring"),
		"TENCRYPT_LOCAL_KEY_FILE="+filepath.Join(dir, "admin.key"),
		"TENCRYPT_AUDIT_LOG="+filepath.Join(dir, "audit.jsonl"),
		"TENCRYPT_CONFIG=")
	return e
}

// run runs the binary with stdin not a terminal and returns stdout, stderr
// and the exit code.
func (e *keysEnv) run(args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.CommandContext(e.t.Context(), e.bin, args...)
	cmd.Env = e.env
	cmd.Dir = e.dir
	cmd.Stdin = strings.NewReader("")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		e.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// started is the binary running in the background (start).
type started struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	// exited receives cmd.Wait's result once.
	exited chan error
}

// start runs the binary in the background with e's environment; the test's
// cleanup kills it, if still running, and waits for it to end.
func (e *keysEnv) start(args ...string) *started {
	e.t.Helper()
	s := &started{cmd: exec.Command(e.bin, args...), exited: make(chan error, 1)}
	s.cmd.Env, s.cmd.Dir = e.env, e.dir
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		s.exited <- s.cmd.Wait()
		close(done)
	}()
	e.t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-done
	})
	return s
}

func (e *keysEnv) ok(args ...string) string {
	e.t.Helper()
	out, stderr, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("tencrypt %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return out
}

func (e *keysEnv) want(code int, args ...string) string {
	e.t.Helper()
	_, stderr, got := e.run(args...)
	if got != code {
		e.t.Fatalf("tencrypt %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, stderr)
	}
	return stderr
}

func TestKeysCLIEndToEnd(t *testing.T) {
	e := newKeysEnv(t)
	e.ok("keys", "init")
	if fi, err := os.Stat(filepath.Join(e.dir, "admin.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin key file: %v", err)
	}
	e.want(exitcodes.Failure, "keys", "init") // never replaces a keyring
	e.ok("keys", "create", "blue")
	var created struct {
		Tenant        string `json:"tenant"`
		Current       uint32 `json:"current_version"`
		AccessKeyFile string `json:"access_key_file"`
	}
	if err := json.Unmarshal([]byte(e.ok("keys", "create", "red", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	if created.Tenant != "red" || created.Current != 1 || created.AccessKeyFile == "" {
		t.Fatalf("create --json: %+v", created)
	}

	var list []keys.TenantInfo
	if err := json.Unmarshal([]byte(e.ok("keys", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Tenant != "blue" || list[1].Tenant != "red" {
		t.Fatalf("list --json: %+v", list)
	}

	// A wrapped key made by a workload in this process, then rotated and
	// rewrapped by the binary.
	ctx := t.Context()
	p, err := local.Open(ctx, local.Config{Path: filepath.Join(e.dir, "keyring"), KeyFile: filepath.Join(e.dir, "admin.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	audit := &memAudit{}
	env := keys.NewEnvelope(p, audit, time.Now)
	dek, wk, err := env.NewDEK(ctx, "blue", "file")
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Zero()
	blob, _ := wk.MarshalBinary()
	blobDir := filepath.Join(e.dir, "blobs")
	os.Mkdir(blobDir, 0o700)
	blobFile := filepath.Join(blobDir, "a.wk")
	os.WriteFile(blobFile, blob, 0o640)

	var rot keys.TenantInfo
	json.Unmarshal([]byte(e.ok("keys", "rotate", "blue", "--json")), &rot)
	if rot.Current != 2 {
		t.Fatalf("rotate --json: %+v", rot)
	}
	// Version 1 is still referenced: retire refuses and names the file.
	out, _, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", blobDir, "--json")
	if code != exitcodes.Failure || !strings.Contains(out, "a.wk") {
		t.Fatalf("retire with a referenced version: exit %d\n%s", code, out)
	}
	var refs struct {
		StillInUse []keys.KeyRef `json:"still_referenced"`
	}
	json.Unmarshal([]byte(out), &refs)
	for _, r := range refs.StillInUse {
		if r.Kind == "blob" && (r.Offset == nil || *r.Offset != 0) {
			t.Fatalf("retire --json: blob file %s without offset 0 (docs/CLI.md):\n%s", r.File, out)
		}
	}
	if len(refs.StillInUse) == 0 {
		t.Fatalf("retire --json lists nothing still referenced:\n%s", out)
	}
	e.want(exitcodes.Usage, "keys", "retire", "blue", "--min-version", "2")

	var rw []keys.Moved
	json.Unmarshal([]byte(e.ok("keys", "rewrap", blobFile, "--json")), &rw)
	if len(rw) != 1 || rw[0].Status != "rewrapped" || rw[0].From != 1 || rw[0].To != 2 {
		t.Fatalf("rewrap --json: %+v", rw)
	}
	if fi, _ := os.Stat(blobFile); fi.Mode().Perm() != 0o640 {
		t.Fatalf("rewrap changed the file mode to %v", fi.Mode().Perm())
	}
	e.ok("keys", "retire", "blue", "--min-version", "2", "--check", blobDir)
	nwk, err := keys.ReadBlobFile(blobFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Unwrap(ctx, nwk, "file", "test")
	if err != nil || !got.Equal(&dek) {
		t.Fatalf("the rewrapped blob does not open to the same DEK: %v", err)
	}
	if _, err := env.Unwrap(ctx, wk, "file", "test"); !errors.Is(err, keys.ErrUnknownKeyVersion) {
		t.Fatalf("old blob after retire: %v", err)
	}

	// The audit log has the rewrap.
	var recs []keys.AuditRecord
	json.Unmarshal([]byte(e.ok("keys", "audit", "--tenant", "blue", "--json")), &recs)
	if len(recs) != 1 || recs[0].Op != "rewrap" || recs[0].NewKeyVersion != 2 || recs[0].Outcome != "ok" {
		t.Fatalf("audit --json: %+v", recs)
	}

	// A tampered blob: exit 4, and the file is left as it was.
	bad := bytes.Clone(blob)
	bad[len(bad)-3] ^= 1
	badFile := filepath.Join(e.dir, "bad.wk")
	os.WriteFile(badFile, bad, 0o600)
	e.ok("keys", "rotate", "blue")
	e.want(exitcodes.UnknownKeyVersion, "keys", "rewrap", badFile) // its version 1 is retired
	nb, _ := nwk.MarshalBinary()
	nb[len(nb)-3] ^= 1
	os.WriteFile(badFile, nb, 0o600)
	e.want(exitcodes.AuthFailed, "keys", "rewrap", badFile)
	if after, _ := os.ReadFile(badFile); !bytes.Equal(after, nb) {
		t.Fatal("a failed rewrap changed the file")
	}
	os.WriteFile(badFile, []byte("not a blob"), 0o600)
	e.want(exitcodes.NotTencrypt, "keys", "rewrap", badFile)

	// Reissue revokes red's old access key.
	redKey := filepath.Join(e.dir, "keyring.access", "red.key")
	oldRed, _ := os.ReadFile(redKey)
	e.ok("keys", "reissue", "red")
	if newRed, _ := os.ReadFile(redKey); bytes.Equal(newRed, oldRed) {
		t.Fatal("reissue left the access key file unchanged")
	}
	os.WriteFile(filepath.Join(e.dir, "old-red.key"), oldRed, 0o600)
	e.want(exitcodes.AuthFailed, "keys", "list", "--local-key-file", "", "--local-tenant", "red", "--local-tenant-key-file", filepath.Join(e.dir, "old-red.key"))
	e.ok("keys", "list", "--local-key-file", "", "--local-tenant", "red", "--local-tenant-key-file", redKey)

	// Shred: refused without --yes off a terminal, then done.
	e.want(exitcodes.Usage, "keys", "shred", "red")
	var sh struct {
		Tenant   string `json:"tenant"`
		Shredded bool   `json:"shredded"`
	}
	json.Unmarshal([]byte(e.ok("keys", "shred", "red", "--yes", "--json")), &sh)
	if !sh.Shredded || sh.Tenant != "red" {
		t.Fatalf("shred --json: %+v", sh)
	}
	stderr := e.want(exitcodes.Shredded, "keys", "rotate", "red")
	if !strings.Contains(stderr, "shredded") {
		t.Fatalf("rotate after shred: %q", stderr)
	}
	e.want(exitcodes.Shredded, "keys", "create", "red")

	// Bench on a throw-away tenant reports both operations.
	var bench keys.BenchResult
	json.Unmarshal([]byte(e.ok("keys", "bench", "--ops", "50", "--concurrency", "2", "--json")), &bench)
	if bench.Backend != "local" || bench.Ops != 50 || bench.Wrap.OpsPerSec <= 0 || bench.Unwrap.P99Micros <= 0 {
		t.Fatalf("bench --json: %+v", bench)
	}
}

func TestKeysCLIErrors(t *testing.T) {
	e := newKeysEnv(t)
	e.ok("keys", "init")
	e.ok("keys", "create", "blue")
	keyring := filepath.Join(e.dir, "keyring")
	good, _ := os.ReadFile(keyring)

	tests := []struct {
		name  string
		setup func()
		args  []string
		code  int
	}{
		{"unknown tenant", nil, []string{"keys", "rotate", "green"}, exitcodes.UnknownTenant},
		{"invalid tenant", nil, []string{"keys", "create", "Not_A_Label"}, exitcodes.Usage},
		{"tenant exists", nil, []string{"keys", "create", "blue"}, exitcodes.Failure},
		{"unknown backend", nil, []string{"keys", "list", "--backend", "nosuch"}, exitcodes.Usage},
		{"unknown flag", nil, []string{"keys", "list", "--nosuch"}, exitcodes.Usage},
		{"wrong key file", func() {
			local.GenerateKeyFile(filepath.Join(e.dir, "other.key"))
		}, []string{"keys", "list", "--local-key-file", filepath.Join(e.dir, "other.key")}, exitcodes.AuthFailed},
		{"tenant key cannot rotate", nil, []string{"keys", "rotate", "blue", "--local-key-file", "", "--local-tenant", "blue", "--local-tenant-key-file", filepath.Join(e.dir, "keyring.access", "blue.key")}, exitcodes.PermissionDenied},
		{"truncated keyring", func() { os.WriteFile(keyring, good[:len(good)/2], 0o600) }, []string{"keys", "list"}, exitcodes.NotTencrypt},
		{"tampered keyring", func() { b := bytes.Clone(good); b[100] ^= 1; os.WriteFile(keyring, b, 0o600) }, []string{"keys", "list"}, exitcodes.AuthFailed},
		{"future keyring", func() { b := bytes.Clone(good); b[9] = 9; os.WriteFile(keyring, b, 0o600) }, []string{"keys", "list"}, exitcodes.UnknownFormat},
		{"bad config file", func() {
			os.WriteFile(filepath.Join(e.dir, "c.yaml"), []byte("backend: local\nnosuchfield: 1\n"), 0o600)
		}, []string{"keys", "list", "--config", filepath.Join(e.dir, "c.yaml")}, exitcodes.Usage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(keyring, good, 0o600)
			if tt.setup != nil {
				tt.setup()
			}
			e.want(tt.code, tt.args...)
		})
	}
}

// The config file maps onto backend.Config; the environment beats it and
// flags beat both.
func TestKeysConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("backend: local\naudit_log: /file/audit\nlocal:\n  path: /file/keyring\n  key_file: /file/key\n"), 0o600)
	env := map[string]string{"TENCRYPT_CONFIG": file, "TENCRYPT_LOCAL_PATH": "/env/keyring", "TENCRYPT_LOCAL_PASSPHRASE": "s3cret"}
	cmd := newKeysCmd()
	list, _, err := cmd.Find([]string{"list"})
	if err != nil {
		t.Fatal(err)
	}
	if err := list.ParseFlags([]string{"--local-key-file", "/flag/key"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadKeysConfig(list, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != "local" || cfg.AuditLog != "/file/audit" || cfg.Local.Path != "/env/keyring" || cfg.Local.KeyFile != "/flag/key" || string(cfg.Local.Passphrase) != "s3cret" {
		t.Fatalf("config: %+v", cfg)
	}
	for _, s := range backend.Fields() {
		if s.Flag == "local-passphrase" {
			t.Fatal("the passphrase has a flag; secrets come only from the environment or files")
		}
	}
}

type memAudit struct{ n int }

func (a *memAudit) Record(_ context.Context, _ keys.AuditRecord) error { a.n++; return nil }

// TestKeysRotationWorkflowVolume is issue 16's data loss, step by step: a
// volume written through the mount, the KEK rotated, its files rewrapped
// with 'file rewrap -r'. retire --check must now refuse (the volume's name
// key is still under version 1); 'keys rewrap' moves it; retire then
// succeeds and the volume mounts and reads as before.
func TestKeysRotationWorkflowVolume(t *testing.T) {
	e := newFileEnv(t)
	cipher := filepath.Join(e.dir, "cipher")
	e.ok("volume", "init", cipher, "--tenant", "blue")
	m := startMount(t, e, cipher)
	content := randomBytes(5000, 9)
	writeFile(t, filepath.Join(m.dir, "docs", "payroll.xlsx"), content)
	// A symbolic link in the volume: stored with an encrypted target, which
	// the check must not take for a link it cannot follow.
	if err := os.Symlink("docs/payroll.xlsx", filepath.Join(m.dir, "latest")); err != nil {
		t.Fatal(err)
	}
	m.stop(t, syscall.SIGTERM)

	e.ok("keys", "rotate", "blue")
	e.ok("file", "rewrap", "-r", cipher)
	out, stderr, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", cipher, "--json")
	var res struct {
		Retired    bool          `json:"retired"`
		StillInUse []keys.KeyRef `json:"still_referenced"`
	}
	json.Unmarshal([]byte(out), &res)
	if code != exitcodes.Failure || res.Retired || len(res.StillInUse) != 1 || res.StillInUse[0].Kind != "volume" ||
		filepath.Base(res.StillInUse[0].File) != volnames.VolumeFile || !strings.Contains(stderr, "keys rewrap") {
		t.Fatalf("retire with the volume's name key under version 1: exit %d, %+v\n%s", code, res, stderr)
	}

	var moved []keys.Moved
	if err := json.Unmarshal([]byte(e.ok("keys", "rewrap", cipher, "--json")), &moved); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, mv := range moved {
		if mv.To != 2 {
			t.Fatalf("rewrap: %+v", mv)
		}
		if mv.Status == keys.StatusRewrapped {
			kinds[mv.Kind]++
		}
	}
	if kinds["volume"] != 1 || kinds["file"] != 0 {
		t.Fatalf("rewrap of the volume (its files were rewrapped already): %+v", moved)
	}
	// --strict: every file of the volume is one the check knows.
	if out := e.ok("keys", "retire", "blue", "--min-version", "2", "--check", cipher, "--strict"); !strings.Contains(out, "1 volume") {
		t.Fatalf("retire: %s", out)
	}
	m = startMount(t, e, cipher)
	got, err := os.ReadFile(filepath.Join(m.dir, "latest"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the volume after rotate, rewrap and retire: %v\n%s", err, m.stderr)
	}
	m.stop(t, syscall.SIGTERM)
}

// TestKeysRetireFailsClosed: a file retire cannot read stops it, and no
// version is destroyed.
func TestKeysRetireFailsClosed(t *testing.T) {
	e := newFileEnv(t)
	e.ok("keys", "rotate", "blue")
	dir := filepath.Join(e.dir, "check")
	writeFile(t, filepath.Join(dir, "ok.txt"), []byte("plain"))
	writeFile(t, filepath.Join(dir, volnames.VolumeFile), []byte(`{"format": "tencrypt-volume", "version": 1, "name_key": "bm90IGEga2V5"}`))
	_, stderr, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", dir)
	if code == 0 || !strings.Contains(stderr, "nothing was retired") || !strings.Contains(stderr, volnames.VolumeFile) {
		t.Fatalf("retire over an unreadable volume configuration: exit %d\n%s", code, stderr)
	}
	var list []keys.TenantInfo
	json.Unmarshal([]byte(e.ok("keys", "list", "--json")), &list)
	if len(list) == 0 || list[0].Tenant != "blue" || list[0].MinVersion != 1 {
		t.Fatalf("a failed check retired a version: %+v", list)
	}

	// --strict refuses files of no known kind; without it they are counted.
	os.Remove(filepath.Join(dir, volnames.VolumeFile))
	out, stderr, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", dir, "--strict")
	if code != exitcodes.Failure || !strings.Contains(out, "ok.txt") || !strings.Contains(stderr, "nothing was retired") {
		t.Fatalf("retire --strict over a plaintext file: exit %d\n%s%s", code, out, stderr)
	}
	if out := e.ok("keys", "retire", "blue", "--min-version", "2", "--check", dir); !strings.Contains(out, "1 other") {
		t.Fatalf("retire: %s", out)
	}
}

// TestKeysRotationWorkflowTransit: the transit registry's wrapped PSK, as
// 'transit enroll' stores it, blocks retire until 'keys rewrap' moves it;
// the moved PSK is the same key.
func TestKeysRotationWorkflowTransit(t *testing.T) {
	e := newFileEnv(t)
	state := filepath.Join(e.dir, "lab-state")
	reg := filepath.Join(state, "demo.transit.json")
	e.ok("transit", "enroll", "blue", "--name", "demo", "--state-dir", state)
	readPSK := func() keys.WrappedKey {
		t.Helper()
		var st struct {
			Tenants map[string]struct {
				PSK []byte `json:"psk"`
			} `json:"tenants"`
		}
		data, err := os.ReadFile(reg)
		if err != nil {
			t.Fatal(err)
		}
		var wk keys.WrappedKey
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		if err := wk.UnmarshalBinary(st.Tenants["blue"].PSK); err != nil {
			t.Fatal(err)
		}
		return wk
	}
	before := readPSK()
	p, err := local.Open(t.Context(), local.Config{Path: filepath.Join(e.dir, "keyring"), KeyFile: filepath.Join(e.dir, "admin.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	env := keys.NewEnvelope(p, &memAudit{}, time.Now)
	psk0, err := env.Unwrap(t.Context(), before, before.Purpose, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer psk0.Zero()
	e.ok("keys", "rotate", "blue")
	out, _, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", state, "--json")
	if code != exitcodes.Failure || !strings.Contains(out, "transit-registry") {
		t.Fatalf("retire with the transit PSK under version 1: exit %d\n%s", code, out)
	}
	if out := e.ok("keys", "rewrap", reg); !strings.Contains(out, "transit-registry: 1 rewrapped") {
		t.Fatalf("rewrap of the registry: %s", out)
	}
	e.ok("keys", "retire", "blue", "--min-version", "2", "--check", state)
	after := readPSK()
	if after.KEKVersion != 2 {
		t.Fatalf("PSK after rewrap: %v", after)
	}
	psk, err := env.Unwrap(t.Context(), after, before.Purpose, "test")
	if err != nil || !psk.Equal(&psk0) {
		t.Fatalf("the rewrapped PSK does not open to the same key: %v", err)
	}
	defer psk.Zero()
	if _, err := env.Unwrap(t.Context(), before, before.Purpose, "test"); !errors.Is(err, keys.ErrUnknownKeyVersion) {
		t.Fatalf("the old PSK after retire: %v", err)
	}
}

// TestRewrapShreddedTenant: file rewrap and keys rewrap take one path, and
// both refuse a shredded tenant's files with exit 9, leaving them as they
// were.
func TestRewrapShreddedTenant(t *testing.T) {
	e := newFileEnv(t)
	writeFile(t, filepath.Join(e.dir, "d", "a"), []byte("red's data"))
	e.ok("file", "encrypt", "--tenant", "red", "d/a")
	before, _ := os.ReadFile(filepath.Join(e.dir, "d", "a.tenc"))
	e.ok("keys", "shred", "red", "--yes")
	for _, args := range [][]string{{"file", "rewrap", "d/a.tenc"}, {"keys", "rewrap", "d/a.tenc"}, {"keys", "rewrap", "d"}} {
		if stderr := e.want(exitcodes.Shredded, args...); !strings.Contains(stderr, "shredded") {
			t.Fatalf("%v: %s", args, stderr)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(e.dir, "d", "a.tenc")); !bytes.Equal(after, before) {
		t.Fatal("a refused rewrap changed the file")
	}
}
