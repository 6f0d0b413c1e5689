package keys

import (
	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// DEKSize is the size of a data-encryption key: 256 bits.
const DEKSize = cryptocore.KeySize

// DEK is a data-encryption key. It is cryptocore.Key under the name callers
// of keys know it by, so tencrypt has one secret-key type: a fixed-size array
// zeroed in place (callers defer Zero as soon as they hold one), compared in
// constant time (Equal), and redacted by every way of printing it (String,
// GoString, Format for every verb, LogValue, MarshalText), so %v, %+v, %#v,
// %x, JSON and slog never show its bytes.
type DEK = cryptocore.Key

// newDEK draws a DEK from the operating system's CSPRNG.
func newDEK() DEK { return cryptocore.NewRandomKey() }
