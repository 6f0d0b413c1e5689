// Package exitcodes lists the process exit codes of the tencrypt binary.
//
// Scripts branch on these numbers, so they are part of the CLI's contract
// (docs/CLI.md): a number is never reused for another meaning, even after the
// condition it named is retired. 2 is left to the Go runtime, which exits
// with it on an unrecovered panic.
package exitcodes

const (
	// OK: the command did what it was asked.
	OK = 0
	// Failure: an error that no more specific code below describes.
	Failure = 1
	// 2 is reserved: the Go runtime exits with 2 on a panic.

	// Usage: wrong arguments or flags, or an invalid configuration or
	// topology file. Nothing was changed.
	Usage = 3
	// AuthFailed: authentication failed: a wrong passphrase or key, or data
	// (a wrapped key, a keyring, an encrypted file) that was tampered with.
	AuthFailed = 4
	// UnknownTenant: the tenant has no key in the backend.
	UnknownTenant = 5
	// UnknownKeyVersion: the data names a key version the backend lacks
	// (retired, or never created).
	UnknownKeyVersion = 6
	// BackendUnavailable: the KMS could not be reached or did not answer.
	BackendUnavailable = 7
	// PermissionDenied: the credentials are valid but do not allow this
	// operation (for example another tenant's key).
	PermissionDenied = 8
	// Shredded: the tenant's keys were destroyed on purpose; its data is
	// unrecoverable by design.
	Shredded = 9
	// UnknownFormat: the input is a tencrypt object of a version or suite
	// this binary does not know; upgrade tencrypt.
	UnknownFormat = 10
	// NotTencrypt: the input is not a tencrypt object at all.
	NotTencrypt = 11
	// NoSpace: the disk is full; the original data is untouched.
	NoSpace = 12
	// Prerequisite: the machine lacks something the command needs (root,
	// a kernel feature, a tool); the message names it.
	Prerequisite = 13
)
