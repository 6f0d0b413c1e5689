package pkcs11

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/tencrypt/tencrypt/keys"
)

// mapErr turns a PKCS#11 return value from op into an error wrapping the
// keys sentinel that callers branch on. A wrong PIN is ErrAuth, as a wrong
// passphrase is for the local keyring: the credentials themselves are bad.
// ErrPermissionDenied is kept for credentials that are good but not allowed.
func mapErr(op string, err error) error {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return fmt.Errorf("pkcs11: %s: %w", op, err)
	}
	switch rv {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		return fmt.Errorf("%w: %s: the token refused the PIN (%w)", keys.ErrAuth, op, err)
	case pkcs11.CKR_PIN_LOCKED:
		return fmt.Errorf("%w: %s: the token's user PIN is locked after too many wrong tries: its security officer must reset it", keys.ErrPermissionDenied, op)
	case pkcs11.CKR_PIN_EXPIRED:
		return fmt.Errorf("%w: %s: the token's user PIN has expired: set a new one", keys.ErrPermissionDenied, op)
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return fmt.Errorf("%w: %s: the token has no user PIN yet: its security officer must set one (softhsm2-util --init-token sets both)", keys.ErrPermissionDenied, op)
	case pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_USER_TYPE_INVALID, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
		return fmt.Errorf("%w: %s: %w", keys.ErrPermissionDenied, op, err)
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID:
		return fmt.Errorf("pkcs11: %s: the token does not support AES-GCM with a 96-bit IV and a 128-bit tag, which tencrypt needs: %w", op, err)
	case pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_FUNCTION_CANCELED, pkcs11.CKR_HOST_MEMORY:
		return fmt.Errorf("%w: %s: %w", keys.ErrBackendUnavailable, op, err)
	}
	return fmt.Errorf("pkcs11: %s: %w", op, err)
}

// sessionLost reports whether err means the session is gone, so that the
// pool drops it instead of reusing it.
func sessionLost(err error) bool {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch rv {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_USER_NOT_LOGGED_IN:
		return true
	}
	return false
}

// decryptFailed reports whether a C_DecryptInit or C_Decrypt error means
// the ciphertext did not authenticate. SoftHSM2 returns CKR_GENERAL_ERROR
// for a GCM tag mismatch; the specification's codes are the other two.
func decryptFailed(err error) bool {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch rv {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR:
		return true
	}
	return false
}
