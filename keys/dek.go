package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// DEKSize is the size of a data-encryption key: 256 bits.
const DEKSize = 32

// DEK is a data-encryption key. It is a fixed-size array so that it can be
// zeroed in place: callers defer Zero as soon as they hold one. Every way of
// printing it (String, GoString, Format for every verb, LogValue) gives a
// redacted placeholder, so %v, %+v, %#v, %x and slog never show its bytes.
type DEK [DEKSize]byte

// newDEK draws a DEK from the operating system's CSPRNG.
func newDEK() DEK {
	var d DEK
	// crypto/rand.Read cannot fail since Go 1.24; it crashes instead.
	_, _ = rand.Read(d[:])
	return d
}

// Bytes returns the key bytes, aliasing d: they are valid until d.Zero and
// must not be retained or logged.
func (d *DEK) Bytes() []byte { return d[:] }

// Zero overwrites the key with zeros (best effort: copies made by value
// passing are not reached).
func (d *DEK) Zero() { clear(d[:]) }

// Equal compares two DEKs in constant time.
func (d *DEK) Equal(o *DEK) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

const dekRedacted = "keys.DEK(REDACTED)"

// String never returns key bytes.
func (DEK) String() string { return dekRedacted }

// GoString never returns key bytes.
func (DEK) GoString() string { return dekRedacted }

// Format prints the placeholder for every verb; without it %x would print
// the array.
func (DEK) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(dekRedacted)) }

// LogValue keeps slog from printing key bytes.
func (DEK) LogValue() slog.Value { return slog.StringValue(dekRedacted) }

// MarshalText keeps encoders (JSON, YAML, slog's JSON handler reaching a
// DEK inside a struct) from writing key bytes: a DEK is never serialised,
// only wrapped.
func (DEK) MarshalText() ([]byte, error) { return []byte(dekRedacted), nil }
