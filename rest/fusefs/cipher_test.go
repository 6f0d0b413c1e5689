package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/names"
)

// cipherEntries lists a cipher directory without the reserved files.
func cipherEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != names.DirIVFile && n != names.VolumeFile && !names.IsSidecar(n) {
			out = append(out, n)
		}
	}
	return out
}

func TestCipherDirectoryHidesNamesAndContent(t *testing.T) {
	w := newWorld(t)
	mnt, fsys := w.mount(t)
	marker := []byte("PLAINTEXT-MARKER-0123456789")
	for _, d := range []string{"alpha", "beta"} {
		must(t, os.Mkdir(filepath.Join(mnt, d), 0o755))
		must(t, os.WriteFile(filepath.Join(mnt, d, "same-name.txt"), bytes.Repeat(marker, 300), 0o644))
	}
	top := cipherEntries(t, w.cipher)
	if len(top) != 2 {
		t.Fatalf("cipher root has %v, want two directories", top)
	}
	var inner []string
	for _, d := range top {
		if strings.Contains(d, "alpha") || strings.Contains(d, "beta") {
			t.Errorf("cipher name %q shows the plaintext", d)
		}
		if _, err := cipherIDAt(t, fsys, "", d); err != nil {
			t.Errorf("cipher directory without its IV: %v", err)
		}
		e := cipherEntries(t, filepath.Join(w.cipher, d))
		if len(e) != 1 || strings.Contains(e[0], "same") {
			t.Fatalf("cipher directory %s has %v", d, e)
		}
		inner = append(inner, e[0])
		b, err := os.ReadFile(filepath.Join(w.cipher, d, e[0]))
		must(t, err)
		if bytes.Contains(b, marker) {
			t.Error("the cipher file contains the plaintext")
		}
		h, err := format.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("cipher file is not a tencrypt file: %v", err)
		}
		if h.Key.Tenant != "blue" || h.Key.Purpose != format.Purpose {
			t.Errorf("header key %v", h.Key)
		}
		if got, want := int64(len(b)), format.CiphertextSize(h.Size(), int64(300*len(marker))); got != want {
			t.Errorf("cipher file of %d bytes, want %d", got, want)
		}
	}
	if inner[0] == inner[1] {
		t.Errorf("equal names in two directories encrypt equally: %q", inner[0])
	}
}

func TestTamperedBlockGivesEIO(t *testing.T) {
	w := newWorld(t)
	mnt, f := w.mount(t)
	data := randomBytes(3*format.BlockSize, 9)
	must(t, os.WriteFile(filepath.Join(mnt, "victim"), data, 0o644))
	ents := cipherEntries(t, w.cipher)
	if len(ents) != 1 {
		t.Fatalf("cipher root: %v", ents)
	}
	cp := filepath.Join(w.cipher, ents[0])
	raw, err := os.ReadFile(cp)
	must(t, err)
	h, err := format.ReadHeader(bytes.NewReader(raw))
	must(t, err)
	raw[h.Size()+format.SealedBlockSize+100] ^= 0x40 // a ciphertext byte of block 1
	must(t, os.WriteFile(cp, raw, 0o644))

	fh, err := os.Open(filepath.Join(mnt, "victim"))
	must(t, err)
	defer fh.Close()
	head := make([]byte, 100)
	if _, err := fh.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:100]) {
		t.Errorf("block 0 should still read: %v", err)
	}
	_, err = io.ReadAll(fh)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the tampered block: %v, want EIO", err)
	}
	if f.Stats().CorruptBlocks.Load() == 0 {
		t.Error("corruption not counted")
	}
	if log := w.log.String(); !strings.Contains(log, "corrupt block") || !strings.Contains(log, "block=1") || !strings.Contains(log, "/victim") {
		t.Errorf("log does not name the file and block:\n%s", log)
	}
}

func TestUndecryptableNamesAreSkipped(t *testing.T) {
	w := newWorld(t)
	mnt, f := w.mount(t)
	must(t, os.WriteFile(filepath.Join(mnt, "good"), []byte("g"), 0o644))
	long := strings.Repeat("x", 240)
	must(t, os.WriteFile(filepath.Join(mnt, long), []byte("l"), 0o644))
	// Junk that is not an encrypted name, and a long name whose sidecar
	// was swapped for another's.
	must(t, os.WriteFile(filepath.Join(w.cipher, "abc"), nil, 0o644))
	var stored string
	for _, e := range cipherEntries(t, w.cipher) {
		if names.IsLong(e) {
			stored = e
		}
	}
	if stored == "" {
		t.Fatal("no long name in the cipher directory")
	}
	must(t, os.Chmod(filepath.Join(w.cipher, names.Sidecar(stored)), 0o600))
	must(t, os.WriteFile(filepath.Join(w.cipher, names.Sidecar(stored)), []byte("AAAA"), 0o600))

	d, err := os.Open(mnt)
	must(t, err)
	got, err := d.Readdirnames(-1)
	d.Close()
	must(t, err)
	if !slices.Equal(got, []string{"good"}) {
		t.Errorf("listing %v, want only good", got)
	}
	if n := f.Stats().BadNames.Load(); n != 2 {
		t.Errorf("BadNames = %d, want 2", n)
	}
	if !strings.Contains(w.log.String(), "skipping a directory entry") {
		t.Errorf("skipped names not logged:\n%s", w.log.String())
	}
	// A fresh mount, so the kernel has not cached the entry from its create.
	mnt2, _ := w.mount(t)
	if _, err := os.Stat(filepath.Join(mnt2, long)); !errors.Is(err, syscall.EIO) {
		t.Errorf("lookup of the long name with a bad sidecar: %v, want EIO", err)
	}
}

func TestKeyCacheAvoidsUnwraps(t *testing.T) {
	w := newWorld(t)
	mnt, f := w.mount(t)
	must(t, os.WriteFile(filepath.Join(mnt, "a"), []byte("aaa"), 0o644))
	if f.Stats().NewKeys.Load() != 1 {
		t.Fatal("create did not make one new key")
	}
	// A fresh mount has an empty cache: the first open unwraps, the next
	// ones hit the cache.
	mnt2, f2 := w.mount(t)
	for range 3 {
		b, err := os.ReadFile(filepath.Join(mnt2, "a"))
		if err != nil || string(b) != "aaa" {
			t.Fatalf("read: %q, %v", b, err)
		}
	}
	if u := f2.Stats().Unwraps.Load(); u != 1 {
		t.Errorf("%d unwraps for three opens, want 1", u)
	}
	if f2.Stats().CacheHits.Load() < 1 || f2.CachedKeys() != 1 {
		t.Errorf("cache hits %d, cached %d", f2.Stats().CacheHits.Load(), f2.CachedKeys())
	}
	if f.Stats().Unwraps.Load() != 0 {
		t.Error("the first mount unwrapped the key of a file it created")
	}
}

func TestKeyCacheIsBounded(t *testing.T) {
	c := newKeyCache(2)
	for i := range 3 {
		c.put(wkFor(i), &keys.DEK{byte(i + 1)})
	}
	var d keys.DEK
	if c.len() != 2 || c.get(wkFor(0), &d) || !c.get(wkFor(2), &d) || d[0] != 3 {
		t.Errorf("cache holds %d; want the oldest evicted and the newest kept", c.len())
	}
	c.clear()
	if c.len() != 0 || c.get(wkFor(2), &d) {
		t.Error("clear left keys")
	}
}

func wkFor(i int) keys.WrappedKey {
	return keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 1, Ciphertext: []byte{byte(i), 1, 2, 3}}
}

// TestSetattrOnOpenFiles: chmod, chown, utimens and truncate of an open
// file (also after unlink) go to the cipher file and read back.
func TestSetattrOnOpenFiles(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	p := filepath.Join(mnt, "f")
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	_, err = f.Write(randomBytes(5000, 1))
	must(t, err)
	must(t, f.Chmod(0o604))
	must(t, f.Chown(1234, 5678))
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 6789, time.UTC)
	must(t, f.Truncate(4097))
	must(t, os.Chtimes(p, mtime, mtime))
	fi, err := os.Stat(p)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o604 || st.Uid != 1234 || st.Gid != 5678 || !fi.ModTime().Equal(mtime) || fi.Size() != 4097 {
		t.Errorf("got mode %v uid %d gid %d mtime %v size %d", fi.Mode(), st.Uid, st.Gid, fi.ModTime(), fi.Size())
	}
	cfi, err := os.Stat(filepath.Join(w.cipher, cipherEntries(t, w.cipher)[0]))
	must(t, err)
	if cfi.Mode().Perm() != 0o604 || !cfi.ModTime().Equal(mtime) {
		t.Errorf("cipher file: mode %v mtime %v", cfi.Mode(), cfi.ModTime())
	}
	// Unlinked but open: still readable, writable and stat-able.
	must(t, os.Remove(p))
	must(t, f.Chmod(0o600))
	_, err = f.WriteAt([]byte("after unlink"), 10)
	must(t, err)
	fi, err = f.Stat()
	must(t, err)
	if fi.Size() != 4097 || fi.Mode().Perm() != 0o600 {
		t.Errorf("unlinked file: size %d mode %v", fi.Size(), fi.Mode())
	}
	b := make([]byte, 12)
	if _, err := f.ReadAt(b, 10); err != nil || string(b) != "after unlink" {
		t.Errorf("read after unlink: %q, %v", b, err)
	}
}

// TestNewFilesUseTheCurrentKEK: after a rotation, a file created through
// the mount has its DEK wrapped under the new KEK version; older files
// still read.
func TestNewFilesUseTheCurrentKEK(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	must(t, os.WriteFile(filepath.Join(mnt, "old"), []byte("old"), 0o644))
	v, err := w.p.Rotate(t.Context(), "blue")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("new"), 0o644))
	versions := map[uint32]int{}
	for _, e := range cipherEntries(t, w.cipher) {
		f, err := os.Open(filepath.Join(w.cipher, e))
		must(t, err)
		h, err := format.ReadHeader(f)
		f.Close()
		must(t, err)
		versions[h.Key.KEKVersion]++
	}
	if versions[v] != 1 || versions[v-1] != 1 {
		t.Errorf("KEK versions of the two files: %v, want one each of v%d and v%d", versions, v-1, v)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "old")); err != nil || string(b) != "old" {
		t.Errorf("old file: %q, %v", b, err)
	}
}

// TestConcurrentWritersAndReaders: several handles write disjoint regions
// of one file while others read it; the result is what the writes say.
func TestConcurrentWritersAndReaders(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	p := filepath.Join(mnt, "shared")
	const region = 50000 // not block aligned: neighbours share blocks
	const writers = 4
	want := make([]byte, writers*region)
	must(t, os.WriteFile(p, want, 0o644))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			data := randomBytes(region, uint64(i))
			copy(want[i*region:], data)
			for off := 0; off < region; off += 7000 {
				end := min(off+7000, region)
				if _, err := f.WriteAt(data[off:end], int64(i*region+off)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				b, err := os.ReadFile(p)
				if err != nil || len(b) != len(want) {
					errs <- fmt.Errorf("concurrent read: %d bytes, %v", len(b), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := os.ReadFile(p)
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Error("file content after concurrent writes differs")
	}
}
