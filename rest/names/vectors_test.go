package names

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

// The known answers of volume format 2, in testdata/vectors.json: they
// must not change, because that would change the on-disk format
// (docs/NAMES.md). Names are deterministic and compared exactly; IV files
// and symlink targets carry random nonces, so the pinned ones must keep
// opening (to the pinned ID or target, and only at their place).
type vectorFile struct {
	DEK      string          `json:"dek"`
	VolumeID string          `json:"volume_id"`
	DirID    string          `json:"dir_id"`
	Names    []nameVector    `json:"names"`
	DirIVs   []dirIVVector   `json:"dir_ivs"`
	Symlinks []symlinkVector `json:"symlinks"`
	Xattrs   []xattrVector   `json:"xattrs"`
}

type nameVector struct {
	Plain  string `json:"plain"`
	Enc    string `json:"enc"`
	Stored string `json:"stored"`
}

type dirIVVector struct {
	Root   bool   `json:"root,omitempty"`
	Parent string `json:"parent,omitempty"`
	Stored string `json:"stored,omitempty"`
	ID     string `json:"id"`
	File   string `json:"file"`
}

// xattrVector is an extended attribute: its stored name, and a value
// sealed for entry (hex) of kind ("f" or "d").
type xattrVector struct {
	Plain  string `json:"plain"`
	Stored string `json:"stored"`
	Value  string `json:"value"`
	Kind   string `json:"kind"`
	Entry  string `json:"entry"`
	Sealed string `json:"sealed"`
}

type symlinkVector struct {
	Stored string `json:"stored"`
	Target string `json:"target"`
	Sealed string `json:"sealed"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirIDOf(t *testing.T, s string) DirID {
	var id DirID
	if copy(id[:], unhex(t, s)) != DirIDSize {
		t.Fatalf("short directory ID %q", s)
	}
	return id
}

func TestKnownAnswers(t *testing.T) {
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	var dek keys.DEK
	copy(dek[:], unhex(t, v.DEK))
	tr, err := NewTransform(&dek, unhex(t, v.VolumeID))
	if err != nil {
		t.Fatal(err)
	}
	dir := dirIDOf(t, v.DirID)
	if len(v.Names) < 6 || len(v.DirIVs) < 2 || len(v.Symlinks) < 1 {
		t.Fatal("testdata/vectors.json lost vectors")
	}
	for _, nv := range v.Names {
		enc, err := tr.Encrypt(nv.Plain, dir)
		if err != nil || enc != nv.Enc {
			t.Errorf("Encrypt(%.20q) = %q, %v; want %q", nv.Plain, enc, err, nv.Enc)
		}
		if st, _ := Stored(nv.Enc); st != nv.Stored {
			t.Errorf("Stored(%.20q) = %q, want %q", nv.Enc, st, nv.Stored)
		}
		if got, err := tr.Decrypt(nv.Enc, dir); err != nil || got != nv.Plain {
			t.Errorf("Decrypt(%.20q) = %.20q, %v", nv.Enc, got, err)
		}
	}
	for _, iv := range v.DirIVs {
		loc := RootLoc()
		if !iv.Root {
			loc = ChildLoc(dirIDOf(t, iv.Parent), iv.Stored)
		}
		file := unhex(t, iv.File)
		id, err := tr.OpenDirIV(file, loc)
		if err != nil || id != dirIDOf(t, iv.ID) {
			t.Errorf("OpenDirIV(%s) = %x, %v; want %s", loc, id, err, iv.ID)
		}
		if len(file) != DirIVFileSize || string(file[:5]) != "TDIV\x02" {
			t.Errorf("IV file layout: %x", file[:5])
		}
		other := ChildLoc(DirID{1}, "x")
		if _, err := tr.OpenDirIV(file, other); !errors.Is(err, ErrBadDirIV) {
			t.Errorf("pinned IV opened elsewhere: %v", err)
		}
	}
	for _, sv := range v.Symlinks {
		if got, err := tr.DecryptSymlink(sv.Sealed, dir, sv.Stored); err != nil || got != sv.Target {
			t.Errorf("DecryptSymlink = %q, %v; want %q", got, err, sv.Target)
		}
	}
	checkXattrVectors(t, tr, v.Xattrs)
}

// checkXattrVectors: stored names encrypt exactly, sealed values keep
// opening for their entry and attribute only.
func checkXattrVectors(t *testing.T, tr *Transform, vs []xattrVector) {
	t.Helper()
	if len(vs) < 2 {
		t.Fatal("testdata/vectors.json lost its xattr vectors")
	}
	for _, xv := range vs {
		if st, err := tr.EncryptXattrName(xv.Plain); err != nil || st != xv.Stored {
			t.Errorf("EncryptXattrName(%q) = %q, %v; want %q", xv.Plain, st, err, xv.Stored)
		}
		got, err := tr.OpenXattr(unhex(t, xv.Sealed), xv.Kind[0], unhex(t, xv.Entry), xv.Stored)
		if err != nil || string(got) != xv.Value {
			t.Errorf("OpenXattr(%s) = %q, %v; want %q", xv.Plain, got, err, xv.Value)
		}
		if _, err := tr.OpenXattr(unhex(t, xv.Sealed), xv.Kind[0], unhex(t, xv.Entry), xv.Stored+"A"); !errors.Is(err, ErrBadXattr) {
			t.Errorf("pinned value of %s opened for another attribute: %v", xv.Plain, err)
		}
	}
}
