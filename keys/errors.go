package keys

import "errors"

// Errors of the formats and the envelope layer, beside the provider errors in
// keys.go. Match them with errors.Is.
var (
	// ErrUnknownFormat: a tencrypt object (wrapped key, keyring) of a format
	// version this binary does not know; a newer tencrypt may read it.
	ErrUnknownFormat = errors.New("unknown format version: upgrade tencrypt to read it")
	// ErrMalformed: the input is not a well-formed tencrypt object: wrong
	// magic, truncated, trailing bytes or a field out of bounds.
	ErrMalformed = errors.New("malformed: not a tencrypt object, or truncated or corrupted")
	// ErrMismatch: a wrapped key was made by another provider or for
	// another purpose than the caller asked for.
	ErrMismatch = errors.New("wrapped key does not match: made by another backend or for another purpose")
	// ErrAudit: the audit record of an unwrap could not be written, so the
	// key was not released (fail closed).
	ErrAudit = errors.New("audit record could not be written; the key was not released")
)
