package local

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// state is an opened keyring: every tenant for the admin, or the one tenant
// an access key opens.
type state struct {
	hdr header
	// gen counts the admin's writes. It lives in the admin body, so only
	// the admin sees it.
	gen     uint64
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
	slices.SortFunc(out, func(a, b *tenantState) int { return strings.Compare(a.name, b.name) })
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

// locatorKey derives a tenant's locator key from its access key.
func locatorKey(access *cryptocore.Key, h *header) cryptocore.Key {
	return cryptocore.DeriveKey(access, h.id[:], cryptocore.LabelKeyringV2LocatorKey)
}

// locatorKey returns the tenant's locator key, kept or derived.
func (t *tenantState) locatorKey(h *header) cryptocore.Key {
	if t.shredded {
		return t.locKey
	}
	return locatorKey(&t.access, h)
}

// locator is where the holder of locKey finds its slot in the write h
// describes; a fresh write ID gives every write unlinkable locators.
func locator(locKey *cryptocore.Key, h *header) [locatorSize]byte {
	k := cryptocore.DeriveKey(locKey, h.writeID[:], cryptocore.LabelKeyringV2Locator)
	defer k.Zero()
	var l [locatorSize]byte
	copy(l[:], k[:])
	return l
}

// slotSealer returns the AEAD a tenant's slot is sealed with: under the
// access key while the tenant is active, under the locator key for its
// tombstone.
func slotSealer(t *tenantState, locKey *cryptocore.Key, h *header) *cryptocore.AEAD {
	if t.shredded {
		return sealer(locKey, h.id[:], cryptocore.LabelKeyringV2Tombstone)
	}
	return sealer(&t.access, h.id[:], cryptocore.LabelKeyringV2TenantBody)
}

// adminAD is what the admin body authenticates besides itself: the header
// and the whole index, so no slot can be changed, added, dropped or
// replaced by one from another write without the admin noticing.
func adminAD(f *rawFile) []byte {
	return slices.Concat(f.hdrBytes, f.index)
}

// openAdmin opens the whole keyring with the master key.
func openAdmin(data []byte, master *cryptocore.Key) (*state, error) {
	f, err := parseFile(data)
	if err != nil {
		return nil, err
	}
	body, err := sealer(master, f.hdr.id[:], cryptocore.LabelKeyringV2AdminBody).Open(nil, f.admin, adminAD(f))
	if err != nil {
		return nil, errAuthKeyring
	}
	defer clear(body)
	gen, ts, err := parseAdminBody(body, formatVersion)
	if err != nil {
		return nil, err
	}
	s := &state{hdr: f.hdr, gen: gen, tenants: make(map[string]*tenantState, len(ts))}
	for _, t := range ts {
		s.tenants[t.name] = t
	}
	// The admin body authenticates the index, but the slots are sealed
	// under the tenants' keys: each must open to what the admin body
	// holds, so a tenant never reads keys the admin did not write. The
	// padding must be what a write makes, so sizes say no more than the
	// spec allows.
	ok := len(f.slots) == slotCount(len(ts)) && f.slotPlain == slotPlainSize(ts)
	for _, t := range ts {
		if !ok {
			break
		}
		lk := t.locatorKey(&f.hdr)
		loc := locator(&lk, &f.hdr)
		sl, found := f.find(loc)
		var pt []byte
		if found {
			pt, err = slotSealer(t, &lk, &f.hdr).Open(nil, sl.sealed, slotAD(&f.hdr, loc, t.name))
		}
		lk.Zero()
		want := marshalSlot(t, f.slotPlain)
		ok = found && err == nil && subtle.ConstantTimeCompare(pt, want) == 1
		clear(pt)
		clear(want)
	}
	if !ok {
		s.zero()
		return nil, fmt.Errorf("keyring: %w: the tenant slots disagree with the admin body", keys.ErrMalformed)
	}
	return s, nil
}

// openTenant opens one tenant's slot with its access key.
func openTenant(data []byte, tenant string, access *cryptocore.Key) (*state, error) {
	f, err := parseFile(data)
	if err != nil {
		return nil, err
	}
	lk := locatorKey(access, &f.hdr)
	defer lk.Zero()
	loc := locator(&lk, &f.hdr)
	// No slot or no opening look the same: a tenant's key cannot tell a
	// tenant that was never created from a wrong key, and need not.
	errAuth := fmt.Errorf("keyring: %w (no slot opens with this access key: wrong access key for tenant %q, "+
		"a tenant this keyring does not hold, or the keyring file was modified)", keys.ErrAuth, tenant)
	sl, found := f.find(loc)
	if !found {
		return nil, errAuth
	}
	ad := slotAD(&f.hdr, loc, tenant)
	shredded := false
	pt, err := sealer(access, f.hdr.id[:], cryptocore.LabelKeyringV2TenantBody).Open(nil, sl.sealed, ad)
	if err != nil {
		shredded = true
		pt, err = sealer(&lk, f.hdr.id[:], cryptocore.LabelKeyringV2Tombstone).Open(nil, sl.sealed, ad)
	}
	if err != nil {
		return nil, errAuth
	}
	defer clear(pt)
	t, err := parseSlot(tenant, pt)
	if err != nil {
		return nil, err
	}
	if t.shredded != shredded {
		t.zero()
		return nil, fmt.Errorf("keyring: %w: tenant %q: the slot's state disagrees with its key", keys.ErrMalformed, tenant)
	}
	return &state{hdr: f.hdr, tenants: map[string]*tenantState{tenant: t}}, nil
}

// errTooBig refuses a write whose result the parser would refuse.
var errTooBig = errors.New("local keyring: the keyring would exceed its size limit; retire old KEK versions first")

// marshal seals s into a keyring file with the master key, under a fresh
// write ID (which it stores in s.hdr); the caller sets s.gen.
func (s *state) marshal(master *cryptocore.Key) ([]byte, error) {
	ts := s.sorted()
	if len(ts) > maxTenants {
		return nil, fmt.Errorf("local keyring: more than %d tenants", maxTenants)
	}
	h := s.hdr
	h.version = formatVersion
	_, _ = rand.Read(h.writeID[:])
	p := slotPlainSize(ts)
	if p > maxSlotPlain {
		return nil, errTooBig
	}
	slots := make([]slot, 0, slotCount(len(ts)))
	used := map[[locatorSize]byte]bool{}
	for _, t := range ts {
		lk := t.locatorKey(&h)
		var sl slot
		sl.loc = locator(&lk, &h)
		pt := marshalSlot(t, p)
		sl.sealed = slotSealer(t, &lk, &h).Seal(nil, pt, slotAD(&h, sl.loc, t.name))
		clear(pt)
		lk.Zero()
		if used[sl.loc] {
			return nil, errors.New("BUG: local keyring: two tenants share a locator")
		}
		used[sl.loc] = true
		slots = append(slots, sl)
	}
	// Unused slots are random bytes, which sealed slots are
	// indistinguishable from without the key.
	for len(slots) < cap(slots) {
		sl := slot{sealed: make([]byte, cryptocore.GCMOverhead+int(p))}
		_, _ = rand.Read(sl.loc[:])
		_, _ = rand.Read(sl.sealed)
		if !used[sl.loc] {
			used[sl.loc] = true
			slots = append(slots, sl)
		}
	}
	slices.SortFunc(slots, func(a, b slot) int { return bytes.Compare(a.loc[:], b.loc[:]) })
	index := binary.BigEndian.AppendUint32(nil, uint32(len(slots)))
	index = binary.BigEndian.AppendUint32(index, p)
	for _, sl := range slots {
		index = append(index, sl.loc[:]...)
		index = append(index, sl.sealed...)
	}
	body := marshalAdminBody(s.gen, ts)
	defer clear(body)
	h.adminLen = uint32(len(body) + cryptocore.GCMOverhead)
	hb := h.marshal()
	if len(hb)+int(h.adminLen)+len(index) > maxFileSize || h.adminLen > maxSealedField {
		return nil, errTooBig
	}
	out := sealer(master, h.id[:], cryptocore.LabelKeyringV2AdminBody).Seal(hb, body, slices.Concat(hb, index))
	s.hdr = h
	return append(out, index...), nil
}

// unlockSecret is how the admin opens a keyring.
type unlockSecret struct {
	passphrase []byte         // for unlockPassphrase
	keyFile    cryptocore.Key // for unlockKeyFile
	ownPass    bool           // passphrase was read from a file here
}

// adminUnlock reads the admin credentials cfg names. The caller zeroes
// the result (u.zero) but not cfg.Passphrase, which it still owns.
func adminUnlock(cfg Config) (*unlockSecret, error) {
	u := &unlockSecret{passphrase: cfg.Passphrase}
	var err error
	switch {
	case cfg.KeyFile != "":
		u.keyFile, err = readKeyFile(cfg.KeyFile, "key file")
	case cfg.PassphraseFile != "":
		u.passphrase, err = readPassphraseFile(cfg.PassphraseFile)
		u.ownPass = true
	case len(cfg.Passphrase) == 0:
		err = fmt.Errorf("%w: admin credentials needed (a key file, a passphrase file or a passphrase)", ErrConfig)
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (u *unlockSecret) zero() {
	u.keyFile.Zero()
	if u.ownPass {
		clear(u.passphrase)
	}
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
	h := header{version: formatVersion}
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
	s := &state{hdr: h, gen: 1, tenants: map[string]*tenantState{}}
	return s.marshal(&m)
}
