package lab

import (
	"encoding/base64"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/transit/registry"
)

// FuzzRegistryKeys: whatever the registry file holds, parsing it for the
// retire check never panics, and every key it returns is a valid transit
// PSK of the tenant it is filed under.
func FuzzRegistryKeys(f *testing.F) {
	wk := keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: registry.PSKPurpose, KEKVersion: 3, Ciphertext: make([]byte, 60)}
	blob, _ := wk.MarshalBinary()
	f.Add([]byte(`{"keys": {}, "tenants": {"blue": {"psk": "` + base64.StdEncoding.EncodeToString(blob) + `"}}}`))
	f.Add([]byte(`{"tenants": {"red": {"psk": "` + base64.StdEncoding.EncodeToString(blob) + `"}}}`))
	f.Add([]byte(`{"tenants": {"blue": {"psk": null}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		wks, err := registryKeys(data)
		if err != nil {
			return
		}
		for _, wk := range wks {
			if err := wk.Validate(); err != nil || wk.Purpose != registry.PSKPurpose {
				t.Fatalf("returned an invalid PSK %v: %v", wk, err)
			}
		}
	})
}

// An unenrolled tenant stays listed without a wrapped key: the retire
// check and rewrap pass over it instead of calling the registry damaged.
func TestRegistryKeysSkipsUnenrolledTenants(t *testing.T) {
	wk := keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: registry.PSKPurpose, KEKVersion: 2, Ciphertext: make([]byte, 60)}
	blob, _ := wk.MarshalBinary()
	data := []byte(`{"tenants": {"blue": {"psk": "` + base64.StdEncoding.EncodeToString(blob) + `"}, "red": {"removed": true}}}`)
	wks, err := registryKeys(data)
	if err != nil {
		t.Fatalf("registry with an unenrolled tenant: %v", err)
	}
	if len(wks) != 1 || wks[0].Tenant != "blue" || wks[0].KEKVersion != 2 {
		t.Fatalf("keys = %v, want blue's v2 only", wks)
	}
	if _, err := registryKeys([]byte(`{"tenants": {"red": {}}}`)); err == nil {
		t.Fatal("an enrolled tenant without a key was accepted")
	}
}
