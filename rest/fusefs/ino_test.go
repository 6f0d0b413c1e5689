package fusefs

import (
	"syscall"
	"testing"
)

func TestInodeNumberFoldsTheDevice(t *testing.T) {
	f := &FS{rootDev: 0x801}
	own := f.inodeNumber(&syscall.Stat_t{Dev: 0x801, Ino: 42})
	if own != 42 {
		t.Errorf("an entry on the cipher directory's own file system: inode %d, want 42", own)
	}
	// The same inode number on another file system (a bind mount, a
	// snapshot) must not name the same node.
	other := f.inodeNumber(&syscall.Stat_t{Dev: 0x802, Ino: 42})
	if other == own {
		t.Error("two file systems' inode 42 got one FUSE inode number")
	}
}
