package cryptocore

import (
	"crypto/aes"
	"fmt"

	"github.com/rfjakob/eme"
)

// Sizes of EME, the wide-block mode of the name encryption.
const (
	// EMEBlockSize is the unit of EME input: inputs are a whole number of
	// AES blocks.
	EMEBlockSize = aes.BlockSize
	// EMETweakSize is the size of the tweak (the per-directory IV).
	EMETweakSize = aes.BlockSize
	// EMEMaxSize is the largest input EME accepts (128 AES blocks).
	EMEMaxSize = 128 * aes.BlockSize
)

// EME is AES-256 in EME mode (Halevi and Rogaway's ECB-Mix-ECB wide-block
// cipher), as gocryptfs uses for names, through github.com/rfjakob/eme. It
// is a tweakable, deterministic, length-preserving cipher without
// authentication: equal inputs under equal tweaks give equal outputs, and
// any change to the ciphertext garbles the whole plaintext. Safe for
// concurrent use.
type EME struct {
	c *eme.EMECipher
}

// NewEME returns EME under k; the caller may zero k afterwards.
func NewEME(k *Key) (*EME, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("cryptocore: AES-256: %w", err)
	}
	return &EME{c: eme.New(b)}, nil
}

func emeCheck(tweak, data []byte) error {
	if len(tweak) != EMETweakSize {
		return fmt.Errorf("cryptocore: EME tweak of %d bytes, want %d", len(tweak), EMETweakSize)
	}
	if len(data) == 0 || len(data)%EMEBlockSize != 0 || len(data) > EMEMaxSize {
		return fmt.Errorf("cryptocore: EME input of %d bytes, want a multiple of %d up to %d", len(data), EMEBlockSize, EMEMaxSize)
	}
	return nil
}

// Encrypt returns the encryption of data under tweak in a new slice.
// data must be a non-zero multiple of EMEBlockSize, at most EMEMaxSize.
func (e *EME) Encrypt(tweak, data []byte) ([]byte, error) {
	if err := emeCheck(tweak, data); err != nil {
		return nil, err
	}
	return e.c.Encrypt(tweak, data), nil
}

// Decrypt returns the decryption of data under tweak in a new slice. It
// cannot detect tampering: the caller checks the result's structure.
func (e *EME) Decrypt(tweak, data []byte) ([]byte, error) {
	if err := emeCheck(tweak, data); err != nil {
		return nil, err
	}
	return e.c.Decrypt(tweak, data), nil
}
