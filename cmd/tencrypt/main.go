// Command tencrypt is the single binary of tencrypt: the node agent, the lab,
// and the key, file and volume tools. It only wires flags to packages; all
// work happens in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/backend"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/lab"
	"github.com/tencrypt/tencrypt/rest/filecrypt"
	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
	volnames "github.com/tencrypt/tencrypt/rest/names"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns its exit code. Tests call it
// in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var ee exitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintf(stderr, "tencrypt: %v\n", err)
	}
	return exitCode(err)
}

// usageError marks errors in the command line itself, as opposed to errors in
// the work it asked for.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps an error to the documented exit code (docs/CLI.md). It is the
// one place where error identities become numbers: the first row of
// exitCodes that the error matches (errors.Is) wins, then the CLI's own
// error types.
func exitCode(err error) int {
	if err == nil {
		return exitcodes.OK
	}
	for _, m := range exitCodes {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	var ue usageError
	var ee exitError
	var pe prerequisiteError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		return exitcodes.Usage
	case errors.As(err, &pe):
		return exitcodes.Prerequisite
	}
	return exitcodes.Failure
}

// exitCodes is the table from the packages' errors to exit codes. Order
// matters where an error wraps several: the file format's before the keys'.
var exitCodes = []struct {
	err  error
	code int
}{
	// rest: the file format and the file commands.
	{format.ErrAuth, exitcodes.AuthFailed},
	// A header that is not well formed after a valid magic is a damaged or
	// tampered file, not a foreign one.
	{format.ErrMalformed, exitcodes.AuthFailed},
	{format.ErrNotTencrypt, exitcodes.NotTencrypt},
	{format.ErrUnknownVersion, exitcodes.UnknownFormat},
	{syscall.ENOSPC, exitcodes.NoSpace},
	{filecrypt.ErrOutputExists, exitcodes.Usage},

	// keys and their backends.
	{keys.ErrAuth, exitcodes.AuthFailed},
	{keys.ErrUnknownTenant, exitcodes.UnknownTenant},
	{keys.ErrUnknownKeyVersion, exitcodes.UnknownKeyVersion},
	{keys.ErrBackendUnavailable, exitcodes.BackendUnavailable},
	{keys.ErrPermissionDenied, exitcodes.PermissionDenied},
	{keys.ErrShredded, exitcodes.Shredded},
	{keys.ErrUnknownFormat, exitcodes.UnknownFormat},
	{keys.ErrMalformed, exitcodes.NotTencrypt},
	{keys.ErrMismatch, exitcodes.Usage},
	{keys.ErrInvalidTenant, exitcodes.Usage},
	{local.ErrConfig, exitcodes.Usage},
	{backend.ErrUnknownBackend, exitcodes.Usage},
	{vault.ErrConfig, exitcodes.Usage},

	// lab.
	{lab.ErrNotUp, exitcodes.Failure},
	{lab.ErrOtherTopology, exitcodes.Usage},
	{lab.ErrUnknownTarget, exitcodes.Usage},

	// Volumes and the mount.
	{volnames.ErrNoVolume, exitcodes.NotTencrypt},
	{volnames.ErrBadVolume, exitcodes.UnknownFormat},
	{volnames.ErrBadDirIV, exitcodes.UnknownFormat},
	{volnames.ErrVolumeExists, exitcodes.Usage},
	{errMountFailed, exitcodes.Prerequisite},

	// Requests the packages refuse before doing any work.
	{filecrypt.ErrUsage, exitcodes.Usage},
	{backend.ErrConfig, exitcodes.Usage},

	// fscrypt volumes (last: none of these wraps an error of a row above).
	{fscrypt.ErrUnsupported, exitcodes.Prerequisite},
	{fscrypt.ErrNotEmpty, exitcodes.Usage},
	{fscrypt.ErrNotVolume, exitcodes.NotTencrypt},
	{fscrypt.ErrUnknownVersion, exitcodes.UnknownFormat},
	// Metadata cut short, changed, or not the data directory's.
	{fscrypt.ErrBadMetadata, exitcodes.AuthFailed},
	{fscrypt.ErrWrongKey, exitcodes.AuthFailed},
	{fscrypt.ErrAlreadyUnlocked, exitcodes.Usage},
}

// exitError passes a child process's exit code through unchanged, without a
// message of our own (lab exec).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// prerequisiteError names something the machine lacks (exit 13).
type prerequisiteError struct{ msg string }

func (e prerequisiteError) Error() string { return e.msg }

func requireRoot(what string) error {
	if os.Geteuid() != 0 {
		return prerequisiteError{what + " needs root (it creates network namespaces): run it with sudo"}
	}
	return nil
}
