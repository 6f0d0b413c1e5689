// Package kmsplugin is a Kubernetes KMS v2 plugin over tencrypt's keys: it
// wraps the DEK seeds kube-apiserver draws for etcd under one cluster key of
// the key hierarchy (any keys.KEKProvider: local keyring, Vault, PKCS#11).
//
// KMS v2 requests carry no namespace, so all of etcd is protected by one key
// (Config.Key, "cluster-etcd" by default), never by a tenant's key. The
// ciphertext kube-apiserver stores is a keys.WrappedKey blob; the key_id names
// backend, key and KEK version (KeyID). The formats are in docs/KMS-PLUGIN.md.
// The package holds no crypto: keys.Envelope wraps, unwraps and audits.
package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"

	"github.com/tencrypt/tencrypt/keys"
)

const (
	// DefaultKey is the cluster key's default name in the key hierarchy.
	DefaultKey = "cluster-etcd"
	// Purpose is bound into every wrapped seed's associated data, so a seed
	// wrapped for etcd never opens as a file or volume key, nor the reverse.
	Purpose = "k8s-kms-v2"
	// APIVersion is what Status reports; kube-apiserver requires "v2".
	APIVersion = "v2"
	// SeedSize is the size of what kube-apiserver asks to encrypt: a 32-byte
	// DEK seed (or, with the KDF feature off, a 32-byte DEK).
	SeedSize = keys.DEKSize
	// statusTimeout bounds Status's call to the backend: kube-apiserver
	// polls every minute (every 10 s while unhealthy) and must hear
	// "unhealthy" rather than wait.
	statusTimeout = 5 * time.Second
)

// Config is what New needs.
type Config struct {
	// Envelope wraps and unwraps through the backend, and audits unwraps.
	Envelope *keys.Envelope
	// Key is the cluster key's name (a tenant name in the hierarchy);
	// empty means DefaultKey. Create it first: tencrypt keys create <key>.
	Key string
	// Metrics receives the plugin's collectors; nil registers nowhere.
	Metrics prometheus.Registerer
	// Log receives one line per failed operation; nil discards.
	Log *slog.Logger
}

// Plugin implements k8s.io/kms's service.Service. It is safe for concurrent
// use.
type Plugin struct {
	env *keys.Envelope
	key string
	log *slog.Logger
	m   *metrics

	// mu guards created: the key's creation time, learnt from the backend
	// on the first Status or Encrypt (it never changes for a key).
	mu      sync.Mutex
	created int64
	known   bool
}

var _ service.Service = (*Plugin)(nil)

// New returns a plugin over cfg.Envelope for the key cfg.Key. It does not
// contact the backend: kube-apiserver's first Status does.
func New(cfg Config) (*Plugin, error) {
	if cfg.Envelope == nil {
		return nil, errors.New("kmsplugin: no key envelope (BUG: the caller must open a backend)")
	}
	key := cfg.Key
	if key == "" {
		key = DefaultKey
	}
	if err := keys.ValidTenant(key); err != nil {
		return nil, fmt.Errorf("kmsplugin: cluster key name %q: %w", key, err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics()
	if cfg.Metrics != nil {
		if err := m.register(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("kmsplugin: metrics: %w", err)
		}
	}
	return &Plugin{env: cfg.Envelope, key: key, log: log, m: m}, nil
}

// Key returns the cluster key's name.
func (p *Plugin) Key() string { return p.key }

// info asks the backend for the key's versions and remembers its creation
// time.
func (p *Plugin) info(ctx context.Context) (keys.TenantInfo, error) {
	ti, err := p.env.Provider().Tenant(ctx, p.key)
	if err != nil {
		return keys.TenantInfo{}, err
	}
	if ti.Shredded {
		return keys.TenantInfo{}, fmt.Errorf("cluster key %q: %w", p.key, keys.ErrShredded)
	}
	p.mu.Lock()
	p.created, p.known = createdUnix(ti.Created), true
	p.mu.Unlock()
	return ti, nil
}

func createdUnix(t time.Time) int64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return t.Unix()
}

// keyID names version of the cluster key, asking the backend for the key's
// creation time if it is not known yet.
func (p *Plugin) keyID(ctx context.Context, version uint32) (string, error) {
	p.mu.Lock()
	created, known := p.created, p.known
	p.mu.Unlock()
	if !known {
		ti, err := p.info(ctx)
		if err != nil {
			return "", err
		}
		created = createdUnix(ti.Created)
	}
	return KeyID{Backend: p.env.Provider().Name(), Key: p.key, Created: created, Version: version}.String(), nil
}

// Status reports the current key_id and health. It costs one read of the
// key's versions from the backend, which is what notices a KMS that is
// down or credentials that stopped working; on failure it returns an error
// (kube-apiserver then marks the plugin unhealthy) and never a key_id it has
// not just read.
func (p *Plugin) Status(ctx context.Context) (_ *service.StatusResponse, err error) {
	defer p.m.observe("status", time.Now(), &err)
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	ti, err := p.info(ctx)
	if err != nil {
		p.m.healthy.Set(0)
		p.log.Warn("kms status: cluster key unavailable", "key", p.key, "error", err)
		return nil, grpcError("status", err)
	}
	id, err := p.keyID(ctx, ti.Current)
	if err != nil {
		p.m.healthy.Set(0)
		return nil, grpcError("status", err)
	}
	p.m.healthy.Set(1)
	p.m.version.Set(float64(ti.Current))
	return &service.StatusResponse{Version: APIVersion, Healthz: "ok", KeyID: id}, nil
}

// Encrypt wraps a seed under the cluster key's current KEK version. The
// ciphertext is a keys.WrappedKey blob; the response carries no annotations.
// data is zeroed before Encrypt returns.
func (p *Plugin) Encrypt(ctx context.Context, uid string, data []byte) (_ *service.EncryptResponse, err error) {
	defer p.m.observe("encrypt", time.Now(), &err)
	defer clear(data)
	if len(data) != SeedSize {
		return nil, grpcError("encrypt", fmt.Errorf("%w: got %d bytes to wrap; KMS v2 sends a %d-byte seed", keys.ErrMalformed, len(data), SeedSize))
	}
	var seed keys.DEK
	defer seed.Zero()
	copy(seed[:], data)
	wk, err := p.env.WrapDEK(ctx, p.key, Purpose, &seed)
	if err != nil {
		p.log.Warn("kms encrypt failed", "key", p.key, "uid", safeUID(uid), "error", err)
		return nil, grpcError("encrypt", err)
	}
	ct, err := wk.MarshalBinary()
	if err != nil {
		return nil, grpcError("encrypt", err)
	}
	if len(ct) > MaxCiphertextSize {
		return nil, grpcError("encrypt", fmt.Errorf("the %s backend's ciphertext makes a %d-byte blob, over KMS v2's %d-byte limit", wk.Provider, len(ct), MaxCiphertextSize))
	}
	id, err := p.keyID(ctx, wk.KEKVersion)
	if err != nil {
		return nil, grpcError("encrypt", err)
	}
	return &service.EncryptResponse{Ciphertext: ct, KeyID: id}, nil
}

// Decrypt opens a seed with the KEK version its ciphertext records. The
// request's key_id must name the same backend, key and version as the
// ciphertext, and carry no annotations (this plugin writes none); anything
// else is refused before the backend is asked. Every attempt is audited by
// the envelope, with caller "kube-apiserver" and the request's UID.
func (p *Plugin) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) (_ []byte, err error) {
	defer p.m.observe("decrypt", time.Now(), &err)
	if req == nil {
		return nil, grpcError("decrypt", fmt.Errorf("%w: empty request", keys.ErrMalformed))
	}
	wk, err := ParseCiphertext(req.Ciphertext, req.KeyID, req.Annotations)
	if err != nil {
		return nil, grpcError("decrypt", err)
	}
	if wk.Tenant != p.key {
		return nil, grpcError("decrypt", fmt.Errorf("%w: the ciphertext is under key %q; this plugin serves %q (--key)", keys.ErrMismatch, wk.Tenant, p.key))
	}
	seed, err := p.env.Unwrap(ctx, wk, Purpose, "kube-apiserver uid="+safeUID(uid))
	if err != nil {
		p.log.Warn("kms decrypt failed", "key_id", req.KeyID, "uid", safeUID(uid), "error", err)
		return nil, grpcError("decrypt", err)
	}
	defer seed.Zero()
	return append([]byte(nil), seed[:]...), nil
}

// Healthy checks that the backend answers and holds the cluster key, for
// the health endpoint.
func (p *Plugin) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if err := p.env.Provider().Health(ctx); err != nil {
		return err
	}
	_, err := p.info(ctx)
	return err
}

// safeUID keeps the request UID (set by kube-apiserver, free text on the
// wire) short and printable before it reaches logs and the audit record.
func safeUID(uid string) string {
	uid = uid[:min(len(uid), 64)]
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return '_'
		}
		return r
	}, uid)
}

// rpcError carries a gRPC code for kube-apiserver while keeping the error
// chain for errors.Is, metrics and logs. Its message is the error's text:
// keys' errors name keys, versions and tenants, never key bytes or
// plaintext.
type rpcError struct {
	code codes.Code
	op   string
	err  error
}

func (e *rpcError) Error() string              { return e.op + ": " + e.err.Error() }
func (e *rpcError) Unwrap() error              { return e.err }
func (e *rpcError) GRPCStatus() *status.Status { return status.New(e.code, e.Error()) }

// grpcError maps keys' errors to gRPC codes kube-apiserver can act on.
func grpcError(op string, err error) error {
	if err == nil {
		return nil
	}
	c := codes.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, keys.ErrBackendUnavailable):
		c = codes.Unavailable
	case errors.Is(err, keys.ErrAuth), errors.Is(err, keys.ErrMalformed), errors.Is(err, keys.ErrUnknownFormat),
		errors.Is(err, keys.ErrMismatch), errors.Is(err, ErrBadKeyID):
		c = codes.InvalidArgument
	case errors.Is(err, keys.ErrUnknownTenant), errors.Is(err, keys.ErrUnknownKeyVersion), errors.Is(err, keys.ErrShredded):
		c = codes.NotFound
	case errors.Is(err, keys.ErrPermissionDenied):
		c = codes.PermissionDenied
	case errors.Is(err, context.Canceled):
		c = codes.Canceled
	}
	return &rpcError{code: c, op: op, err: err}
}
