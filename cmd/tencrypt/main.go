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
