package local

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// maxSecretFile bounds what readKeyFile and readPassphraseFile read, so a
// wrong path (a device, a huge file) fails fast.
const maxSecretFile = 4096

func readSmall(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(b) > maxSecretFile {
		clear(b)
		return nil, fmt.Errorf("%s %s: larger than %d bytes; is it the right file?", what, path, maxSecretFile)
	}
	return b, nil
}

// parseKey accepts exactly 32 raw bytes, or 64 hex digits with surrounding
// white space (what WriteKeyFile writes).
func parseKey(b []byte) (cryptocore.Key, error) {
	if len(b) == cryptocore.KeySize {
		return cryptocore.KeyFromBytes(b)
	}
	t := bytes.TrimSpace(b)
	if len(t) != 2*cryptocore.KeySize {
		return cryptocore.Key{}, errors.New("want 32 raw bytes or 64 hex digits")
	}
	var k cryptocore.Key
	if _, err := hex.Decode(k[:], t); err != nil {
		k.Zero()
		return cryptocore.Key{}, errors.New("want 32 raw bytes or 64 hex digits")
	}
	return k, nil
}

// ReadKeyFile reads a 32-byte key (an admin key file or a tenant access key).
func readKeyFile(path, what string) (cryptocore.Key, error) {
	b, err := readSmall(path, what)
	if err != nil {
		return cryptocore.Key{}, err
	}
	defer clear(b)
	k, err := parseKey(b)
	if err != nil {
		return k, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return k, nil
}

// readPassphraseFile returns the first line of path.
func readPassphraseFile(path string) ([]byte, error) {
	b, err := readSmall(path, "passphrase file")
	if err != nil {
		return nil, err
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		clear(b[i:])
		b = b[:i]
	}
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("passphrase file %s: the first line is empty", path)
	}
	return b, nil
}

// writeKeyFile writes k as 64 hex digits and a newline to a new file at
// path, mode 0600, atomically; it fails if path exists.
func writeKeyFile(path string, k *cryptocore.Key) error {
	buf := encodeKeyFile(k)
	defer clear(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	return writeFileAtomic(path, buf, false)
}

// encodeKeyFile is the content of a key file holding k: hex and a newline.
// The caller clears it.
func encodeKeyFile(k *cryptocore.Key) []byte {
	buf := make([]byte, 2*cryptocore.KeySize+1)
	hex.Encode(buf, k[:])
	buf[len(buf)-1] = '\n'
	return buf
}

// GenerateKeyFile writes a new random admin key to path (mode 0600). It
// fails if path exists, so a key is never overwritten.
func GenerateKeyFile(path string) error {
	k := cryptocore.NewRandomKey()
	defer k.Zero()
	return writeKeyFile(path, &k)
}
