package fscrypt_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
	"github.com/tencrypt/tencrypt/rest/fscrypt/fscrypttest"
)

// TestCreateRefuses: a file system without the encrypt feature and a
// directory with entries are refused, and nothing there is changed.
func TestCreateRefuses(t *testing.T) {
	w := newWorld(t)
	plain := fscrypttest.Ext4(t, false)
	// A new directory on the plain file system is not left behind; an
	// existing empty one stays.
	if _, err := w.vols.Create(t.Context(), filepath.Join(plain, "new"), "blue"); !errors.Is(err, fscrypt.ErrUnsupported) {
		t.Fatalf("create on ext4 without encrypt: %v, want ErrUnsupported", err)
	}
	if _, err := os.Stat(filepath.Join(plain, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed create left its directory: %v", err)
	}
	empty := filepath.Join(plain, "empty")
	os.Mkdir(empty, 0o700)
	if _, err := w.vols.Create(t.Context(), empty, "blue"); !errors.Is(err, fscrypt.ErrUnsupported) {
		t.Fatalf("create in an empty dir on ext4 without encrypt: %v", err)
	}
	if ents, err := os.ReadDir(empty); err != nil || len(ents) != 0 {
		t.Fatalf("the empty directory after a failed create: %v, %v", ents, err)
	}
	// tmpfs has no fscrypt at all.
	tmp := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", tmp).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", tmp).Run() })
	if _, err := w.vols.Create(t.Context(), filepath.Join(tmp, "v"), "blue"); !errors.Is(err, fscrypt.ErrUnsupported) {
		t.Fatalf("create on tmpfs: %v, want ErrUnsupported", err)
	}
	// A volume inside another volume's data directory is refused.
	outer, _ := w.create("outer", "blue")
	w.unlock(outer)
	if _, err := w.vols.Create(t.Context(), filepath.Join(outer, fscrypt.DataDir, "inner"), "blue"); !errors.Is(err, fscrypt.ErrNotEmpty) {
		t.Fatalf("create inside a volume: %v", err)
	}
	full := filepath.Join(w.fs, "full")
	os.Mkdir(full, 0o700)
	os.WriteFile(filepath.Join(full, "keep.txt"), []byte("keep"), 0o600)
	if _, err := w.vols.Create(t.Context(), full, "blue"); !errors.Is(err, fscrypt.ErrNotEmpty) {
		t.Fatalf("create in a non-empty dir: %v, want ErrNotEmpty", err)
	}
	if got, err := os.ReadFile(filepath.Join(full, "keep.txt")); err != nil || string(got) != "keep" {
		t.Fatalf("the non-empty directory's file after a refused create: %q, %v", got, err)
	}
	if ents, _ := os.ReadDir(full); len(ents) != 1 {
		t.Fatalf("a refused create added entries: %v", ents)
	}
	if _, err := w.vols.Create(t.Context(), filepath.Join(w.fs, "vol"), "nobody"); !errors.Is(err, keys.ErrUnknownTenant) {
		t.Fatalf("create for an unknown tenant: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.fs, "vol")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed create left its directory: %v", err)
	}
}

// TestUnlockRefusesBadMetadata: a missing, truncated or tampered metadata
// file, and a key already present, each get a clear error; the volume
// stays as it was, and unlocks once the good file is back.
func TestUnlockRefusesBadMetadata(t *testing.T) {
	w := newWorld(t)
	base, _ := w.create("vol", "blue")
	w.unlock(base)
	os.WriteFile(filepath.Join(base, fscrypt.DataDir, "kept.txt"), secret, 0o600)
	if _, err := w.vols.Unlock(t.Context(), base); !errors.Is(err, fscrypt.ErrAlreadyUnlocked) {
		t.Fatalf("unlock of an unlocked volume: %v, want ErrAlreadyUnlocked", err)
	}
	if got := w.state(base); got != fscrypt.StateUnlocked {
		t.Fatalf("after a second unlock: %s", got)
	}
	path := filepath.Join(base, fscrypt.MetadataFile)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Metadata damaged while unlocked: lock still works (it takes the key
	// from the directory's policy).
	os.WriteFile(path, good[:10], 0o600)
	if res := w.lock(base); !res.WasUnlocked {
		t.Fatalf("lock with damaged metadata: %+v", res)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name string
		data []byte // nil: no file
		link bool   // a symbolic link to the good file instead
		want error
	}{
		{name: "missing", want: fscrypt.ErrNotVolume},
		{name: "a link to a good copy", link: true, want: unix.ELOOP},
		{name: "empty", data: []byte{}, want: fscrypt.ErrBadMetadata},
		{name: "truncated fixed part", data: good[:20], want: fscrypt.ErrBadMetadata},
		{name: "truncated wrapped key", data: good[:len(good)-1], want: fscrypt.ErrBadMetadata},
		{name: "trailing byte", data: append(bytes.Clone(good), 0), want: fscrypt.ErrBadMetadata},
		{name: "magic", data: flip(0), want: fscrypt.ErrBadMetadata},
		{name: "version", data: flip(4), want: fscrypt.ErrUnknownVersion},
		{name: "contents mode", data: flip(5), want: fscrypt.ErrBadMetadata},
		{name: "volume ID", data: flip(8), want: fscrypt.ErrWrongKey},
		{name: "key identifier", data: flip(24), want: fscrypt.ErrBadMetadata},
		{name: "wrapped key ciphertext", data: flip(len(good) - 1), want: keys.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch {
			case tt.link:
				os.Remove(path)
				os.WriteFile(path+".real", good, 0o600)
				os.Symlink(fscrypt.MetadataFile+".real", path)
				defer os.Remove(path + ".real")
			case tt.data == nil:
				os.Remove(path)
			default:
				os.WriteFile(path, tt.data, 0o600)
			}
			if _, err := w.vols.Unlock(t.Context(), base); !errors.Is(err, tt.want) {
				t.Fatalf("unlock: %v, want %v", err, tt.want)
			}
			if st, err := fscrypt.ReadStatus(base); tt.data == nil || errors.Is(tt.want, fscrypt.ErrBadMetadata) || tt.want == fscrypt.ErrUnknownVersion {
				if err == nil {
					t.Fatalf("status of a volume with bad metadata: %+v", st)
				}
			} else if st.State != fscrypt.StateLocked {
				t.Fatalf("after a refused unlock: %+v, %v", st, err)
			}
			os.Remove(path)
			os.WriteFile(path, good, 0o600)
			w.unlock(base)
			if got, err := os.ReadFile(filepath.Join(base, fscrypt.DataDir, "kept.txt")); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("data after restoring the metadata: %v", err)
			}
			w.lock(base)
		})
	}
}
