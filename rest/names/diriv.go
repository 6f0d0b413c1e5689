package names

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// DirIVSize is the size of a directory's IV, the EME tweak of its names.
const DirIVSize = cryptocore.EMETweakSize

// DirIV is a directory's random IV. Two directories' IVs differ (with
// overwhelming probability), so equal names in them encrypt differently.
type DirIV [DirIVSize]byte

// ErrBadDirIV: a cipher directory's IV file is missing or malformed.
var ErrBadDirIV = errors.New("directory IV file (" + DirIVFile + ") missing or malformed: the cipher directory is damaged or not a tencrypt volume")

// NewDirIV returns a random IV.
func NewDirIV() DirIV {
	var iv DirIV
	_, _ = rand.Read(iv[:])
	return iv
}

// ReadDirIV reads the IV of the cipher directory dir.
func ReadDirIV(dir string) (DirIV, error) {
	var iv DirIV
	f, err := os.Open(filepath.Join(dir, DirIVFile))
	if err != nil {
		return iv, fmt.Errorf("%s: %w: %w", dir, ErrBadDirIV, err)
	}
	defer f.Close()
	var buf [DirIVSize + 1]byte
	n, err := io.ReadFull(f, buf[:])
	if n != DirIVSize || err != io.ErrUnexpectedEOF {
		return iv, fmt.Errorf("%s: %w: %d bytes", dir, ErrBadDirIV, n)
	}
	copy(iv[:], buf[:])
	return iv, nil
}

// WriteDirIV creates the IV file of the new cipher directory dir with a
// fresh IV, synced, read-only. It never replaces an existing IV, which
// would make every name in dir undecryptable.
func WriteDirIV(dir string) (DirIV, error) {
	return iv(dir, NewDirIV())
}

// RestoreDirIV writes iv back into dir (undoing a failed rmdir).
func RestoreDirIV(dir string, v DirIV) error {
	_, err := iv(dir, v)
	return err
}

func iv(dir string, v DirIV) (DirIV, error) {
	f, err := os.OpenFile(filepath.Join(dir, DirIVFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return v, fmt.Errorf("create the directory IV of %s: %w", dir, err)
	}
	_, err = f.Write(v[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return v, fmt.Errorf("write the directory IV of %s: %w", dir, err)
	}
	return v, nil
}
