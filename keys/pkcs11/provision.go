package pkcs11

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// newPIN draws a user PIN for a token CreateTenant initialises: 128 random
// bits in hex, well inside SoftHSM2's 4 to 255 bytes.
func newPIN() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pkcs11: drawing a PIN: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// writeFileAtomic writes data to path, mode 0600, all or nothing: a temp
// file beside it (O_EXCL), fsync, then commit, then rename and fsync of the
// directory. If commit fails the temp file is removed and path is never
// created; path must not exist (the rename would replace it).
func writeFileAtomic(path string, data []byte, commit func() error) (err error) {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hexRand())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("pkcs11: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pkcs11: writing %s: %w", path, err)
	}
	if err = commit(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pkcs11: writing %s: %w (the token was initialised: delete it before retrying)", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pkcs11: syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("pkcs11: syncing %s: %w", dir, err)
	}
	return nil
}

func hexRand() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
