package names

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestXattrRoundTrip(t *testing.T) {
	tr := newTransform(t, 1)
	for _, attr := range []string{"user.a", "user.mime_type", "user." + strings.Repeat("x", 159)} {
		stored, err := tr.EncryptXattrName(attr)
		if err != nil {
			t.Fatalf("%q: %v", attr, err)
		}
		if !strings.HasPrefix(stored, XattrStoredPrefix) || (len(attr) > 8 && strings.Contains(stored, attr[len("user."):])) || len(stored) > XattrNameMax {
			t.Fatalf("%q stored as %q", attr, stored)
		}
		again, _ := tr.EncryptXattrName(attr)
		if again != stored {
			t.Fatalf("attribute names are not deterministic: %q, %q", stored, again)
		}
		back, err := tr.DecryptXattrName(stored)
		if err != nil || back != attr {
			t.Fatalf("DecryptXattrName = %q, %v; want %q", back, err, attr)
		}
		for _, v := range [][]byte{nil, []byte("value"), bytes.Repeat([]byte{7}, XattrMaxPlainValue)} {
			sealed, err := tr.SealXattr(v, 'f', []byte("file-id-16-bytes"), stored)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != len(v)+XattrOverhead || len(sealed) > XattrValueMax {
				t.Fatalf("sealed %d bytes as %d", len(v), len(sealed))
			}
			got, err := tr.OpenXattr(sealed, 'f', []byte("file-id-16-bytes"), stored)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("OpenXattr = %q, %v", got, err)
			}
		}
	}
}

func TestXattrNameLimits(t *testing.T) {
	tr := newTransform(t, 1)
	for _, attr := range []string{"user.", "security.selinux", "system.posix_acl_access", "trusted.x", "user." + strings.Repeat("x", 160)} {
		if s, err := tr.EncryptXattrName(attr); !errors.Is(err, ErrXattrName) {
			t.Errorf("EncryptXattrName(%.20q) = %q, %v; want ErrXattrName", attr, s, err)
		}
	}
	if _, err := tr.SealXattr(make([]byte, XattrMaxPlainValue+1), 'f', nil, "user.tencrypt.x"); err == nil {
		t.Error("an oversize value was sealed")
	}
}

// TestXattrValueBinding: a value opens only for the entry, kind and
// attribute it was sealed for, and only under its volume's key.
func TestXattrValueBinding(t *testing.T) {
	tr := newTransform(t, 1)
	a, _ := tr.EncryptXattrName("user.a")
	b, _ := tr.EncryptXattrName("user.b")
	id := []byte("file-id-16-bytes")
	sealed, err := tr.SealXattr([]byte("secret"), 'f', id, a)
	if err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"another attribute": func() ([]byte, error) { return tr.OpenXattr(sealed, 'f', id, b) },
		"another file":      func() ([]byte, error) { return tr.OpenXattr(sealed, 'f', []byte("other-id-16-byte"), a) },
		"a directory":       func() ([]byte, error) { return tr.OpenXattr(sealed, 'd', id, a) },
		"another volume":    func() ([]byte, error) { return newTransform(t, 2).OpenXattr(sealed, 'f', id, a) },
	} {
		if v, err := open(); !errors.Is(err, ErrBadXattr) {
			t.Errorf("opened for %s: %q, %v", name, v, err)
		}
	}
	if _, err := newTransform(t, 2).DecryptXattrName(a); !errors.Is(err, ErrBadName) {
		t.Error("an attribute name decrypted under another volume's key")
	}
}

// FuzzOpenXattr: a stored value opens only as what was sealed for this
// entry and attribute; anything else is ErrBadXattr.
func FuzzOpenXattr(f *testing.F) {
	tr := newTransform(f, 1)
	id := []byte("file-id-16-bytes")
	stored, err := tr.EncryptXattrName("user.a")
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := tr.SealXattr([]byte("value"), 'f', id, stored)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(sealed[:len(sealed)-1])
	f.Add(append([]byte{2}, sealed[1:]...))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := tr.OpenXattr(b, 'f', id, stored)
		if err != nil {
			if !errors.Is(err, ErrBadXattr) {
				t.Fatalf("error not ErrBadXattr: %v", err)
			}
			return
		}
		if string(v) != "value" {
			t.Fatalf("forged value %q opened", v)
		}
		if _, err := tr.OpenXattr(b, 'f', id, stored+"x"); err == nil {
			t.Fatal("a value opened for another attribute")
		}
	})
}

// FuzzDecryptXattrName: a stored attribute name decrypts to a user.*
// name that encrypts back to it, or fails with ErrBadName.
func FuzzDecryptXattrName(f *testing.F) {
	tr := newTransform(f, 1)
	stored, _ := tr.EncryptXattrName("user.a")
	f.Add(stored)
	f.Add(stored[:len(stored)-1])
	f.Add("user.tencrypt.")
	f.Add("security.selinux")
	f.Fuzz(func(t *testing.T, s string) {
		attr, err := tr.DecryptXattrName(s)
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error not ErrBadName: %v", err)
			}
			return
		}
		if again, err := tr.EncryptXattrName(attr); err != nil || again != s {
			t.Fatalf("%q decrypted to %q, which encrypts to %q, %v", s, attr, again, err)
		}
	})
}
