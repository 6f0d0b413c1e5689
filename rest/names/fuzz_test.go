package names

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzDecryptName: any input decrypts to a valid name that encrypts back to
// the same input, or fails with ErrBadName; it never panics.
func FuzzDecryptName(f *testing.F) {
	tr := newTransform(f, 1)
	iv := DirID{1, 2, 3}
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

// FuzzOpenDirIV: an IV file's content opens only if SealDirIV wrote it
// for that place (each fuzz worker seals its own, with its own nonce: all
// of them hold the ID 7 7 7); anything else is ErrBadDirIV, with a zero
// ID.
func FuzzOpenDirIV(f *testing.F) {
	tr := newTransform(f, 1)
	parent := DirID{9}
	loc := ChildLoc(parent, "entry")
	good := tr.SealDirIV(DirID{7, 7, 7}, loc)
	f.Add(good)
	f.Add(tr.SealDirIV(DirID{1}, RootLoc()))
	f.Add(good[:16])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(good), 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := tr.OpenDirIV(data, loc)
		if err != nil {
			if !errors.Is(err, ErrBadDirIV) || id != (DirID{}) {
				t.Fatalf("failure %v with ID %x", err, id)
			}
			return
		}
		if id != (DirID{7, 7, 7}) || len(data) != DirIVFileSize {
			t.Fatalf("%x opened to %x but is not a sealed IV", data, id)
		}
		if _, err := tr.OpenDirIV(data, ChildLoc(parent, "other")); err == nil {
			t.Fatal("an IV opened at another place")
		}
	})
}

// FuzzDecryptLong: a long name and its sidecar decrypt only if the sidecar
// hashes to the name and decrypts in the directory; otherwise ErrBadName.
func FuzzDecryptLong(f *testing.F) {
	tr := newTransform(f, 1)
	dir := DirID{5}
	enc, err := tr.Encrypt(strings.Repeat("L", 240), dir)
	if err != nil {
		f.Fatal(err)
	}
	stored, _ := Stored(enc)
	f.Add(stored, []byte(enc))
	f.Add(stored, []byte(enc[1:]))
	f.Add(LongNamePrefix, []byte{})
	f.Add("abc", []byte("abc"))
	f.Fuzz(func(t *testing.T, stored string, sidecar []byte) {
		name, err := tr.DecryptLong(stored, sidecar, dir)
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error not ErrBadName: %v", err)
			}
			return
		}
		back, err := tr.Encrypt(name, dir)
		if err != nil || back != string(sidecar) {
			t.Fatalf("sidecar %q decrypted to %q, which encrypts to %q", sidecar, name, back)
		}
		if s, long := Stored(back); !long || s != stored {
			t.Fatalf("long name %q accepted for stored name %q", s, stored)
		}
	})
}

// FuzzDecryptSymlink: a sealed target opens only for its own entry;
// anything else is ErrBadName.
func FuzzDecryptSymlink(f *testing.F) {
	tr := newTransform(f, 1)
	dir := DirID{3}
	enc, err := tr.EncryptSymlink("../target", dir, "link")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(enc[:len(enc)-1])
	f.Add("")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, enc string) {
		target, err := tr.DecryptSymlink(enc, dir, "link")
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error not ErrBadName: %v", err)
			}
			return
		}
		if target != "../target" {
			t.Fatalf("forged target %q opened", target)
		}
		if _, err := tr.DecryptSymlink(enc, dir, "other"); err == nil {
			t.Fatal("a target opened for another entry")
		}
	})
}

// FuzzParseVolume: any input is refused with ErrBadVolume, or parses to a
// volume that marshals and parses back to the same volume.
func FuzzParseVolume(f *testing.F) {
	env := newEnv(f)
	v, err := InitVolume(context.Background(), f.TempDir(), env, "blue", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	good, err := v.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"version": 2`), []byte(`"version": 1`), 1))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"tencrypt-volume","version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVolume(data)
		if err != nil {
			if !errors.Is(err, ErrBadVolume) {
				t.Fatalf("error not ErrBadVolume: %v", err)
			}
			return
		}
		out, err := v.Marshal()
		if err != nil {
			t.Fatalf("a parsed volume does not marshal: %v", err)
		}
		back, err := ParseVolume(out)
		if err != nil || back.ID != v.ID || back.Tenant != v.Tenant || !back.Created.Equal(v.Created) || back.NameKey.Tenant != v.NameKey.Tenant {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, v)
		}
	})
}
