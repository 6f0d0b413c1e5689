package fusefs

// What renames and links need because names are bound to their place
// (docs/NAMES.md, format 2): a directory's IV file is sealed again for its
// new place, and a symlink's target for its new entry.

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// entryKind is the file type (S_IF*) of entry stored of d, not following
// a symlink.
func entryKind(d cdir, stored string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, stored, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	return st.Mode & syscall.S_IFMT, nil
}

// prepareDirMove opens directory stored of d, reads its ID (sealed for
// where it is) and writes its IV sealed for the place toStored in the
// directory whose ID is toID, pending until commitDirMoves. Close the
// returned directory.
func (f *FS) prepareDirMove(d cdir, stored string, toID names.DirID, toStored string) (cdir, error) {
	c, err := openChildDir(d, stored)
	if err != nil {
		return cdir{}, err
	}
	id, err := f.readDirIV(c, names.ChildLoc(d.iv, stored))
	if err == nil {
		err = f.cfg.Names.PrepareMove(c.fd, id, names.ChildLoc(toID, toStored))
	}
	if err != nil {
		c.close()
		return cdir{}, err
	}
	return c, nil
}

// commitDirMoves finishes the renames of the moved directories: the
// parents are synced, so the rename is on disk before the IV files name
// the new place, then each pending IV replaces the old one. A failure here
// is logged and left to the recovery of the next read (names.ReadDirID).
func (f *FS) commitDirMoves(from, to cdir, moves []cdir) {
	err := names.SyncDir(from.fd)
	if err == nil && to.fd != from.fd {
		err = names.SyncDir(to.fd)
	}
	for _, c := range moves {
		if err == nil {
			err = names.CommitMove(c.fd)
		}
		if err != nil {
			f.log.Error("a renamed directory's IV could not be committed; the next access completes it", "cipher_dir", f.abs(c.rel), "err", err)
		}
	}
}

// copySymlink makes symlink create in to with the target of symlink
// fromStored of from, sealed again for entry sealFor of to (create itself,
// or the name it will be renamed to), and the old one's owner and times.
// It never replaces an existing entry.
func (f *FS) copySymlink(from cdir, fromStored string, to cdir, create, sealFor string) error {
	target, err := f.readlinkAt(from, fromStored)
	if err != nil {
		return err
	}
	sealed, err := f.cfg.Names.EncryptSymlink(target, to.iv, sealFor)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(from.fd, fromStored, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := unix.Symlinkat(sealed, to.fd, create); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		_ = unix.Fchownat(to.fd, create, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	_ = unix.UtimesNanoAt(to.fd, create, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// moveSymlink renames symlink fromStored of from to toStored of to (with
// the caller's rename flags): its target is sealed for the new entry, so
// the new symlink is written under a temporary reserved name, renamed into
// place (atomically replacing what is there, unless flags forbid it), and
// the old one removed. A crash leaves at most a stray temporary entry
// (hidden from listings) or both links.
func (f *FS) moveSymlink(from cdir, fromStored string, to cdir, toStored string, flags uint32) error {
	tmp := names.TempName()
	if err := f.copySymlink(from, fromStored, to, tmp, toStored); err != nil {
		return err
	}
	if err := unix.Renameat2(to.fd, tmp, to.fd, toStored, uint(flags)); err != nil {
		unix.Unlinkat(to.fd, tmp, 0)
		return err
	}
	if err := unix.Unlinkat(from.fd, fromStored, 0); err != nil {
		f.log.Error("a renamed symlink's old entry could not be removed", "cipher_path", f.abs(from.join(fromStored)), "err", err)
	}
	return nil
}
