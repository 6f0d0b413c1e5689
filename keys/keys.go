// Package keys is tencrypt's key hierarchy: one key-encryption key (KEK) per
// tenant, held in a KMS behind a KEKProvider, and data-encryption keys (DEKs)
// wrapped by it. Every plane takes its keys from here.
//
// A KEKProvider never hands out a KEK: it seals and opens small secrets (DEKs)
// under the tenant's KEK inside the backend (the local keyring's memory, Vault
// Transit, a PKCS#11 token). KEKs are versioned; Wrap always uses the newest
// version and Unwrap takes the version recorded with the ciphertext, so data
// wrapped before a rotation stays readable until its version is retired.
package keys

import (
	"context"
	"errors"
	"regexp"
	"time"
)

// Errors callers branch on; match them with errors.Is. Backends wrap them with
// detail (%w), and never reveal which part of an authentication check failed.
var (
	// ErrAuth: a ciphertext did not authenticate under the KEK version it
	// names, with the associated data given: tampered, or wrapped for another
	// tenant or purpose. Also a wrong passphrase for the local keyring.
	ErrAuth = errors.New("authentication failed: wrong key, or the data was tampered with")
	// ErrUnknownTenant: the backend holds no KEK for this tenant.
	ErrUnknownTenant = errors.New("unknown tenant")
	// ErrTenantExists: CreateTenant on a tenant that already has a KEK.
	ErrTenantExists = errors.New("tenant already exists")
	// ErrUnknownKeyVersion: the tenant exists but has no such KEK version
	// (never created, or retired).
	ErrUnknownKeyVersion = errors.New("unknown key version")
	// ErrBackendUnavailable: the KMS could not be reached or did not answer;
	// retrying later may work.
	ErrBackendUnavailable = errors.New("key backend unavailable")
	// ErrPermissionDenied: the credentials are valid but not for this tenant
	// or this operation.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrShredded: the tenant's KEKs were destroyed on purpose; nothing
	// wrapped under them can be recovered.
	ErrShredded = errors.New("tenant keys were shredded: its data cannot be decrypted by anyone")
	// ErrInvalidTenant: the tenant name is not a DNS-1123 label.
	ErrInvalidTenant = errors.New("invalid tenant name: want a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters)")
)

// MaxWrapSize is the largest plaintext a KEKProvider must accept in Wrap.
// DEKs are 32 bytes; the margin leaves room for a key with its own header.
const MaxWrapSize = 64

// KEKProvider is a KMS backend holding the tenants' KEKs. Implementations are
// safe for concurrent use. Every method takes ctx first because each may
// block on the network or a token; a cancelled ctx ends the call with
// ctx.Err() wrapped in ErrBackendUnavailable.
//
// A provider is opened with some credentials. Admin credentials may create,
// rotate, retire and shred; tenant-scoped credentials may only Wrap, Unwrap
// and read versions of their own tenant, and get ErrPermissionDenied (or
// ErrUnknownTenant, where the backend cannot tell the two apart) for any other.
type KEKProvider interface {
	// Name is the backend's name as recorded in wrapped keys: "local",
	// "vault" or "pkcs11". It never changes for a provider.
	Name() string

	// CreateTenant creates version 1 of the tenant's KEK. It returns
	// ErrTenantExists if the tenant has one already, and ErrShredded if the
	// tenant was shredded (a shredded name is never reused, so old
	// ciphertexts can never open under a new key).
	CreateTenant(ctx context.Context, tenant string) error
	// Rotate adds a new KEK version and makes it current; it returns the new
	// version. Older versions stay usable for Unwrap.
	Rotate(ctx context.Context, tenant string) (uint32, error)
	// Tenant reports a tenant's KEK versions.
	Tenant(ctx context.Context, tenant string) (TenantInfo, error)
	// Tenants lists the tenants visible with these credentials.
	Tenants(ctx context.Context) ([]TenantInfo, error)
	// Retire destroys every KEK version of the tenant below minVersion.
	// Callers check first that nothing references them (see Envelope).
	// minVersion must not exceed the current version.
	Retire(ctx context.Context, tenant string, minVersion uint32) error
	// Shred destroys every KEK version of the tenant. Afterwards Wrap and
	// Unwrap for it fail with ErrShredded.
	Shred(ctx context.Context, tenant string) error

	// Wrap seals plaintext (at most MaxWrapSize bytes) under the tenant's
	// current KEK with an AEAD that authenticates aad, and returns the KEK
	// version used and the ciphertext. The caller owns both slices; the
	// provider keeps no reference to plaintext after returning.
	Wrap(ctx context.Context, tenant string, plaintext, aad []byte) (version uint32, ciphertext []byte, err error)
	// Unwrap opens a ciphertext made by Wrap with the same tenant, version
	// and aad. Any mismatch or modification gives ErrAuth, and nothing of
	// the plaintext is returned. The caller owns the returned slice and
	// should zero it after use.
	Unwrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) ([]byte, error)

	// Health returns nil when the backend answers and the credentials work.
	Health(ctx context.Context) error
	// Close releases connections and sessions. The provider is unusable after.
	Close() error
}

// Rewrapper is implemented by providers that can move a ciphertext to the
// current KEK version without the plaintext leaving the backend (Vault's
// rewrap). Envelope falls back to Unwrap and Wrap in this process otherwise.
type Rewrapper interface {
	Rewrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) (newVersion uint32, newCiphertext []byte, err error)
}

// TenantInfo describes a tenant's KEK versions; it holds no key material.
type TenantInfo struct {
	Tenant string `json:"tenant"`
	// Current is the version Wrap uses.
	Current uint32 `json:"current_version"`
	// MinVersion is the oldest version still available for Unwrap.
	MinVersion uint32 `json:"min_version"`
	// Created is when the tenant's first KEK was made, if the backend knows.
	Created time.Time `json:"created,omitzero"`
	// Shredded is true for a tenant whose keys were destroyed.
	Shredded bool `json:"shredded,omitempty"`
}

var tenantRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidTenant reports ErrInvalidTenant unless tenant is a DNS-1123 label, the
// form of a Kubernetes namespace name. Backends call it before using a name
// in a path, a key label or a file name.
func ValidTenant(tenant string) error {
	if !tenantRE.MatchString(tenant) {
		return ErrInvalidTenant
	}
	return nil
}
