package pkcs11

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/tencrypt/tencrypt/keys"
)

// registry holds the PKCS#11 libraries this process has loaded. This is the
// package's one piece of mutable global state, and it mirrors state the C
// library keeps per process anyway: C_Initialize may succeed only once per
// process, and a token's login state is shared by every session the process
// has on it. Two Providers on the same module (an admin and a tenant in one
// test, say) must therefore share one initialised module and one logged-in
// token, counted by references.
//
// Lock order: Provider.mu, then registry.mu or module.mu; token.mu last.
var registry = struct {
	mu      sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

// module is one loaded, initialised PKCS#11 library.
type module struct {
	path string // as resolved, the registry key
	ctx  *pkcs11.Ctx
	refs int // guarded by registry.mu

	mu     sync.Mutex      // guards tokens; held while a token is initialised
	tokens map[uint]*token // open tokens by slot ID
}

// acquireModule loads and initialises the library at path, or returns the
// one already loaded, with one more reference.
func acquireModule(path string) (*module, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: PKCS#11 module %s: %w: install SoftHSM2 (scripts/setup installs the softhsm2 package) or set module (%s) to your HSM vendor's PKCS#11 library",
			keys.ErrBackendUnavailable, path, errors.Unwrap(err), EnvModule)
	}
	key, err := filepath.EvalSymlinks(path)
	if err != nil {
		key = path
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if m, ok := registry.modules[key]; ok {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w: could not load PKCS#11 module %s: is it a PKCS#11 library for this machine's architecture? (set module or %s)",
			keys.ErrBackendUnavailable, path, EnvModule)
	}
	if err := ctx.Initialize(); err != nil {
		ctx.Destroy()
		return nil, fmt.Errorf("%w: initialising PKCS#11 module %s: %w (for SoftHSM2, check the file SOFTHSM2_CONF names and its tokendir)",
			keys.ErrBackendUnavailable, path, err)
	}
	m := &module{path: key, ctx: ctx, refs: 1, tokens: map[uint]*token{}}
	registry.modules[key] = m
	return m, nil
}

// release drops a reference; the last one finalises and unloads the library.
func (m *module) release() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(registry.modules, m.path)
	// Finalize closes every session; there are none left, as each token
	// holds a module reference.
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

// errNoToken means no initialised token carries the label asked for.
var errNoToken = errors.New("no such token")

// findSlotLocked returns the slot of the initialised token labelled label.
// The caller holds m.mu.
func (m *module) findSlotLocked(label string) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, mapErr("C_GetSlotList", err)
	}
	found, n := uint(0), 0
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue // a slot emptied under us is not ours
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && strings.TrimRight(ti.Label, " ") == label {
			found, n = s, n+1
		}
	}
	switch n {
	case 0:
		return 0, errNoToken
	case 1:
		return found, nil
	default:
		return 0, fmt.Errorf("pkcs11: %d tokens are labelled %q: labels must be unique, delete or relabel the extra ones", n, label)
	}
}

// openToken returns the token labelled label, logged in with pin. A token
// this process has open already is shared, and pin must be the one it was
// opened with: a token has one user PIN, and the library would otherwise
// accept any PIN for a token that is logged in.
func (m *module) openToken(label, pin string, poolSize int) (*token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot, err := m.findSlotLocked(label)
	if err != nil {
		return nil, err
	}
	if t, ok := m.tokens[slot]; ok {
		if subtle.ConstantTimeCompare([]byte(t.pin), []byte(pin)) != 1 {
			return nil, fmt.Errorf("%w: token %q refused the PIN", keys.ErrAuth, label)
		}
		t.refs++
		return t, nil
	}
	t := &token{
		mod:   m,
		slot:  slot,
		label: label,
		pin:   pin,
		refs:  1,
		idle:  make(chan pkcs11.SessionHandle, poolSize),
		open:  make(chan struct{}, poolSize),
	}
	// Open the first session now, so that a wrong PIN fails here.
	t.open <- struct{}{}
	s, err := t.newSession()
	if err != nil {
		return nil, err
	}
	t.idle <- s
	m.tokens[slot] = t
	return t, nil
}

// initToken initialises a free slot's token with label and soPIN and sets
// its user PIN. It fails if a token with that label exists already.
func (m *module) initToken(label, soPIN, userPIN string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.findSlotLocked(label); err == nil {
		return fmt.Errorf("pkcs11: a token labelled %q exists already", label)
	} else if !errors.Is(err, errNoToken) {
		return err
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return mapErr("C_GetSlotList", err)
	}
	free, ok := uint(0), false
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, ok = s, true
			break
		}
	}
	if !ok {
		return fmt.Errorf("pkcs11: module %s has no free token to initialise for %q: create the tenant's token (or HSM partition) with the vendor's tools, labelled %q",
			m.path, label, label)
	}
	if err := m.ctx.InitToken(free, soPIN, label); err != nil {
		return mapErr("C_InitToken", err)
	}
	s, err := m.ctx.OpenSession(free, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return mapErr("C_OpenSession", err)
	}
	defer func() { _ = m.ctx.CloseSession(s) }()
	if err := m.ctx.Login(s, pkcs11.CKU_SO, soPIN); err != nil {
		return mapErr("C_Login as security officer", err)
	}
	defer func() { _ = m.ctx.Logout(s) }()
	if err := m.ctx.InitPIN(s, userPIN); err != nil {
		return mapErr("C_InitPIN", err)
	}
	return nil
}

// token is one logged-in token and its pool of sessions. Every session the
// process has on a token shares its login, so the pool belongs to the token,
// not to a Provider.
type token struct {
	mod   *module
	slot  uint
	label string
	pin   string
	refs  int // guarded by mod.mu

	// admin serialises the operations that change the token's objects
	// (create, rotate, retire, shred) within this process, from their
	// inventory to their change.
	admin sync.Mutex
	// objects is held for writing while a call creates or destroys an
	// object, and for reading around every other call. SoftHSM2's file
	// store re-reads its objects after a change, and calls running
	// meanwhile on other sessions fail with CKR_OBJECT_HANDLE_INVALID or
	// CKR_GENERAL_ERROR (seen with AES keys generated during GCM calls).
	objects sync.RWMutex

	idle chan pkcs11.SessionHandle // sessions ready for use
	open chan struct{}             // one element per open session; cap is the pool size

	mu     sync.Mutex // guards closed
	closed bool
}

// newSession opens a read-write session and logs it in if the token is not
// logged in already. The caller has taken a place in t.open.
func (t *token) newSession() (pkcs11.SessionHandle, error) {
	ctx := t.mod.ctx
	s, err := ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		<-t.open
		return 0, mapErr(fmt.Sprintf("C_OpenSession on token %q", t.label), err)
	}
	info, err := ctx.GetSessionInfo(s)
	if err == nil && info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		err = ctx.Login(s, pkcs11.CKU_USER, t.pin)
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			err = nil
		}
	}
	if err != nil {
		_ = ctx.CloseSession(s)
		<-t.open
		return 0, mapErr(fmt.Sprintf("logging in to token %q", t.label), err)
	}
	return s, nil
}

// get takes a session from the pool, opening one if the pool is not full,
// and waits for one otherwise.
func (t *token) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case s := <-t.idle:
		return s, nil
	default:
	}
	select {
	case s := <-t.idle:
		return s, nil
	case t.open <- struct{}{}:
		return t.newSession()
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: waiting for a session on token %q: %w", keys.ErrBackendUnavailable, t.label, ctx.Err())
	}
}

// put returns a session to the pool after an operation that ended with
// err. A session the token no longer knows is dropped.
func (t *token) put(s pkcs11.SessionHandle, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || sessionLost(err) {
		_ = t.mod.ctx.CloseSession(s)
		<-t.open
		return
	}
	t.idle <- s // never blocks: at most cap(open) sessions exist
}

// do runs fn with a session of the pool; fn must not create or destroy
// objects (see doWrite).
func (t *token) do(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	t.objects.RLock()
	defer t.objects.RUnlock()
	return t.doLocked(ctx, fn)
}

// doWrite runs fn, which creates or destroys objects, with a session of the
// pool and no other call running on the token in this process.
func (t *token) doWrite(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	t.objects.Lock()
	defer t.objects.Unlock()
	return t.doLocked(ctx, fn)
}

// doLocked runs fn with a session; the caller holds t.objects.
func (t *token) doLocked(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	s, err := t.get(ctx)
	if err != nil {
		return err
	}
	err = fn(s)
	t.put(s, err)
	return err
}

// release drops a reference; the last one closes the sessions (which logs
// the process out of the token).
func (t *token) release() {
	m := t.mod
	m.mu.Lock()
	t.refs--
	last := t.refs == 0
	if last {
		delete(m.tokens, t.slot)
	}
	m.mu.Unlock()
	if !last {
		return
	}
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	for {
		select {
		case s := <-t.idle:
			_ = m.ctx.CloseSession(s)
			<-t.open
		default:
			return
		}
	}
}
