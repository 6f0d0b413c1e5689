package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
	"github.com/tencrypt/tencrypt/rest/fscrypt/fscrypttest"
)

func volumeStatus(t *testing.T, e *keysEnv, dir string) fscrypt.Status {
	t.Helper()
	var st fscrypt.Status
	if err := json.Unmarshal([]byte(e.ok("volume", "status", dir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestVolumeFscryptCLI: create, unlock, write, lock (encrypted names),
// rotate and rewrap with the keys commands, retire, unlock again; and the
// exit codes of the refusals.
func TestVolumeFscryptCLI(t *testing.T) {
	e := newFileEnv(t)
	fs := fscrypttest.Ext4(t, true)
	dir := filepath.Join(fs, "blue-db")
	t.Cleanup(func() { fscrypt.Lock(dir) })
	var st fscrypt.Status
	json.Unmarshal([]byte(e.ok("volume", "create", dir, "--mode", "fscrypt", "--tenant", "blue", "--json")), &st)
	if st.State != fscrypt.StateLocked || st.Tenant != "blue" || st.KEKVersion != 1 || len(st.KeyIdentifier) != 32 {
		t.Fatalf("create --json: %+v", st)
	}
	e.ok("volume", "unlock", dir)
	if st := volumeStatus(t, e, dir); st.State != fscrypt.StateUnlocked {
		t.Fatalf("after unlock: %+v", st)
	}
	data := filepath.Join(dir, fscrypt.DataDir)
	if err := os.WriteFile(filepath.Join(data, "orders.csv"), []byte("1,2,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.want(exitcodes.Usage, "volume", "unlock", dir)
	var lr fscrypt.LockResult
	json.Unmarshal([]byte(e.ok("volume", "lock", dir, "--json")), &lr)
	if !lr.WasUnlocked || lr.FilesBusy {
		t.Fatalf("lock --json: %+v", lr)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 1 || ents[0].Name() == "orders.csv" {
		t.Fatalf("a locked volume lists %v", ents)
	}
	// A locked volume's files cannot be read, so a check over them fails
	// closed; its metadata file is where its key is.
	meta := filepath.Join(dir, fscrypt.MetadataFile)
	e.ok("keys", "rotate", "blue")
	out, _, code := e.run("keys", "retire", "blue", "--min-version", "2", "--check", meta, "--json")
	var refs struct {
		StillInUse []keys.KeyRef `json:"still_referenced"`
	}
	json.Unmarshal([]byte(out), &refs)
	if code != exitcodes.Failure || len(refs.StillInUse) != 1 || refs.StillInUse[0].Kind != "fscrypt-volume" {
		t.Fatalf("retire --check with the volume's key under version 1: exit %d\n%s", code, out)
	}
	if stderr := e.want(exitcodes.Failure, "keys", "retire", "blue", "--min-version", "2", "--check", dir); !strings.Contains(stderr, "required key not available") {
		t.Fatalf("retire --check over a locked volume's data: %s", stderr)
	}
	e.ok("keys", "rewrap", meta)
	e.ok("keys", "retire", "blue", "--min-version", "2", "--check", meta)
	e.ok("volume", "unlock", dir)
	if got, err := os.ReadFile(filepath.Join(data, "orders.csv")); err != nil || string(got) != "1,2,3\n" {
		t.Fatalf("after rewrap and retire: %q, %v", got, err)
	}

	// Refusals: their exit codes, nothing changed.
	e.want(exitcodes.Usage, "volume", "create", filepath.Join(fs, "x"), "--mode", "luks", "--tenant", "blue")
	e.want(exitcodes.Usage, "volume", "create", dir, "--mode", "fscrypt", "--tenant", "blue")
	e.want(exitcodes.NotTencrypt, "volume", "status", fs)
	plain := fscrypttest.Ext4(t, false)
	e.want(exitcodes.Prerequisite, "volume", "create", filepath.Join(plain, "v"), "--mode", "fscrypt", "--tenant", "blue")
	if ents, _ := os.ReadDir(dir); !slices.ContainsFunc(ents, func(d os.DirEntry) bool { return d.Name() == fscrypt.MetadataFile }) || len(ents) != 2 {
		t.Fatalf("the volume after refused commands: %v", ents)
	}
}
