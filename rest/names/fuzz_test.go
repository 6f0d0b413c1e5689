package names

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecryptName: any input decrypts to a valid name that encrypts back to
// the same input, or fails with ErrBadName; it never panics.
func FuzzDecryptName(f *testing.F) {
	tr := newTransform(f, 1)
	iv := DirIV{1, 2, 3}
	for _, s := range []string{"a", "hello.txt", strings.Repeat("z", 200)} {
		enc, err := tr.Encrypt(s, iv)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add("")
	f.Add(DirIVFile)
	f.Add(LongNamePrefix + "abc")
	f.Add(strings.Repeat("A", 3000))
	f.Fuzz(func(t *testing.T, enc string) {
		name, err := tr.Decrypt(enc, iv)
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error not ErrBadName: %v", err)
			}
			return
		}
		if CheckPlain(name) != nil {
			t.Fatalf("decrypted to invalid name %q", name)
		}
		back, err := tr.Encrypt(name, iv)
		if err != nil || back != enc {
			t.Fatalf("%q decrypted to %q, which encrypts to %q (%v)", enc, name, back, err)
		}
	})
}
