package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/keys"
)

// readBlob reads a wrapped-key blob file.
func readBlob(path string) (keys.WrappedKey, error) {
	var wk keys.WrappedKey
	f, err := os.Open(path)
	if err != nil {
		return wk, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, keys.MaxWrappedKeySize+1))
	if err != nil {
		return wk, fmt.Errorf("%s: %w", path, err)
	}
	if err := wk.UnmarshalBinary(b); err != nil {
		return wk, fmt.Errorf("%s: %w", path, err)
	}
	return wk, nil
}

// replaceFile writes data over path atomically, keeping path's mode (see
// internal/atomicfile): a crash leaves the old or the new content.
func replaceFile(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, atomicfile.Options{Perm: fi.Mode().Perm(), Replace: true})
}

// blobRef is a wrapped key found in a file.
type blobRef struct {
	File       string `json:"file"`
	Offset     int    `json:"offset"`
	Tenant     string `json:"tenant"`
	Purpose    string `json:"purpose"`
	KEKVersion uint32 `json:"key_version"`
}

// scanHead is how much of each file scanBlobs searches: wrapped keys sit in
// blob files or in the headers of encrypted files.
const scanHead = 64 << 10

// scanBlobs walks paths (files or directories) and returns every wrapped
// key of provider found at the start of regular files.
func scanBlobs(paths []string, provider string) ([]blobRef, int, error) {
	var refs []blobRef
	files := 0
	magic := []byte("TCWK")
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				// A wrapped key reached only through a link must not be
				// missed (retire would destroy a version in use): follow a
				// link to a file, refuse one to anything else.
				fi, err := os.Stat(path)
				if err != nil {
					return fmt.Errorf("symbolic link %s: %w", path, err)
				}
				if !fi.Mode().IsRegular() {
					return fmt.Errorf("symbolic link %s points to a directory or special file, which the scan does not follow: name its target instead", path)
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			head, err := io.ReadAll(io.LimitReader(f, scanHead))
			f.Close()
			if err != nil {
				return err
			}
			files++
			for off := 0; ; {
				i := bytes.Index(head[off:], magic)
				if i < 0 {
					break
				}
				off += i
				if wk, n, err := keys.ParseWrappedKey(head[off:]); err == nil && wk.Provider == provider {
					refs = append(refs, blobRef{File: path, Offset: off, Tenant: wk.Tenant, Purpose: wk.Purpose, KEKVersion: wk.KEKVersion})
					off += n
					continue
				}
				off++
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.SkipAll) {
			return nil, files, fmt.Errorf("scan %s: %w", root, err)
		}
	}
	return refs, files, nil
}
