package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzFindEmbedded: the search of files of unknown kind never panics;
// every key it returns is valid; and a blob it is given in any of its
// encodings, after arbitrary bytes, is found (unless those bytes hold a
// magic that does not parse, which is then an error).
func FuzzFindEmbedded(f *testing.F) {
	wk := WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 7, Ciphertext: bytes.Repeat([]byte{0xab}, 60)}
	blob, _ := wk.MarshalBinary()
	f.Add([]byte("name_key: "), uint8(0))
	f.Add([]byte("TCWK\x01"), uint8(1))
	f.Add([]byte("VENXSw"), uint8(2))
	f.Add([]byte("5443574b01"), uint8(3))
	f.Fuzz(func(t *testing.T, prefix []byte, enc uint8) {
		var embedded []byte
		switch enc % 4 {
		case 0:
			embedded = blob
		case 1:
			embedded = []byte(base64.StdEncoding.EncodeToString(blob))
		case 2:
			embedded = []byte(base64.RawURLEncoding.EncodeToString(blob))
		case 3:
			embedded = []byte(hex.EncodeToString(blob))
		}
		data := append(append(bytes.Clone(prefix), ' '), embedded...)
		data = append(data, '"')
		for i, in := range [][]byte{prefix, data} {
			wks, err := findEmbedded("fuzz", in)
			for _, k := range wks {
				if err := k.Validate(); err != nil {
					t.Fatalf("returned an invalid key: %v", err)
				}
			}
			if err != nil || i == 0 {
				continue
			}
			found := false
			for _, k := range wks {
				found = found || (k.Tenant == wk.Tenant && k.KEKVersion == wk.KEKVersion && bytes.Equal(k.Ciphertext, wk.Ciphertext))
			}
			if !found {
				t.Fatalf("the embedded blob (encoding %d) was not found in %q", enc%4, data)
			}
		}
	})
}

// orderHolder claims every file; the rewrap of "a" waits until "c" is
// done, so files finish out of order; "b" and "f" fail.
type orderHolder struct{ cDone chan struct{} }

func (orderHolder) Kind() string                        { return "test" }
func (orderHolder) Match(string, []byte) bool           { return true }
func (orderHolder) Keys(*os.File) ([]WrappedKey, error) { return nil, nil }
func (h orderHolder) Rewrap(_ context.Context, path string, _ *Mover) ([]Moved, error) {
	switch filepath.Base(path) {
	case "a":
		if rewrapWorkers > 2 { // else "c" would never start
			<-h.cDone
		}
	case "c":
		defer close(h.cDone)
	case "b", "f":
		return nil, errors.New("fails: " + filepath.Base(path))
	}
	return []Moved{{File: path, Status: StatusCurrent}}, nil
}

func TestRewrapPathsReportsInWalkOrder(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		os.WriteFile(filepath.Join(dir, n), []byte(n), 0o600)
		want = append(want, n)
	}
	var got []string
	err := RewrapPaths(t.Context(), []string{dir}, []Holder{orderHolder{make(chan struct{})}}, nil, func(mv Moved) {
		got = append(got, filepath.Base(mv.File))
	})
	if err == nil || err.Error() != "fails: b" {
		t.Fatalf("error: %v, want the first file's in walk order (b)", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reported %v, want walk order %v", got, want)
	}
}

// TestScanReportsOffsets: a blob file's key is at 0, a key embedded in a
// file of no known kind is where its magic starts (raw or encoded), and a
// holder with no fixed place for its keys reports none.
func TestScanReportsOffsets(t *testing.T) {
	wk := WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 3, Ciphertext: bytes.Repeat([]byte{0xcd}, 60)}
	blob, err := wk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"a.blob":   blob,
		"b.bin":    append([]byte("0123456"), blob...),
		"c.json":   []byte(`{"key": "` + base64.StdEncoding.EncodeToString(blob) + `"}`),
		"d.holder": []byte("json held by a holder without offsets"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Scan(t.Context(), []string{dir}, []Holder{BlobHolder{}, jsonHolder{wk}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"a.blob": 0, "b.bin": 7, "c.json": 9, "d.holder": -1}
	if len(res.Keys) != len(want) {
		t.Fatalf("found %d keys, want %d: %+v", len(res.Keys), len(want), res.Keys)
	}
	for _, k := range res.Keys {
		w := want[filepath.Base(k.File)]
		switch {
		case w < 0 && k.Offset != nil:
			t.Errorf("%s: offset %d, want none", k.File, *k.Offset)
		case w >= 0 && (k.Offset == nil || *k.Offset != w):
			t.Errorf("%s: offset %v, want %d", k.File, k.Offset, w)
		}
	}
}

// jsonHolder claims *.holder files and finds wk in each, with no offset.
type jsonHolder struct{ wk WrappedKey }

func (jsonHolder) Kind() string                          { return "json" }
func (jsonHolder) Match(path string, _ []byte) bool      { return filepath.Ext(path) == ".holder" }
func (h jsonHolder) Keys(*os.File) ([]WrappedKey, error) { return []WrappedKey{h.wk}, nil }
func (jsonHolder) Rewrap(context.Context, string, *Mover) ([]Moved, error) {
	return nil, errors.New("not in this test")
}

// keylessHolder claims every file by name and says it holds no key, as a
// volume's metadata holder does for its reserved names.
type keylessHolder struct{}

func (keylessHolder) Kind() string                        { return "keyless" }
func (keylessHolder) Match(string, []byte) bool           { return true }
func (keylessHolder) Keys(*os.File) ([]WrappedKey, error) { return nil, nil }
func (keylessHolder) Rewrap(context.Context, string, *Mover) ([]Moved, error) {
	return nil, nil
}

// A file a holder claims by its name but that embeds a wrapped key (an
// application's tencrypt.app-secrets.json) must still block a retire: the
// holder's word that it holds no key is not enough.
func TestScanSearchesFilesClaimedAsKeyless(t *testing.T) {
	wk := WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 1, Ciphertext: bytes.Repeat([]byte{0xab}, 60)}
	blob, err := wk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tencrypt.app-secrets.json"), []byte(`{"key": "`+base64.StdEncoding.EncodeToString(blob)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tencrypt.diriv"), bytes.Repeat([]byte{7}, 61), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Scan(t.Context(), []string{dir}, []Holder{keylessHolder{}})
	if err != nil {
		t.Fatal(err)
	}
	if below := res.Below("local", "blue", 2); len(below) != 1 || filepath.Base(below[0].File) != "tencrypt.app-secrets.json" || below[0].Kind != KindUnknown {
		t.Fatalf("keys below version 2 = %+v, want the one embedded in tencrypt.app-secrets.json", below)
	}
}
