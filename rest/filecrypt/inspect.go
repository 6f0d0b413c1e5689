package filecrypt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tencrypt/tencrypt/rest/format"
)

// Info is a file's header's public fields and its sizes, never a key. The
// header is not authenticated without the key, so these are the file's
// claims. The json names are a contract ('tencrypt file inspect --json').
type Info struct {
	File          string `json:"file"`
	FormatVersion int    `json:"format_version"`
	Suite         string `json:"suite"`
	SuiteID       int    `json:"suite_id"`
	BlockSize     int    `json:"block_size"`
	FileID        string `json:"file_id"`
	Tenant        string `json:"tenant"`
	Provider      string `json:"provider"`
	Purpose       string `json:"purpose"`
	KEKVersion    uint32 `json:"kek_version"`
	HeaderSize    int    `json:"header_size"`
	FileSize      int64  `json:"file_size"`
	PlaintextSize int64  `json:"plaintext_size"`
	Blocks        int64  `json:"blocks"`
}

// Find expands paths into files: a file is kept as it is ("-" too), and a
// directory, with recursive, becomes the regular files under it that start
// with the tencrypt magic. A directory without recursive, or a path that
// does not exist, is an error matching ErrUsage.
func Find(paths []string, recursive bool) ([]string, error) {
	var out []string
	for _, a := range paths {
		fi, err := os.Stat(a)
		if a == "-" {
			out = append(out, a)
			continue
		}
		if err != nil {
			return nil, usageError{err}
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		if !recursive {
			return nil, usagef("%s is a directory: use -r", a)
		}
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if IsTencrypt(path) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// IsTencrypt reports whether the file at path starts with the tencrypt
// magic.
func IsTencrypt(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [len(format.Magic)]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == format.Magic
}

// Inspect reads the header of file ("-" reads stdin to its end, to learn
// the size) and returns what it claims. It needs no key.
func Inspect(file string, stdin io.Reader) (Info, error) {
	in := stdin
	size := int64(-1)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return Info{}, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return Info{}, err
		}
		in, size = f, fi.Size()
	} else if in == nil {
		in = eofReader{}
	}
	h, err := format.ReadHeader(in)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", file, err)
	}
	if size < 0 {
		n, err := io.Copy(io.Discard, in)
		if err != nil {
			return Info{}, err
		}
		size = int64(h.Size()) + n
	}
	ps, err := format.PlaintextSize(h.Size(), size)
	if ce := (*format.CorruptError)(nil); errors.As(err, &ce) {
		ce.Path = file
		return Info{}, ce
	}
	return Info{
		File: file, FormatVersion: int(h.Version), Suite: h.Suite.String(), SuiteID: int(h.Suite), BlockSize: h.BlockSize,
		FileID: hex.EncodeToString(h.FileID[:]), Tenant: h.Key.Tenant, Provider: h.Key.Provider, Purpose: h.Key.Purpose,
		KEKVersion: h.Key.KEKVersion, HeaderSize: h.Size(), FileSize: size, PlaintextSize: ps,
		Blocks: max(1, (ps+format.BlockSize-1)/format.BlockSize),
	}, nil
}
