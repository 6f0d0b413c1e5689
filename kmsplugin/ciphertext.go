package kmsplugin

import (
	"fmt"

	"github.com/tencrypt/tencrypt/keys"
)

// MaxCiphertextSize is KMS v2's limit on the ciphertext a plugin returns.
const MaxCiphertextSize = 1024

// ParseCiphertext checks what kube-apiserver hands back to Decrypt, without
// contacting the backend (docs/KMS-PLUGIN.md): the ciphertext must be one
// keys.WrappedKey blob for Purpose, no annotations may be present, and
// keyID must parse and name the blob's backend, key and KEK version. It
// returns the blob. It never returns part of the ciphertext in an error
// beyond the blob's public header bytes.
func ParseCiphertext(ct []byte, keyID string, annotations map[string][]byte) (keys.WrappedKey, error) {
	if len(annotations) != 0 {
		return keys.WrappedKey{}, fmt.Errorf("%w: %d annotations on the ciphertext; this plugin writes none", keys.ErrMalformed, len(annotations))
	}
	if len(ct) > MaxCiphertextSize {
		return keys.WrappedKey{}, fmt.Errorf("%w: ciphertext of %d bytes, over KMS v2's %d", keys.ErrMalformed, len(ct), MaxCiphertextSize)
	}
	id, err := ParseKeyID(keyID)
	if err != nil {
		return keys.WrappedKey{}, err
	}
	var wk keys.WrappedKey
	if err := wk.UnmarshalBinary(ct); err != nil {
		return keys.WrappedKey{}, fmt.Errorf("ciphertext: %w", err)
	}
	switch {
	case wk.Purpose != Purpose:
		return keys.WrappedKey{}, fmt.Errorf("%w: %v is not a KMS v2 seed (purpose %q)", keys.ErrMismatch, wk, Purpose)
	case wk.Provider != id.Backend || wk.Tenant != id.Key || wk.KEKVersion != id.Version:
		return keys.WrappedKey{}, fmt.Errorf("%w: key_id %s does not match %v", keys.ErrMismatch, keyID, wk)
	}
	return wk, nil
}
