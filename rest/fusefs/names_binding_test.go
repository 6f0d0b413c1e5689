package fusefs

// Names bound to their directories (docs/NAMES.md, issue 16 finding 3):
// IV files transplanted, entries, long names and sidecars moved between
// directories, symlink targets copied between symlinks. Each is planted in
// the cipher directory while the volume is unmounted; a fresh mount must
// answer EIO or ENOENT and log it, never show the entry under another
// directory. And the renames the mount does itself keep everything
// readable, also after a crash in the middle of a directory rename.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// volumeNames returns the name transform of w's volume.
func volumeNames(t *testing.T, w *world) *names.Transform {
	t.Helper()
	v, err := names.LoadVolume(w.cipher)
	must(t, err)
	tr, err := v.Transform(context.Background(), w.env, "fusefs test")
	must(t, err)
	return tr
}

// cipherWalk follows plain (a path relative to the mount, "" for the
// root) down w's cipher directory, checking each directory's IV file for
// its place, and returns the cipher path, the ID of its directory (the
// last directory's own ID when plain names a directory: dirOf false) and
// its stored name.
func cipherWalk(t *testing.T, tr *names.Transform, cipher, plain string) (path string, parent names.DirID, stored string) {
	t.Helper()
	id, err := tr.ReadRootID(cipher)
	must(t, err)
	path = cipher
	if plain == "" {
		return path, id, ""
	}
	parts := strings.Split(plain, "/")
	for i, c := range parts {
		enc, err := tr.Encrypt(c, id)
		must(t, err)
		stored, _ = names.Stored(enc)
		parent = id
		path = filepath.Join(path, stored)
		if i < len(parts)-1 {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
			must(t, err)
			id, _, err = tr.ReadDirID(fd, names.ChildLoc(parent, stored))
			unix.Close(fd)
			must(t, err)
		}
	}
	return path, parent, stored
}

// cipherDirID reads the ID of the cipher directory of plaintext directory
// plain, checked for its place.
func cipherDirID(t *testing.T, f *FS, plain string) (names.DirID, error) {
	t.Helper()
	path, parent, stored := cipherWalk(t, f.cfg.Names, f.cfg.CipherDir, plain)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return names.DirID{}, err
	}
	defer unix.Close(fd)
	loc := names.ChildLoc(parent, stored)
	if plain == "" {
		loc = names.RootLoc()
	}
	id, _, err := f.cfg.Names.ReadDirID(fd, loc)
	return id, err
}

// cipherIDAt reads the ID of the cipher directory stored (a cipher name)
// in the cipher directory of plaintext directory parent, checked for its
// place.
func cipherIDAt(t *testing.T, f *FS, parent, stored string) (names.DirID, error) {
	t.Helper()
	path, _, _ := cipherWalk(t, f.cfg.Names, f.cfg.CipherDir, parent)
	pid, err := cipherDirID(t, f, parent)
	if err != nil {
		return names.DirID{}, err
	}
	fd, err := unix.Open(filepath.Join(path, stored), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return names.DirID{}, err
	}
	defer unix.Close(fd)
	id, _, err := f.cfg.Names.ReadDirID(fd, names.ChildLoc(pid, stored))
	return id, err
}

// namesTree is the tree every case starts from.
func namesTree(t *testing.T, mnt string) {
	t.Helper()
	for _, d := range []string{"d1", "d2", "d1/sub", "d2/sub"} {
		must(t, os.Mkdir(filepath.Join(mnt, d), 0o755))
	}
	for _, d := range []string{"", "d1", "d2"} {
		must(t, os.WriteFile(filepath.Join(mnt, d, "payroll.xlsx"), []byte("salaries of "+d), 0o644))
	}
	must(t, os.WriteFile(filepath.Join(mnt, "d1", "only-in-d1"), []byte("one"), 0o644))
	must(t, os.WriteFile(filepath.Join(mnt, "d1", longPlain), []byte("long"), 0o644))
	must(t, os.WriteFile(filepath.Join(mnt, "d2", longPlain), []byte("long2"), 0o644))
	must(t, os.WriteFile(filepath.Join(mnt, "d1", "sub", "g"), []byte("g1"), 0o644))
	must(t, os.Symlink("/etc/passwd", filepath.Join(mnt, "d1", "link-a")))
	must(t, os.Symlink("../payroll.xlsx", filepath.Join(mnt, "d1", "link-b")))
}

// mountUntil mounts w and returns an unmount function that is safe to
// call once by the test and again by Cleanup (after a failure).
func mountUntil(t *testing.T, w *world) (string, func()) {
	t.Helper()
	mnt, unmount := w.mountOnce(t)
	done := false
	stop := func() {
		if !done {
			done = true
			unmount()
		}
	}
	t.Cleanup(stop)
	return mnt, stop
}

// replaceFile puts src's content in place of dst (read-only files in the
// cipher directory are made writable first).
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	must(t, err)
	_ = os.Chmod(dst, 0o600)
	must(t, os.WriteFile(dst, b, 0o600))
}

func TestNamesBoundToDirectories(t *testing.T) {
	type check struct {
		op   string // "ls", "stat", "read", "readlink"
		path string
		want error // nil: must succeed; else the errno
	}
	tests := []struct {
		name   string
		plant  func(t *testing.T, tr *names.Transform, cipher string)
		checks []check
		log    string
	}{
		{
			// The reported attack: the root's IV over two subdirectories'.
			name: "root IV copied over two subdirectories' IVs",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				root, _, _ := cipherWalk(t, tr, c, "")
				for _, d := range []string{"d1", "d2"} {
					p, _, _ := cipherWalk(t, tr, c, d)
					replaceFile(t, filepath.Join(root, names.DirIVFile), filepath.Join(p, names.DirIVFile))
				}
			},
			checks: []check{{"ls", "d1", syscall.EIO}, {"ls", "d2", syscall.EIO}, {"read", "d1/payroll.xlsx", syscall.EIO},
				{"read", "payroll.xlsx", nil}, {"ls", "", nil}},
			log: "directory IV unreadable",
		},
		{
			name: "IV files of two sibling directories swapped",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				p1, _, _ := cipherWalk(t, tr, c, "d1")
				p2, _, _ := cipherWalk(t, tr, c, "d2")
				a, b := filepath.Join(p1, names.DirIVFile), filepath.Join(p2, names.DirIVFile)
				must(t, os.Rename(a, a+".x"))
				must(t, os.Rename(b, a))
				must(t, os.Rename(a+".x", b))
			},
			checks: []check{{"ls", "d1", syscall.EIO}, {"ls", "d2", syscall.EIO}, {"stat", "d2/payroll.xlsx", syscall.EIO}},
			log:    "does not authenticate",
		},
		{
			name: "IV truncated",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				p, _, _ := cipherWalk(t, tr, c, "d1")
				_ = os.Chmod(filepath.Join(p, names.DirIVFile), 0o600)
				must(t, os.Truncate(filepath.Join(p, names.DirIVFile), 16))
			},
			checks: []check{{"ls", "d1", syscall.EIO}, {"ls", "d2", nil}},
			log:    "directory IV unreadable",
		},
		{
			name: "file moved to another directory",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				src, _, stored := cipherWalk(t, tr, c, "d1/only-in-d1")
				d2, _, _ := cipherWalk(t, tr, c, "d2")
				must(t, os.Rename(src, filepath.Join(d2, stored)))
			},
			checks: []check{{"stat", "d2/only-in-d1", syscall.ENOENT}, {"stat", "d1/only-in-d1", syscall.ENOENT}, {"ls", "d2", nil}},
			log:    "skipping a directory entry",
		},
		{
			name: "file swapped for another directory's file of the same plaintext name",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				// d1's payroll.xlsx put under d2's cipher name of payroll.xlsx:
				// the names are d2's, so this is a content swap; and d1's
				// cipher name moved into d2 does not decrypt there.
				src, _, stored := cipherWalk(t, tr, c, "d1/payroll.xlsx")
				d2, _, _ := cipherWalk(t, tr, c, "d2")
				must(t, os.Rename(src, filepath.Join(d2, stored)))
			},
			checks: []check{{"stat", "d1/payroll.xlsx", syscall.ENOENT}, {"read", "d2/payroll.xlsx", nil}, {"ls", "d2", nil}},
			log:    "skipping a directory entry",
		},
		{
			name: "directory moved to another parent",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				src, _, stored := cipherWalk(t, tr, c, "d1/sub")
				d2sub, _, _ := cipherWalk(t, tr, c, "d2/sub")
				must(t, os.RemoveAll(d2sub))
				must(t, os.Rename(src, filepath.Join(filepath.Dir(d2sub), stored)))
			},
			checks: []check{{"stat", "d1/sub", syscall.ENOENT}, {"ls", "d2", nil}, {"stat", "d2/sub", syscall.ENOENT}},
			log:    "skipping a directory entry",
		},
		{
			name: "directory put in place of another parent's directory of the same name",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				src, _, _ := cipherWalk(t, tr, c, "d1/sub")
				dst, _, _ := cipherWalk(t, tr, c, "d2/sub")
				must(t, os.RemoveAll(dst))
				must(t, os.Rename(src, dst))
			},
			checks: []check{{"ls", "d2/sub", syscall.EIO}, {"read", "d2/sub/g", syscall.EIO}},
			log:    "directory IV unreadable",
		},
		{
			name: "two sibling directories renamed into each other's names",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				p1, _, _ := cipherWalk(t, tr, c, "d1")
				p2, _, _ := cipherWalk(t, tr, c, "d2")
				must(t, unix.Renameat2(unix.AT_FDCWD, p1, unix.AT_FDCWD, p2, unix.RENAME_EXCHANGE))
			},
			checks: []check{{"ls", "d1", syscall.EIO}, {"ls", "d2", syscall.EIO}},
			log:    "directory IV unreadable",
		},
		{
			name: "long name moved with its sidecar to another directory",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				src, _, stored := cipherWalk(t, tr, c, "d1/"+longPlain)
				d2, _, _ := cipherWalk(t, tr, c, "d2")
				for _, n := range []string{stored, names.Sidecar(stored)} {
					must(t, os.Rename(filepath.Join(filepath.Dir(src), n), filepath.Join(d2, n+"x")))
				}
				// Under d2's own long name's stored name, replacing it.
				_, _, d2stored := cipherWalk(t, tr, c, "d2/"+longPlain)
				must(t, os.Rename(filepath.Join(d2, stored+"x"), filepath.Join(d2, d2stored)))
				must(t, os.Rename(filepath.Join(d2, names.Sidecar(stored)+"x"), filepath.Join(d2, names.Sidecar(d2stored))))
			},
			checks: []check{{"stat", "d2/" + longPlain, syscall.EIO}, {"stat", "d1/" + longPlain, syscall.ENOENT}, {"ls", "d2", nil}},
			log:    "does not match its name",
		},
		{
			name: "sidecar swapped with another directory's",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				p1, _, s1 := cipherWalk(t, tr, c, "d1/"+longPlain)
				p2, _, s2 := cipherWalk(t, tr, c, "d2/"+longPlain)
				replaceFile(t, filepath.Join(filepath.Dir(p2), names.Sidecar(s2)), filepath.Join(filepath.Dir(p1), names.Sidecar(s1)))
			},
			checks: []check{{"stat", "d1/" + longPlain, syscall.EIO}, {"read", "d2/" + longPlain, nil}},
			log:    "does not match its name",
		},
		{
			name: "symlink target copied to another symlink",
			plant: func(t *testing.T, tr *names.Transform, c string) {
				a, _, _ := cipherWalk(t, tr, c, "d1/link-a")
				b, _, _ := cipherWalk(t, tr, c, "d1/link-b")
				target, err := os.Readlink(a)
				must(t, err)
				must(t, os.Remove(b))
				must(t, os.Symlink(target, b))
			},
			// The lookup reads the target for the size: ENOENT there.
			checks: []check{{"readlink", "d1/link-b", syscall.ENOENT}, {"readlink", "d1/link-a", nil}},
			log:    "does not authenticate here",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			mnt, unmount := mountUntil(t, w)
			namesTree(t, mnt)
			unmount()
			tt.plant(t, volumeNames(t, w), w.cipher)
			mnt, _ = w.mount(t)
			for _, c := range tt.checks {
				p := filepath.Join(mnt, c.path)
				var err error
				switch c.op {
				case "ls":
					_, err = os.ReadDir(p)
				case "stat":
					_, err = os.Stat(p)
				case "read":
					_, err = os.ReadFile(p)
				case "readlink":
					_, err = os.Readlink(p)
				}
				if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
					t.Errorf("%s %s: %v, want %v", c.op, c.path, err, c.want)
				}
			}
			if !strings.Contains(w.log.String(), tt.log) {
				t.Errorf("the mount did not log %q:\n%s", tt.log, w.log.String())
			}
		})
	}
}

// TestEqualNamesDifferAcrossDirectories: the same name in three
// directories has three cipher names (what the copied root IV defeated).
func TestEqualNamesDifferAcrossDirectories(t *testing.T) {
	w := newWorld(t)
	mnt, f := w.mount(t)
	namesTree(t, mnt)
	var stored []string
	for _, p := range []string{"payroll.xlsx", "d1/payroll.xlsx", "d2/payroll.xlsx"} {
		_, _, s := cipherWalk(t, f.cfg.Names, w.cipher, p)
		stored = append(stored, s)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(stored)))) != 3 {
		t.Errorf("equal names share cipher names: %v", stored)
	}
}

// TestRenamesKeepNamesBound: directories and symlinks renamed through the
// mount (across directories, onto existing entries, exchanged) read back
// on a fresh mount: the directory's IV file was sealed for its new place,
// the symlink's target for its new entry.
func TestRenamesKeepNamesBound(t *testing.T) {
	w := newWorld(t)
	mnt, unmount := mountUntil(t, w)
	namesTree(t, mnt)
	in := func(p string) string { return filepath.Join(mnt, p) }
	must(t, os.Rename(in("d1/sub"), in("d2/moved-sub")))
	must(t, os.Rename(in("d1/link-a"), in("d2/link-moved")))
	must(t, os.Rename(in("d1/link-b"), in("d1/"+longPlain+"-link")))
	if err := os.Link(in("d2/link-moved"), in("link-hard")); err != nil {
		t.Fatalf("%v\n%s", err, w.log.String())
	}
	must(t, os.Mkdir(in("empty"), 0o755))
	// Over an empty directory (os.Rename refuses a directory target).
	if err := unix.Rename(in("d2/sub"), in("empty")); err != nil {
		t.Fatalf("%v\n%s", err, w.log.String())
	}
	must(t, unix.Renameat2(unix.AT_FDCWD, in("d1"), unix.AT_FDCWD, in("d2"), unix.RENAME_EXCHANGE))
	if err := unix.Renameat2(unix.AT_FDCWD, in("d1/link-moved"), unix.AT_FDCWD, in("d2/only-in-d1"), unix.RENAME_EXCHANGE); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("exchange of a symlink: %v, want EINVAL", err)
	}
	must(t, os.Rename(in("d1"), in(longPlain+"-dir")))
	unmount()

	mnt, f := w.mount(t)
	in = func(p string) string { return filepath.Join(mnt, p) }
	// d1 and d2 were exchanged, then the new d1 (the old d2) renamed.
	ld := longPlain + "-dir"
	for p, want := range map[string]string{
		ld + "/moved-sub/g":         "g1",
		ld + "/payroll.xlsx":        "salaries of d2",
		"d2/only-in-d1":             "one",
		"d2/payroll.xlsx":           "salaries of d1",
		"d2/" + longPlain + "-link": "salaries of ", // ../payroll.xlsx, from d2
	} {
		b, err := os.ReadFile(in(p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	for p, want := range map[string]string{ld + "/link-moved": "/etc/passwd", "link-hard": "/etc/passwd"} {
		if got, err := os.Readlink(in(p)); err != nil || got != want {
			t.Errorf("readlink %s: %q, %v", p, got, err)
		}
	}
	if _, err := os.Stat(in("empty")); err != nil {
		t.Errorf("directory renamed over an empty one: %v", err)
	}
	for _, d := range []string{"", "d2", ld, ld + "/moved-sub", "empty"} {
		if _, err := cipherDirID(t, f, d); err != nil {
			t.Errorf("IV of %q: %v", d, err)
		}
	}
	if n := f.Stats().BadNames.Load(); n != 0 {
		t.Errorf("%d bad names after renames", n)
	}
}

// TestInterruptedDirectoryRename: a crash after the directory moved but
// before its IV file was replaced is completed on the next access, and
// one before the move leaves the directory readable where it was.
func TestInterruptedDirectoryRename(t *testing.T) {
	w := newWorld(t)
	mnt, unmount := mountUntil(t, w)
	namesTree(t, mnt)
	unmount()
	tr := volumeNames(t, w)
	// Crash after the rename: prepare, rename in the cipher directory as
	// the mount would, no commit.
	src, parent, _ := cipherWalk(t, tr, w.cipher, "d1/sub")
	_, d2ID, _ := cipherWalk(t, tr, w.cipher, "d2/x")
	d2, _, _ := cipherWalk(t, tr, w.cipher, "d2")
	enc, err := tr.Encrypt("renamed", d2ID)
	must(t, err)
	newStored, _ := names.Stored(enc)
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	id, _, err := tr.ReadDirID(fd, names.ChildLoc(parent, filepath.Base(src)))
	must(t, err)
	must(t, tr.PrepareMove(fd, id, names.ChildLoc(d2ID, newStored)))
	must(t, os.Rename(src, filepath.Join(d2, newStored)))
	// Crash before a rename: d1's own IV has a pending file for elsewhere.
	d1, d1Parent, d1Stored := cipherWalk(t, tr, w.cipher, "d1")
	fd1, err := unix.Open(d1, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd1)
	d1ID, _, err := tr.ReadDirID(fd1, names.ChildLoc(d1Parent, d1Stored))
	must(t, err)
	must(t, tr.PrepareMove(fd1, d1ID, names.ChildLoc(d1Parent, "elsewhere")))

	mnt, _ = w.mount(t)
	if b, err := os.ReadFile(filepath.Join(mnt, "d2/renamed/g")); err != nil || string(b) != "g1" {
		t.Errorf("the interrupted rename's directory: %q, %v", b, err)
	}
	if !strings.Contains(w.log.String(), "completed an interrupted directory rename") {
		t.Errorf("recovery not logged:\n%s", w.log.String())
	}
	if _, err := os.Stat(filepath.Join(d2, newStored, names.DirIVNextFile)); !os.IsNotExist(err) {
		t.Errorf("pending IV left after recovery: %v", err)
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "d1"))
	if err != nil || len(ents) == 0 {
		t.Errorf("d1 with a stale pending IV: %v, %v", ents, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), names.ReservedPrefix) {
			t.Errorf("listing shows %q", e.Name())
		}
	}
	// And it can still be removed once emptied, pending file and all.
	must(t, os.RemoveAll(filepath.Join(mnt, "d1")))
}

// longPlain is a name stored as a long name (with a sidecar).
var longPlain = strings.Repeat("N", 200)

// namesHostileCases are the rows of the hostile-storage suite
// (hostile_test.go) for names bound to their directories: on its standard
// tree (d/f, d/sub/g, d/<longName>), IV files copied or swapped, entries
// moved between directories, a sidecar swapped, a symlink target copied.
// Every call must give EIO or ENOENT (or succeed where marked OK) and the
// mount must log it.
func namesHostileCases() []hostileCase {
	subContent := []hop{
		{Op: "ls", Path: "d/sub"}, {Op: "stat", Path: "d/sub/g"}, {Op: "read", Path: "d/sub/g"},
		{Op: "chmod", Path: "d/sub/g"}, {Op: "create", Path: "d/sub/new"}, {Op: "mkdir", Path: "d/sub/newdir"},
		{Op: "symlink", Path: "d/sub/sl"}, {Op: "rename", Path: "d/sub/g", Arg: "d/sub/g2"},
		{Op: "unlink", Path: "d/sub/g"}, {Op: "stat", Path: "d/sub", OK: true},
	}
	// copyIV puts the IV file of plaintext directory from ("" for the
	// root) in place of d/sub's.
	copyIV := func(from string) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			src := h.w.cipher
			if from != "" {
				src = h.cipher(t, from)
			}
			replaceFile(t, filepath.Join(src, names.DirIVFile), filepath.Join(h.cipher(t, "d/sub"), names.DirIVFile))
			return "does not authenticate"
		}
	}
	// move renames the cipher entry of plaintext path from (and its
	// sidecar) into the cipher directory of plaintext directory to,
	// keeping its cipher name.
	move := func(from, to string, long bool) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			src := h.cipher(t, from)
			dst := h.w.cipher
			if to != "" {
				dst = h.cipher(t, to)
			}
			must(t, os.Rename(src, filepath.Join(dst, filepath.Base(src))))
			if long {
				must(t, os.Rename(src+names.LongNameSuffix, filepath.Join(dst, filepath.Base(src)+names.LongNameSuffix)))
			}
			return "skipping a directory entry"
		}
	}
	return []hostileCase{
		{name: "IV file copied from the root", plant: copyIV(""), ops: subContent},
		{name: "IV file copied from the parent directory", plant: copyIV("d"), ops: subContent},
		{name: "IV files of a directory and its parent swapped", plant: func(t *testing.T, h *hostile) string {
			a, b := filepath.Join(h.cipher(t, "d"), names.DirIVFile), filepath.Join(h.cipher(t, "d/sub"), names.DirIVFile)
			must(t, os.Rename(a, a+".x"))
			must(t, os.Rename(b, a))
			must(t, os.Rename(a+".x", b))
			return "does not authenticate"
		}, ops: append(subContent[:len(subContent)-1], hop{Op: "ls", Path: "d"}, hop{Op: "read", Path: "d/f"})},
		{name: "file moved in from another directory", plant: move("d/sub/g", "d", false),
			ops: []hop{{Op: "ls", Path: "d", OK: true}, {Op: "stat", Path: "d/g"}, {Op: "read", Path: "d/g"}, {Op: "stat", Path: "d/sub/g"}}},
		{name: "file moved in from another directory, directories cached", plant: move("d/sub/g", "d", false), live: true,
			warm: []string{"d/f", "d/sub/g"},
			ops:  []hop{{Op: "ls", Path: "d", OK: true}, {Op: "stat", Path: "d/g"}, {Op: "read", Path: "d/g"}, {Op: "read", Path: "d/sub/g"}}},
		{name: "directory moved in from another directory", plant: move("d/sub", "", false),
			ops: []hop{{Op: "ls", Path: ".", OK: true}, {Op: "stat", Path: "sub"}, {Op: "ls", Path: "sub"}, {Op: "read", Path: "sub/g"}, {Op: "stat", Path: "d/sub"}}},
		{name: "long name moved with its sidecar to another directory", plant: move("d/"+longName, "d/sub", true),
			ops: []hop{{Op: "ls", Path: "d/sub", OK: true}, {Op: "stat", Path: "d/sub/" + longName}, {Op: "read", Path: "d/sub/" + longName}, {Op: "stat", Path: "d/" + longName}}},
		{name: "sidecar swapped for another long name's", plant: func(t *testing.T, h *hostile) string {
			// What the sidecar of another long name in d would hold.
			tr := volumeNames(t, h.w)
			_, dID, _ := cipherWalk(t, tr, h.w.cipher, "d/x")
			other, err := tr.Encrypt(strings.Repeat("M", 220), dID)
			must(t, err)
			sc := h.cipher(t, "d/"+longName) + names.LongNameSuffix
			_ = os.Chmod(sc, 0o600)
			must(t, os.WriteFile(sc, []byte(other), 0o400))
			return "does not match its name"
		}, ops: fileOps("d/"+longName, "readlink")},
		{name: "symlink target copied from another symlink", plant: func(t *testing.T, h *hostile) string {
			// The target sealed for d/sl2, stored as d/sl1.
			tr := volumeNames(t, h.w)
			_, dID, sl2 := cipherWalk(t, tr, h.w.cipher, "d/sl2")
			sealed, err := tr.EncryptSymlink("/etc/passwd", dID, sl2)
			must(t, err)
			must(t, os.Symlink(sealed, h.cipher(t, "d/sl1")))
			return "does not authenticate here"
		}, ops: []hop{{Op: "ls", Path: "d", OK: true}, {Op: "readlink", Path: "d/sl1"}, {Op: "stat", Path: "d/sl1"}, {Op: "read", Path: "d/sl1"}}},
	}
}
