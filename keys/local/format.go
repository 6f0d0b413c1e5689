package local

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// The keyring file, format version 2, docs/KEYRING.md:
//
//	header (76 bytes) ‖ admin sealed body (N) ‖ index
//
// header = magic(8) ‖ version(2) ‖ unlock(1) ‖ 0(1) ‖ argon2 time(4) ‖
// argon2 memory KiB(4) ‖ argon2 threads(1) ‖ 0(3) ‖ salt(16) ‖
// keyring id(16) ‖ write id(16) ‖ N(4)
//
// index = slot count(4) ‖ slot plaintext size P(4) ‖ slot*
// slot  = locator(16) ‖ sealed slot body (12 + P + 16)
//
// Nothing outside the admin body names a tenant: a slot is found by a
// locator only its tenant's access key derives, every slot has the same
// size, and unused slots are random bytes (see docs/KEYRING.md for what the
// sizes still reveal).
const (
	magic         = "TCKEYRNG"
	formatVersion = 2
	headerSize    = 76
	idSize        = 16
	locatorSize   = 16

	unlockPassphrase = 1
	unlockKeyFile    = 2

	stateActive   = 1
	stateShredded = 2

	adminBodyVersion = 2

	// Padding. The admin body's plaintext is a multiple of adminPad bytes.
	// The index has a power of two of slots, at least minSlots, and every
	// slot holds versionBucket·k versions, k ≥ 1, enough for the tenant with
	// the most live versions.
	adminPad      = 4096
	minSlots      = 8
	versionBucket = 8
	slotFixed     = 1 + 8 + 4 + 4 + 4 // kind, created, min, current, count
	versionEntry  = 4 + cryptocore.KeySize
	minSlotPlain  = slotFixed + versionBucket*versionEntry

	// Bounds that keep a hostile or corrupt file from making the parser
	// allocate without limit.
	maxFileSize    = 64 << 20
	maxTenants     = 100000
	maxSlots       = 1 << 17 // the power of two above maxTenants
	maxVersions    = 100000  // a multiple of versionBucket
	maxSlotPlain   = slotFixed + maxVersions*versionEntry
	maxSealedField = 32 << 20
)

// header is the public, fixed-size start of the file. The admin body
// authenticates all of it.
type header struct {
	version uint16
	unlock  byte
	kdf     cryptocore.KDFParams // Salt is the KDF or HKDF salt
	id      [idSize]byte
	// writeID is drawn afresh for every write. It binds the slots to one
	// write without counting writes, as a generation number would.
	writeID  [idSize]byte
	adminLen uint32
}

func (h *header) marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, h.version)
	b = append(b, h.unlock, 0)
	b = binary.BigEndian.AppendUint32(b, h.kdf.Time)
	b = binary.BigEndian.AppendUint32(b, h.kdf.MemoryKiB)
	b = append(b, h.kdf.Threads, 0, 0, 0)
	b = append(b, h.kdf.Salt[:]...)
	b = append(b, h.id[:]...)
	b = append(b, h.writeID[:]...)
	b = binary.BigEndian.AppendUint32(b, h.adminLen)
	return b
}

// formatError wraps a sentinel with what was wrong and the public header in
// hex, which helps tell a truncated keyring from some other file.
func formatError(sentinel error, what string, data []byte) error {
	n := min(len(data), headerSize)
	return fmt.Errorf("keyring: %w: %s (header %s)", sentinel, what, hex.EncodeToString(data[:n]))
}

// headerSizeV1 is the size of a format 1 header, which had a generation
// counter where format 2 has the write ID, and no room for it to grow.
const headerSizeV1 = 68

// size is the size of the header in the file it was read from.
func (h *header) size() int {
	if h.version == 1 {
		return headerSizeV1
	}
	return headerSize
}

// parseHeader reads the header of a format 1 or 2 keyring: the KDF
// parameters are all an admin needs to derive the master key before
// migrating a format 1 keyring. parseFile accepts format 2 only.
func parseHeader(data []byte) (header, error) {
	var h header
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		return h, formatError(keys.ErrMalformed, "not a tencrypt keyring (wrong magic)", data)
	}
	h.version = binary.BigEndian.Uint16(data[8:])
	if h.version != formatVersion && h.version != 1 {
		return h, formatError(keys.ErrUnknownFormat, fmt.Sprintf("keyring format version %d (this tencrypt reads version %d)", h.version, formatVersion), data)
	}
	if len(data) < h.size() {
		return h, formatError(keys.ErrMalformed, fmt.Sprintf("truncated: %d bytes, shorter than the %d-byte header", len(data), h.size()), data)
	}
	h.unlock = data[10]
	h.kdf.Time = binary.BigEndian.Uint32(data[12:])
	h.kdf.MemoryKiB = binary.BigEndian.Uint32(data[16:])
	h.kdf.Threads = data[20]
	copy(h.kdf.Salt[:], data[24:40])
	copy(h.id[:], data[40:56])
	if h.version == 1 {
		h.adminLen = binary.BigEndian.Uint32(data[64:]) // 56..64 was the generation
	} else {
		copy(h.writeID[:], data[56:72])
		h.adminLen = binary.BigEndian.Uint32(data[72:])
	}
	if data[11] != 0 || data[21] != 0 || data[22] != 0 || data[23] != 0 {
		return h, formatError(keys.ErrMalformed, "reserved header bytes are not zero", data)
	}
	switch h.unlock {
	case unlockPassphrase:
		if err := h.kdf.Validate(); err != nil {
			return h, formatError(keys.ErrMalformed, err.Error(), data)
		}
	case unlockKeyFile:
		if h.kdf.Time != 0 || h.kdf.MemoryKiB != 0 || h.kdf.Threads != 0 {
			return h, formatError(keys.ErrMalformed, "KDF parameters set on a key-file keyring", data)
		}
	default:
		return h, formatError(keys.ErrMalformed, fmt.Sprintf("unknown unlock method %d", h.unlock), data)
	}
	if h.adminLen < cryptocore.GCMOverhead || h.adminLen > maxSealedField {
		return h, formatError(keys.ErrMalformed, fmt.Sprintf("admin body length %d out of bounds", h.adminLen), data)
	}
	return h, nil
}

// errV1 refuses a format 1 keyring and says how to move on.
func errV1(data []byte) error {
	return formatError(keys.ErrUnknownFormat, "keyring format version 1, whose public record index shows every tenant "+
		"the other tenants' names, states and KEK version counts; this tencrypt reads version 2: "+
		"migrate it once with the admin credentials (`tencrypt keys migrate`), then give tenants the new binary", data)
}

// slot is one entry of the index: an opaque locator and a sealed body.
type slot struct {
	loc    [locatorSize]byte
	sealed []byte
}

// rawFile is a format 2 keyring file split into its parts, nothing opened
// yet.
type rawFile struct {
	hdr       header
	hdrBytes  []byte
	admin     []byte
	index     []byte // everything after the admin body
	slotPlain uint32 // P, the plaintext size of every slot
	slots     []slot // sorted by locator, no two equal
}

// find returns the slot whose locator is loc.
func (f *rawFile) find(loc [locatorSize]byte) (slot, bool) {
	i, ok := slices.BinarySearchFunc(f.slots, loc, func(s slot, l [locatorSize]byte) int {
		return bytes.Compare(s.loc[:], l[:])
	})
	if !ok {
		return slot{}, false
	}
	return f.slots[i], true
}

// reader walks a byte slice and remembers the first error, so the parsers
// read like the layout they check.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("truncated in %s", field)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8(field string) byte {
	if b := r.take(1, field); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(4, field); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(8, field); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, a...)
	}
}

func (r *reader) name(field string) string {
	n := int(r.u8(field + " length"))
	s := string(r.take(n, field))
	if r.err == nil && keys.ValidTenant(s) != nil {
		r.fail("%s %q is not a valid tenant name", field, s)
	}
	return s
}

func (r *reader) end(what string) {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes after %s", len(r.b), what)
	}
}

// zeros checks that the rest is zero padding and consumes it.
func (r *reader) zeros(what string) {
	if r.err == nil && slices.ContainsFunc(r.b, func(c byte) bool { return c != 0 }) {
		r.err = fmt.Errorf("%s padding is not zero", what)
	}
	r.b = nil
}

// validSlotPlain reports whether p is a slot plaintext size format 2
// allows: room for a whole number of buckets of versions.
func validSlotPlain(p uint32) bool {
	return p >= minSlotPlain && p <= maxSlotPlain && (p-slotFixed)%(versionBucket*versionEntry) == 0
}

// parseFile splits a format 2 keyring file; it checks structure only.
// Every error wraps keys.ErrMalformed or keys.ErrUnknownFormat.
func parseFile(data []byte) (*rawFile, error) {
	if len(data) > maxFileSize {
		return nil, formatError(keys.ErrMalformed, fmt.Sprintf("%d bytes, larger than the %d-byte limit", len(data), maxFileSize), data)
	}
	h, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	if h.version != formatVersion {
		return nil, errV1(data)
	}
	f := &rawFile{hdr: h, hdrBytes: data[:headerSize:headerSize]}
	r := &reader{b: data[headerSize:]}
	f.admin = r.take(int(h.adminLen), "admin body")
	f.index = r.b
	n := r.u32("slot count")
	p := r.u32("slot size")
	switch {
	case r.err != nil:
	case n < minSlots || n > maxSlots || n&(n-1) != 0:
		r.fail("%d slots: want a power of two from %d to %d", n, minSlots, maxSlots)
	case !validSlotPlain(p):
		r.fail("slot plaintext size %d is not %d + a multiple of %d", p, slotFixed, versionBucket*versionEntry)
	case uint64(len(r.b)) != uint64(n)*(locatorSize+cryptocore.GCMOverhead+uint64(p)):
		r.fail("index of %d bytes does not hold %d slots of %d bytes", len(r.b), n, locatorSize+cryptocore.GCMOverhead+p)
	}
	f.slotPlain = p
	for i := uint32(0); i < n && r.err == nil; i++ {
		var s slot
		copy(s.loc[:], r.take(locatorSize, "locator"))
		s.sealed = r.take(cryptocore.GCMOverhead+int(p), "slot")
		if i > 0 && bytes.Compare(f.slots[i-1].loc[:], s.loc[:]) >= 0 {
			r.fail("slot %d out of order", i)
		}
		f.slots = append(f.slots, s)
	}
	r.end("the last slot")
	if r.err != nil {
		return nil, formatError(keys.ErrMalformed, r.err.Error(), data)
	}
	return f, nil
}

// tenantState is one tenant's keys as held by the admin.
type tenantState struct {
	name       string
	shredded   bool
	created    time.Time
	shreddedAt time.Time
	// access is an active tenant's access key (admin only); locKey is the
	// locator key derived from it, which the admin keeps instead once the
	// tenant is shredded.
	access  cryptocore.Key
	locKey  cryptocore.Key
	min     uint32
	current uint32
	keks    map[uint32]*cryptocore.Key
}

func (t *tenantState) zero() {
	t.access.Zero()
	t.locKey.Zero()
	for _, k := range t.keks {
		k.Zero()
	}
}

func (t *tenantState) info() keys.TenantInfo {
	return keys.TenantInfo{Tenant: t.name, Current: t.current, MinVersion: t.min, Created: t.created, Shredded: t.shredded}
}

func (t *tenantState) live() uint32 {
	if t.shredded {
		return 0
	}
	return t.current - t.min + 1
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
}

func readTime(r *reader, field string) time.Time {
	n := int64(r.u64(field))
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// appendVersions writes min ‖ current ‖ count ‖ (version ‖ key)*.
func (t *tenantState) appendVersions(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, t.min)
	b = binary.BigEndian.AppendUint32(b, t.current)
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.keks)))
	for v := t.min; v <= t.current && len(t.keks) > 0; v++ {
		b = binary.BigEndian.AppendUint32(b, v)
		b = append(b, t.keks[v][:]...)
	}
	return b
}

func readVersions(r *reader, t *tenantState) {
	t.min, t.current = r.u32("min version"), r.u32("current version")
	n := r.u32("version count")
	switch {
	case r.err != nil:
		return
	case t.shredded:
		if n != 0 || t.min != 0 || t.current != 0 {
			r.fail("shredded tenant %q has keys", t.name)
		}
		return
	case t.min < 1 || t.current < t.min || n != t.current-t.min+1 || n > maxVersions:
		r.fail("tenant %q: inconsistent versions (min %d, current %d, %d keys)", t.name, t.min, t.current, n)
		return
	}
	t.keks = make(map[uint32]*cryptocore.Key, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		v := r.u32("version")
		kb := r.take(cryptocore.KeySize, "key")
		if r.err != nil {
			return
		}
		if v != t.min+i {
			r.fail("tenant %q: versions out of order", t.name)
			return
		}
		k, _ := cryptocore.KeyFromBytes(kb)
		t.keks[v] = &k
	}
}

// marshalAdminBody encodes the generation and every tenant, in the order
// given, padded with zeros to a multiple of adminPad bytes:
//
//	body version(1) = 2 ‖ generation(8) ‖ tenant count(4) ‖ tenant* ‖ zeros
//	tenant = name length(1) ‖ name ‖ state(1) ‖ created(8) ‖ shredded at(8) ‖
//	         access key, or locator key if shredded (32) ‖ versions
func marshalAdminBody(gen uint64, ts []*tenantState) []byte {
	b := []byte{adminBodyVersion}
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ts)))
	for _, t := range ts {
		b = append(b, byte(len(t.name)))
		b = append(b, t.name...)
		st, secret := byte(stateActive), &t.access
		if t.shredded {
			st, secret = stateShredded, &t.locKey
		}
		b = append(b, st)
		b = appendTime(b, t.created)
		b = appendTime(b, t.shreddedAt)
		b = append(b, secret[:]...)
		b = t.appendVersions(b)
	}
	return append(b, make([]byte, padTo(len(b), adminPad)-len(b))...)
}

// padTo rounds n up to a multiple of m, at least m.
func padTo(n, m int) int { return max(m, (n+m-1)/m*m) }

// parseAdminBody parses the admin body of a keyring of the given format
// version; format 1 (read only to migrate) has no generation and no
// padding, and a zero access key for a shredded tenant.
func parseAdminBody(b []byte, format uint16) (uint64, []*tenantState, error) {
	r := &reader{b: b}
	want, gen := byte(adminBodyVersion), uint64(0)
	if format == 1 {
		want = 1
	}
	if v := r.u8("body version"); r.err == nil && v != want {
		r.fail("admin body version %d", v)
	}
	if format != 1 {
		gen = r.u64("generation")
		if r.err == nil && len(b)%adminPad != 0 {
			r.fail("admin body of %d bytes is not padded to a multiple of %d", len(b), adminPad)
		}
	}
	n := r.u32("tenant count")
	if n > maxTenants {
		r.fail("%d tenants", n)
	}
	var out []*tenantState
	seen := map[string]bool{}
	for i := uint32(0); i < n && r.err == nil; i++ {
		t := &tenantState{name: r.name("tenant name")}
		switch st := r.u8("state"); {
		case r.err != nil:
		case st == stateShredded:
			t.shredded = true
		case st != stateActive:
			r.fail("tenant %q: unknown state %d", t.name, st)
		}
		if seen[t.name] {
			r.fail("tenant %q listed twice", t.name)
		}
		seen[t.name] = true
		t.created = readTime(r, "created")
		t.shreddedAt = readTime(r, "shredded")
		if ab := r.take(cryptocore.KeySize, "tenant secret"); ab != nil {
			if t.shredded {
				t.locKey, _ = cryptocore.KeyFromBytes(ab)
			} else {
				t.access, _ = cryptocore.KeyFromBytes(ab)
			}
		}
		readVersions(r, t)
		out = append(out, t)
	}
	if format == 1 {
		r.end("the admin body")
	} else {
		r.zeros("admin body")
	}
	if r.err != nil {
		for _, t := range out {
			t.zero()
		}
		return 0, nil, fmt.Errorf("keyring: %w: admin body: %v", keys.ErrMalformed, r.err)
	}
	return gen, out, nil
}

// slotPlainSize is the P that fits the tenant with the most live versions,
// in whole buckets.
func slotPlainSize(ts []*tenantState) uint32 {
	most := uint32(1)
	for _, t := range ts {
		most = max(most, t.live())
	}
	buckets := (most + versionBucket - 1) / versionBucket
	return slotFixed + buckets*versionBucket*versionEntry
}

// slotCount is the number of slots for n tenants: a power of two, at least
// minSlots.
func slotCount(n int) int {
	c := minSlots
	for c < n {
		c *= 2
	}
	return c
}

// marshalSlot encodes what a tenant's slot holds, padded to p bytes:
//
//	state(1) ‖ created(8) ‖ versions ‖ zeros
//
// A shredded tenant's tombstone is state 2 and zeros.
func marshalSlot(t *tenantState, p uint32) []byte {
	b := make([]byte, 0, p)
	if t.shredded {
		b = append(b, stateShredded)
	} else {
		b = append(b, stateActive)
		b = appendTime(b, t.created)
		b = t.appendVersions(b)
	}
	return append(b, make([]byte, int(p)-len(b))...)
}

// parseSlot parses the plaintext of name's slot.
func parseSlot(name string, b []byte) (*tenantState, error) {
	r := &reader{b: b}
	t := &tenantState{name: name}
	switch st := r.u8("slot state"); {
	case r.err != nil:
	case st == stateShredded:
		t.shredded = true
	case st == stateActive:
		t.created = readTime(r, "created")
		readVersions(r, t)
	default:
		r.fail("unknown slot state %d", st)
	}
	r.zeros("slot")
	if r.err != nil {
		t.zero()
		return nil, fmt.Errorf("keyring: %w: tenant %q: %v", keys.ErrMalformed, name, r.err)
	}
	return t, nil
}

// slotAD binds a slot to its keyring, this write, its locator and its
// tenant: magic ‖ version ‖ keyring id ‖ write id ‖ locator ‖ name length ‖
// name.
func slotAD(h *header, loc [locatorSize]byte, name string) []byte {
	b := make([]byte, 0, 8+2+2*idSize+locatorSize+1+len(name))
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = append(b, h.id[:]...)
	b = append(b, h.writeID[:]...)
	b = append(b, loc[:]...)
	b = append(b, byte(len(name)))
	return append(b, name...)
}
