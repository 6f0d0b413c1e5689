// Command tencrypt is the single binary of tencrypt: the node agent, the lab,
// and the key, file and volume tools. It only wires flags to packages; all
// work happens in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tencrypt: %v\n", err)
	}
	os.Exit(exitCode(err))
}

// usageError marks errors in the command line itself, as opposed to errors in
// the work it asked for.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps an error to the documented exit code (docs/CLI.md). It is the
// one place where error identities become numbers.
func exitCode(err error) int {
	if err == nil {
		return exitcodes.OK
	}
	for _, m := range errorCodes {
		if m.match(err) {
			return m.code
		}
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitcodes.Usage
	}
	return exitcodes.Failure
}

type errorCode struct {
	match func(error) bool
	code  int
}

// errorCodes is extended by the files that add commands, each for the errors
// of the package it wires in.
var errorCodes []errorCode

func registerErrorCode(target error, code int) {
	errorCodes = append(errorCodes, errorCode{
		match: func(err error) bool { return errors.Is(err, target) },
		code:  code,
	})
}
