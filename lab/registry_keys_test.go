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
