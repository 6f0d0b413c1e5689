package pkcs11

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
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

// writeFileAtomic writes data to path, mode 0600, all or nothing (see
// internal/atomicfile), running commit once the data is durable and before
// it appears at path. If commit fails, path is never created; path must not
// exist.
func writeFileAtomic(path string, data []byte, commit func() error) error {
	err := atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600, BeforeInstall: commit})
	if err != nil {
		return fmt.Errorf("pkcs11: writing %s: %w", path, err)
	}
	return nil
}
