package local

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// The keyring file, docs/KEYRING.md:
//
//	header (68 bytes) ‖ admin sealed body (N) ‖ tenant count (4) ‖ tenant records
//
// header = magic(8) ‖ version(2) ‖ unlock(1) ‖ 0(1) ‖ argon2 time(4) ‖
// argon2 memory KiB(4) ‖ argon2 threads(1) ‖ 0(3) ‖ salt(16) ‖
// keyring id(16) ‖ generation(8) ‖ N(4)
//
// record = name length(1) ‖ name ‖ state(1) ‖ S(4) ‖ sealed tenant body (S)
const (
	magic         = "TCKEYRNG"
	formatVersion = 1
	headerSize    = 68
	idSize        = 16

	unlockPassphrase = 1
	unlockKeyFile    = 2

	stateActive   = 1
	stateShredded = 2

	bodyVersion = 1

	// Bounds that keep a hostile or corrupt file from making the parser
	// allocate without limit.
	maxFileSize    = 64 << 20
	maxTenants     = 100000
	maxVersions    = 100000
	maxSealedField = 32 << 20
)

// header is the public, fixed-size start of the file. The admin body
// authenticates all of it.
type header struct {
	version    uint16
	unlock     byte
	kdf        cryptocore.KDFParams // Salt is the KDF or HKDF salt
	id         [idSize]byte
	generation uint64
	adminLen   uint32
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
	b = binary.BigEndian.AppendUint64(b, h.generation)
	b = binary.BigEndian.AppendUint32(b, h.adminLen)
	return b
}

// formatError wraps a sentinel with what was wrong and the public header in
// hex, which helps tell a truncated keyring from some other file.
func formatError(sentinel error, what string, data []byte) error {
	n := min(len(data), headerSize)
	return fmt.Errorf("keyring: %w: %s (header %s)", sentinel, what, hex.EncodeToString(data[:n]))
}

func parseHeader(data []byte) (header, error) {
	var h header
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		return h, formatError(keys.ErrMalformed, "not a tencrypt keyring (wrong magic)", data)
	}
	h.version = binary.BigEndian.Uint16(data[8:])
	if h.version != formatVersion {
		return h, formatError(keys.ErrUnknownFormat, fmt.Sprintf("keyring format version %d (this tencrypt reads version %d)", h.version, formatVersion), data)
	}
	if len(data) < headerSize {
		return h, formatError(keys.ErrMalformed, fmt.Sprintf("truncated: %d bytes, shorter than the %d-byte header", len(data), headerSize), data)
	}
	h.unlock = data[10]
	h.kdf.Time = binary.BigEndian.Uint32(data[12:])
	h.kdf.MemoryKiB = binary.BigEndian.Uint32(data[16:])
	h.kdf.Threads = data[20]
	copy(h.kdf.Salt[:], data[24:40])
	copy(h.id[:], data[40:56])
	h.generation = binary.BigEndian.Uint64(data[56:])
	h.adminLen = binary.BigEndian.Uint32(data[64:])
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

// record is one tenant's public entry: its name, state and body sealed
// under its access key (empty once shredded).
type record struct {
	name   string
	state  byte
	sealed []byte
}

// rawFile is a keyring file split into its parts, nothing opened yet.
type rawFile struct {
	hdr      header
	hdrBytes []byte
	admin    []byte
	records  []record
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

func (r *reader) i64(field string) int64 {
	if b := r.take(8, field); b != nil {
		return int64(binary.BigEndian.Uint64(b))
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

// parseFile splits a keyring file; it checks structure only. Every error
// wraps keys.ErrMalformed or keys.ErrUnknownFormat.
func parseFile(data []byte) (*rawFile, error) {
	if len(data) > maxFileSize {
		return nil, formatError(keys.ErrMalformed, fmt.Sprintf("%d bytes, larger than the %d-byte limit", len(data), maxFileSize), data)
	}
	h, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	f := &rawFile{hdr: h, hdrBytes: data[:headerSize:headerSize]}
	r := &reader{b: data[headerSize:]}
	f.admin = r.take(int(h.adminLen), "admin body")
	n := r.u32("tenant count")
	if n > maxTenants {
		r.fail("%d tenants, more than %d", n, maxTenants)
	}
	seen := map[string]bool{}
	for i := uint32(0); i < n && r.err == nil; i++ {
		var rec record
		rec.name = r.name("tenant name")
		rec.state = r.u8("tenant state")
		s := r.u32("tenant body length")
		rec.sealed = r.take(int(s), "tenant body")
		switch {
		case r.err != nil:
		case seen[rec.name]:
			r.fail("tenant %q listed twice", rec.name)
		case rec.state == stateActive && s < cryptocore.GCMOverhead:
			r.fail("tenant %q: body of %d bytes", rec.name, s)
		case rec.state == stateShredded && s != 0:
			r.fail("shredded tenant %q still has a body", rec.name)
		case rec.state != stateActive && rec.state != stateShredded:
			r.fail("tenant %q: unknown state %d", rec.name, rec.state)
		}
		seen[rec.name] = true
		f.records = append(f.records, rec)
	}
	r.end("the last tenant record")
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
	access     cryptocore.Key
	min        uint32
	current    uint32
	keks       map[uint32]*cryptocore.Key
}

func (t *tenantState) zero() {
	t.access.Zero()
	for _, k := range t.keks {
		k.Zero()
	}
}

func (t *tenantState) info() keys.TenantInfo {
	return keys.TenantInfo{Tenant: t.name, Current: t.current, MinVersion: t.min, Created: t.created, Shredded: t.shredded}
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.BigEndian.AppendUint64(b, 0)
	}
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
}

func readTime(r *reader, field string) time.Time {
	n := r.i64(field)
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
		if n != 0 {
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

// marshalAdminBody encodes every tenant, in the order given, for sealing.
func marshalAdminBody(ts []*tenantState) []byte {
	b := []byte{bodyVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(len(ts)))
	for _, t := range ts {
		b = append(b, byte(len(t.name)))
		b = append(b, t.name...)
		st := byte(stateActive)
		if t.shredded {
			st = stateShredded
		}
		b = append(b, st)
		b = appendTime(b, t.created)
		b = appendTime(b, t.shreddedAt)
		b = append(b, t.access[:]...)
		b = t.appendVersions(b)
	}
	return b
}

func parseAdminBody(b []byte) ([]*tenantState, error) {
	r := &reader{b: b}
	if v := r.u8("body version"); r.err == nil && v != bodyVersion {
		r.fail("admin body version %d", v)
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
		if ab := r.take(cryptocore.KeySize, "access key"); ab != nil {
			t.access, _ = cryptocore.KeyFromBytes(ab)
		}
		readVersions(r, t)
		out = append(out, t)
	}
	r.end("the admin body")
	if r.err != nil {
		for _, t := range out {
			t.zero()
		}
		return nil, fmt.Errorf("keyring: %w: admin body: %v", keys.ErrMalformed, r.err)
	}
	return out, nil
}

// marshalTenantBody encodes what a tenant's access key opens: its versions.
func marshalTenantBody(t *tenantState) []byte {
	b := []byte{bodyVersion}
	b = appendTime(b, t.created)
	return t.appendVersions(b)
}

func parseTenantBody(name string, b []byte) (*tenantState, error) {
	r := &reader{b: b}
	if v := r.u8("body version"); r.err == nil && v != bodyVersion {
		r.fail("tenant body version %d", v)
	}
	t := &tenantState{name: name}
	t.created = readTime(r, "created")
	readVersions(r, t)
	r.end("the tenant body")
	if r.err != nil {
		t.zero()
		return nil, fmt.Errorf("keyring: %w: tenant %q: %v", keys.ErrMalformed, name, r.err)
	}
	return t, nil
}

// tenantAD binds a tenant record to its keyring, generation and name:
// magic ‖ version ‖ keyring id ‖ generation ‖ name length ‖ name.
func tenantAD(h *header, name string) []byte {
	b := make([]byte, 0, 8+2+idSize+8+1+len(name))
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, h.version)
	b = append(b, h.id[:]...)
	b = binary.BigEndian.AppendUint64(b, h.generation)
	b = append(b, byte(len(name)))
	return append(b, name...)
}
