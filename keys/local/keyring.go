package local

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// state is an opened keyring: every tenant for the admin, or the one tenant
// an access key opens.
type state struct {
	hdr     header
	tenants map[string]*tenantState
}

func (s *state) zero() {
	if s == nil {
		return
	}
	for _, t := range s.tenants {
		t.zero()
	}
}

func (s *state) sorted() []*tenantState {
	out := make([]*tenantState, 0, len(s.tenants))
	for _, t := range s.tenants {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *tenantState) int {
		if a.name < b.name {
			return -1
		}
		return 1
	})
	return out
}

var errAuthKeyring = fmt.Errorf("keyring: %w (wrong passphrase or key file, or the keyring file was modified)", keys.ErrAuth)

func sealer(secret *cryptocore.Key, salt []byte, label string) *cryptocore.AEAD {
	k := cryptocore.DeriveKey(secret, salt, label)
	defer k.Zero()
	a, err := cryptocore.NewAESGCM(&k)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return a
}

// openAdmin opens the whole keyring with the master key.
func openAdmin(data []byte, master *cryptocore.Key) (*state, error) {
	f, err := parseFile(data)
	if err != nil {
		return nil, err
	}
	body, err := sealer(master, f.hdr.id[:], cryptocore.LabelKeyringAdminBody).Open(nil, f.admin, f.hdrBytes)
	if err != nil {
		return nil, errAuthKeyring
	}
	defer clear(body)
	ts, err := parseAdminBody(body)
	if err != nil {
		return nil, err
	}
	s := &state{hdr: f.hdr, tenants: make(map[string]*tenantState, len(ts))}
	for _, t := range ts {
		s.tenants[t.name] = t
	}
	// The public records must describe the same tenants as the admin body;
	// a difference means the file was edited outside tencrypt.
	// Each active record must open under the tenant's access key to what
	// the admin body holds, so a tenant never reads keys the admin did not
	// write.
	ok, authOK := len(f.records) == len(ts), true
	for _, r := range f.records {
		t := s.tenants[r.name]
		ok = ok && t != nil && t.shredded == (r.state == stateShredded)
		if !ok || t.shredded {
			continue
		}
		tb, err := sealer(&t.access, f.hdr.id[:], cryptocore.LabelKeyringTenantBody).Open(nil, r.sealed, tenantAD(&f.hdr, r.name))
		want := marshalTenantBody(t)
		authOK = err == nil
		ok = authOK && subtle.ConstantTimeCompare(tb, want) == 1
		clear(tb)
		clear(want)
	}
	if !authOK {
		s.zero()
		return nil, errAuthKeyring
	}
	if !ok {
		s.zero()
		return nil, fmt.Errorf("keyring: %w: the tenant records disagree with the admin body", keys.ErrMalformed)
	}
	return s, nil
}

// openTenant opens one tenant's record with its access key.
func openTenant(data []byte, tenant string, access *cryptocore.Key) (*state, error) {
	f, err := parseFile(data)
	if err != nil {
		return nil, err
	}
	s := &state{hdr: f.hdr, tenants: map[string]*tenantState{}}
	i := slices.IndexFunc(f.records, func(r record) bool { return r.name == tenant })
	if i < 0 {
		return nil, fmt.Errorf("%w %q in keyring", keys.ErrUnknownTenant, tenant)
	}
	r := f.records[i]
	if r.state == stateShredded {
		s.tenants[tenant] = &tenantState{name: tenant, shredded: true}
		return s, nil
	}
	body, err := sealer(access, f.hdr.id[:], cryptocore.LabelKeyringTenantBody).Open(nil, r.sealed, tenantAD(&f.hdr, tenant))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w (wrong access key for tenant %q, or the keyring file was modified)", keys.ErrAuth, tenant)
	}
	defer clear(body)
	t, err := parseTenantBody(tenant, body)
	if err != nil {
		return nil, err
	}
	s.tenants[tenant] = t
	return s, nil
}

// marshal seals s into a keyring file with the master key; it uses
// s.hdr as is (the caller sets the generation).
func (s *state) marshal(master *cryptocore.Key) []byte {
	ts := s.sorted()
	body := marshalAdminBody(ts)
	defer clear(body)
	h := s.hdr
	h.adminLen = uint32(len(body) + cryptocore.GCMOverhead)
	hb := h.marshal()
	out := sealer(master, h.id[:], cryptocore.LabelKeyringAdminBody).Seal(hb, body, hb)
	out = appendU32(out, uint32(len(ts)))
	for _, t := range ts {
		out = append(out, byte(len(t.name)))
		out = append(out, t.name...)
		if t.shredded {
			out = append(out, stateShredded)
			out = appendU32(out, 0)
			continue
		}
		tb := marshalTenantBody(t)
		sealed := sealer(&t.access, h.id[:], cryptocore.LabelKeyringTenantBody).Seal(nil, tb, tenantAD(&h, t.name))
		clear(tb)
		out = append(out, stateActive)
		out = appendU32(out, uint32(len(sealed)))
		out = append(out, sealed...)
	}
	return out
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// unlockSecret is how the admin opens a keyring.
type unlockSecret struct {
	passphrase []byte         // for unlockPassphrase
	keyFile    cryptocore.Key // for unlockKeyFile
}

// master derives the master key for the keyring whose header is h.
func (u *unlockSecret) master(h *header) (cryptocore.Key, error) {
	switch h.unlock {
	case unlockPassphrase:
		if u.passphrase == nil {
			return cryptocore.Key{}, fmt.Errorf("%w: the keyring is unlocked by a passphrase, not a key file", ErrConfig)
		}
		return h.kdf.Derive(u.passphrase)
	case unlockKeyFile:
		if u.passphrase != nil {
			return cryptocore.Key{}, fmt.Errorf("%w: the keyring is unlocked by a key file, not a passphrase", ErrConfig)
		}
		return cryptocore.DeriveKey(&u.keyFile, h.kdf.Salt[:], cryptocore.LabelKeyringKeyFile), nil
	}
	return cryptocore.Key{}, errors.New("BUG: unlock method not checked")
}

// newKeyring returns the file of an empty keyring.
func newKeyring(u *unlockSecret, kdf cryptocore.KDFParams) ([]byte, error) {
	h := header{version: formatVersion, generation: 1}
	_, _ = rand.Read(h.id[:])
	if u.passphrase != nil {
		if err := kdf.Validate(); err != nil {
			return nil, err
		}
		h.unlock, h.kdf = unlockPassphrase, kdf
	} else {
		h.unlock = unlockKeyFile
		_, _ = rand.Read(h.kdf.Salt[:])
	}
	m, err := u.master(&h)
	if err != nil {
		return nil, err
	}
	defer m.Zero()
	s := &state{hdr: h, tenants: map[string]*tenantState{}}
	return s.marshal(&m), nil
}
