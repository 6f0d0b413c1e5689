package names

import (
	"bytes"
	"encoding/base64"
	"path/filepath"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/keys"
)

// FuzzVolumeNameKey: for any configuration that parses, replacing its name
// key either fails or gives a configuration that parses to the same volume
// with the new key; never a configuration that silently changed.
func FuzzVolumeNameKey(f *testing.F) {
	wk := keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: Purpose, KEKVersion: 1, Ciphertext: bytes.Repeat([]byte{1}, 60)}
	v := &Volume{Tenant: "blue", NameKey: wk, Created: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	good, err := v.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	blob, _ := wk.MarshalBinary()
	b64 := base64.StdEncoding.EncodeToString(blob)
	f.Add([]byte(`{"format":"tencrypt-volume","version":1,"volume_id":"00000000000000000000000000000000","tenant":"blue","NAME_KEY":"` + b64 + `","name_key":"` + b64 + `","created":"2026-12-02T10:00:00Z"}`))
	f.Add([]byte(`{"format":"tencrypt-volume","version":1,"volume_id":"00000000000000000000000000000000","VOLUME_ID":"11111111111111111111111111111111","tenant":"blue","name_key":"` + b64 + `","created":"2026-12-02T10:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		before, err := ParseVolume(data)
		if err != nil {
			return
		}
		nwk := before.NameKey
		nwk.KEKVersion++
		nwk.Ciphertext = bytes.Repeat([]byte{2}, 48)
		out, err := withNameKey(data, nwk)
		if err != nil {
			return
		}
		after, err := ParseVolume(out)
		if err != nil {
			t.Fatalf("withNameKey gave a configuration that does not parse: %v", err)
		}
		if after.ID != before.ID || after.Tenant != before.Tenant || !after.Created.Equal(before.Created) ||
			after.NameKey.KEKVersion != nwk.KEKVersion || !bytes.Equal(after.NameKey.Ciphertext, nwk.Ciphertext) {
			t.Fatalf("withNameKey changed more than the name key:\n%s\n->\n%s", data, out)
		}
	})
}

// The retire check must recognise every keyless file a volume keeps, also
// those a crash leaves behind, and leave the volume configuration to its
// own holder.
func TestMetadataHolderMatch(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{DirIVFile, true},
		{DirIVNextFile, true},
		{TempName(), true},
		{VolumeFile, false},
		{"payroll.xlsx", false},
	}
	for _, tt := range tests {
		if got := (MetadataHolder{}).Match(filepath.Join("/c/d", tt.name), nil); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
