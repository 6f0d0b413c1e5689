package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/transit/registry"
)

// registrySuffix ends the name of a lab's transit registry file.
const registrySuffix = ".transit.json"

// maxRegistryFile bounds what RegistryHolder reads of a registry file.
const maxRegistryFile = 64 << 20

// RegistryHolder is the keys.Holder of a lab's transit registry file
// (<state dir>/<lab>.transit.json): each enrolled tenant's pre-shared key,
// wrapped under its KEK. Rewrap moves the wrapping, not the key, so the
// tunnels are not disturbed; 'tencrypt transit rotate' makes a new key
// instead.
type RegistryHolder struct{}

var _ keys.Holder = RegistryHolder{}

// Kind implements keys.Holder.
func (RegistryHolder) Kind() string { return "transit-registry" }

// Match implements keys.Holder: the file's name.
func (RegistryHolder) Match(path string, _ []byte) bool {
	return strings.HasSuffix(filepath.Base(path), registrySuffix)
}

// Keys implements keys.Holder.
func (RegistryHolder) Keys(f *os.File) ([]keys.WrappedKey, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxRegistryFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRegistryFile {
		return nil, fmt.Errorf("transit registry of more than %d bytes", maxRegistryFile)
	}
	return registryKeys(data)
}

// registryKeys parses a registry file and returns its PSKs, by tenant name.
func registryKeys(data []byte) ([]keys.WrappedKey, error) {
	var ts transitState
	if err := json.Unmarshal(data, &ts); err != nil {
		return nil, fmt.Errorf("transit registry: %w", err)
	}
	var out []keys.WrappedKey
	for _, tenant := range slices.Sorted(maps.Keys(ts.Tenants)) {
		if ts.Tenants[tenant].Removed {
			continue // unenrolled: its wrapped key was deleted with it
		}
		wk, err := tenantPSK(tenant, ts.Tenants[tenant])
		if err != nil {
			return nil, err
		}
		out = append(out, wk)
	}
	return out, nil
}

// tenantPSK parses and checks one tenant's wrapped pre-shared key.
func tenantPSK(tenant string, t registry.Tenant) (keys.WrappedKey, error) {
	var wk keys.WrappedKey
	if err := wk.UnmarshalBinary(t.PSK); err != nil {
		return wk, fmt.Errorf("tenant %q's transit key: %w", tenant, err)
	}
	if wk.Tenant != tenant || wk.Purpose != registry.PSKPurpose {
		return wk, fmt.Errorf("tenant %q's transit key: %w: it is for tenant %q purpose %q", tenant, keys.ErrMalformed, wk.Tenant, wk.Purpose)
	}
	return wk, nil
}

// errUnchanged ends an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// Rewrap implements keys.Holder. It works under the registry's lock, as
// the agents do, so no published key is lost; every stale pre-shared key
// is rewrapped and checked to hold the same key before the file is
// replaced, atomically, with all of them.
func (RegistryHolder) Rewrap(ctx context.Context, path string, m *keys.Mover) ([]keys.Moved, error) {
	name := strings.TrimSuffix(filepath.Base(path), registrySuffix)
	r := (&Manager{stateDir: filepath.Dir(path)}).Registry(name)
	var moved []keys.Moved
	changed := false
	err := r.update(func(ts *transitState) error {
		moved, changed = moved[:0], false
		for _, tenant := range slices.Sorted(maps.Keys(ts.Tenants)) {
			t := ts.Tenants[tenant]
			if t.Removed {
				continue
			}
			wk, err := tenantPSK(tenant, t)
			if err != nil {
				return err
			}
			mv := keys.Moved{File: path, Tenant: tenant, Purpose: wk.Purpose, From: wk.KEKVersion}
			stale, cur, err := m.Stale(ctx, wk)
			if err != nil {
				return fmt.Errorf("tenant %q's transit key: %w", tenant, err)
			}
			if !stale {
				mv.Status, mv.To = keys.StatusCurrent, cur
				moved = append(moved, mv)
				continue
			}
			nwk, err := m.RewrapVerified(ctx, wk, registry.PSKPurpose)
			if err != nil {
				return fmt.Errorf("tenant %q's transit key: %w", tenant, err)
			}
			if t.PSK, err = nwk.MarshalBinary(); err != nil {
				return err
			}
			ts.Tenants[tenant], changed = t, true
			mv.Status, mv.To, mv.Method = keys.StatusRewrapped, nwk.KEKVersion, "replace"
			moved = append(moved, mv)
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return nil, fmt.Errorf("%s: %w (the registry is unchanged)", path, err)
	}
	return moved, nil
}
