package local

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// Migrate rewrites the format 1 keyring at cfg.Path as format 2, with the
// admin credentials cfg names (docs/KEYRING.md, "Migrating from format
// 1"). Every tenant keeps its access key and KEK versions, so access key
// files and wrapped keys keep working; tenants need a tencrypt that reads
// format 2 from then on. It returns the format the keyring had: on a
// format 2 keyring it changes nothing. It zeroes cfg.Passphrase.
//
// Format 1 kept no key of a shredded tenant, so the old access key of a
// tenant shredded before the migration finds no slot afterwards: it fails
// with ErrAuth where it failed with ErrShredded.
func Migrate(ctx context.Context, cfg Config) (from uint16, err error) {
	defer clear(cfg.Passphrase)
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if cfg.TenantKeyFile != "" {
		return 0, fmt.Errorf("local keyring: migrate: %w: needs the admin credentials, not a tenant access key", keys.ErrPermissionDenied)
	}
	u, err := adminUnlock(cfg)
	if err != nil {
		return 0, err
	}
	defer u.zero()
	unlock, err := lockFile(ctx, cfg.Path)
	if err != nil {
		return 0, fmt.Errorf("local keyring: %w: %w", keys.ErrBackendUnavailable, err)
	}
	defer unlock()
	data, _, err := readKeyring(cfg.Path)
	if err != nil {
		return 0, err
	}
	h, err := parseHeader(data)
	if err != nil {
		return 0, err
	}
	if h.version == formatVersion {
		return h.version, nil
	}
	m, err := u.master(&h)
	if err != nil {
		return h.version, err
	}
	defer m.Zero()
	s, err := openV1(data, &h, &m)
	if err != nil {
		return h.version, err
	}
	defer s.zero()
	out, err := s.marshal(&m)
	if err != nil {
		return h.version, err
	}
	if err := writeFileAtomic(cfg.Path, out, true); err != nil {
		return h.version, fmt.Errorf("write the migrated keyring: %w (the format 1 keyring is unchanged)", err)
	}
	return h.version, nil
}

// openV1 opens a format 1 keyring's admin body, which holds everything:
// header(68) ‖ admin body(N) ‖ public records. The records repeat what the
// admin body says, sealed under the access keys; migration drops them.
func openV1(data []byte, h *header, master *cryptocore.Key) (*state, error) {
	if len(data) > maxFileSize || len(data)-headerSizeV1 < int(h.adminLen) {
		return nil, formatError(keys.ErrMalformed, "format 1 keyring truncated in the admin body", data)
	}
	hb := data[:headerSizeV1]
	body, err := sealer(master, h.id[:], cryptocore.LabelKeyringAdminBody).Open(nil, data[headerSizeV1:headerSizeV1+int(h.adminLen)], hb)
	if err != nil {
		return nil, errAuthKeyring
	}
	defer clear(body)
	_, ts, err := parseAdminBody(body, 1)
	if err != nil {
		return nil, err
	}
	s := &state{hdr: *h, gen: binary.BigEndian.Uint64(data[56:64]) + 1, tenants: make(map[string]*tenantState, len(ts))}
	s.hdr.version = formatVersion
	for _, t := range ts {
		if t.shredded {
			// The access key is gone: a random locator key seals a
			// tombstone no one can find, which keeps the slot count honest.
			t.locKey = cryptocore.NewRandomKey()
		}
		s.tenants[t.name] = t
	}
	return s, nil
}
