// Package filecrypt encrypts, decrypts and inspects files and directory
// trees in the per-file format of rest/format: it plans which file goes
// where (Plan), streams each one through format.Writer or format.Reader with
// cancellation (EncryptStream, DecryptStream), overlaps disk I/O with the
// crypto on goroutines, and writes every output all or nothing
// (internal/atomicfile). It also measures itself (Bench).
//
// The CLI ('tencrypt file') binds its flags into Params and prints what this
// package returns; a CSI driver or any other caller gets the same behaviour
// through the same calls.
package filecrypt

import (
	"errors"
	"fmt"

	"github.com/tencrypt/tencrypt/rest/format"
)

// Suffix is added by encrypt and removed by decrypt.
const Suffix = ".tenc"

// copyBufSize is the buffer between input and the format's reader or
// writer: 64 blocks, so each read(2) or write(2) moves 256 KiB.
const copyBufSize = 64 * format.BlockSize

// Params are the caller's choices for Encrypt and Decrypt; the CLI binds its
// flags into them.
type Params struct {
	// Recursive walks directories given as sources.
	Recursive bool
	// Force lets an output replace an existing file.
	Force bool
	// Output is the output file, or a directory with Recursive or several
	// sources; "-" is the IO's Stdout; "" writes beside each source.
	Output string
	// Tenant is, for Encrypt, the tenant whose KEK wraps the files' keys
	// (required); for Decrypt, if set, the only tenant whose files are
	// decrypted (others fail with keys.ErrPermissionDenied).
	Tenant string
	// Caller names the process in audit records of unwraps.
	Caller string
}

// ErrUsage marks errors in what the caller asked for (a directory without
// Recursive, a name without the suffix, a missing source), as opposed to
// failures of the work itself. Match it with errors.Is.
var ErrUsage = errors.New("invalid request")

// ErrOutputExists: an output file is already there and Params.Force was not
// set. Nothing was written.
var ErrOutputExists = errors.New("output exists (use --force to replace it)")

// usageError keeps err's message and makes it match ErrUsage as well as
// what err wraps.
type usageError struct{ err error }

func (e usageError) Error() string   { return e.err.Error() }
func (e usageError) Unwrap() []error { return []error{e.err, ErrUsage} }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// JobsError is what Run returns when jobs failed: every failure was passed to
// IO.OnError as it happened, Err is the first, and the other jobs were still
// tried.
type JobsError struct {
	Err    error
	Failed int
}

func (e *JobsError) Error() string {
	if e.Failed == 1 {
		return e.Err.Error()
	}
	return fmt.Sprintf("%d files failed, the first: %v", e.Failed, e.Err)
}

func (e *JobsError) Unwrap() error { return e.Err }
