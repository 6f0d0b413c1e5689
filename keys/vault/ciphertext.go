package vault

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
)

// A wrapped DEK is Vault's own ciphertext string, "vault:v<N>:<base64>",
// stored as bytes, so an operator can hand it to `vault write
// transit/decrypt` and Vault's rewrap takes it unchanged. <N> is the KEK
// version; <base64> is nonce ‖ AES-256-GCM ciphertext ‖ tag.
const ciphertextPrefix = "vault:v"

// maxCiphertext bounds what Unwrap sends to Vault: the prefix, a version and
// the base64 of a 12-byte nonce, MaxWrapSize bytes and a 16-byte tag, with
// room to spare.
const maxCiphertext = 64 + 4*(12+keys.MaxWrapSize+16)/3

// parseCiphertext reports whether ct is a Vault transit ciphertext and the
// KEK version it names. A wrapped key that does not parse was damaged; the
// caller answers it with the same keys.ErrAuth as one that does not
// authenticate.
func parseCiphertext(ct []byte) (uint32, bool) {
	if len(ct) > maxCiphertext {
		return 0, false
	}
	s, ok := strings.CutPrefix(string(ct), ciphertextPrefix)
	if !ok {
		return 0, false
	}
	num, body, ok := strings.Cut(s, ":")
	if !ok || num == "" || num[0] == '0' || body == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, false
	}
	if _, err := base64.StdEncoding.Strict().DecodeString(body); err != nil {
		return 0, false
	}
	return uint32(v), true
}
