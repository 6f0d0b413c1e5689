// Package format reads and writes tencrypt's per-file encryption format
// (docs/FORMAT.md): a header carrying the file's wrapped DEK, then the
// content in 4 KiB blocks, each sealed with AES-256-GCM under a per-file
// subkey. Every file ends with a block marked final, so truncation is
// detected; every block's associated data binds the header's fixed fields
// and the block's position, so blocks cannot move within or between files.
//
// Readers never return a byte of a block before that block authenticated.
// Authentication failures are *CorruptError values wrapping ErrAuth.
package format

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// The v1 layout, docs/FORMAT.md.
const (
	// Magic starts every tencrypt file.
	Magic = "TENC"
	// Version1 is the format version this package writes and reads.
	Version1 = 1
	// BlockSize is the plaintext size of every block but the last.
	BlockSize = 4096
	// FileIDSize is the size of the random file ID.
	FileIDSize = 16
	// BlockOverhead is what sealing adds to a block: nonce (12) and tag (16).
	BlockOverhead = cryptocore.BlockOverhead
	// SealedBlockSize is the on-disk size of a full block.
	SealedBlockSize = BlockSize + BlockOverhead
	// MaxBlocks bounds the blocks one file's key may seal (random 96-bit
	// nonces); a streaming writer refuses to go beyond it (16 TiB).
	MaxBlocks = 1 << 32

	// fixedSize is magic ‖ version ‖ suite ‖ block size ‖ file ID ‖ blob length.
	fixedSize = 4 + 1 + 1 + 4 + FileIDSize + 2
	// adPrefixSize is the part of the fixed header every block's AD repeats.
	adPrefixSize = fixedSize - 2
	// headerTagSize is the header seal: nonce ‖ GCM tag of an empty message.
	headerTagSize = cryptocore.BlockOverhead
	// MaxHeaderSize is the largest valid header.
	MaxHeaderSize = fixedSize + keys.MaxWrappedKeySize + headerTagSize
	// adSize is adPrefix ‖ block number (8) ‖ final flag (1).
	adSize = adPrefixSize + 8 + 1
)

// Suite identifies the AEAD of the content blocks.
type Suite uint8

// SuiteAES256GCM is AES-256-GCM with random 96-bit nonces, the only suite
// of v1.
const SuiteAES256GCM Suite = 1

func (s Suite) String() string {
	if s == SuiteAES256GCM {
		return "AES-256-GCM"
	}
	return fmt.Sprintf("suite-%d", uint8(s))
}

// Errors callers branch on with errors.Is.
var (
	// ErrAuth: a block or the header did not authenticate, or the file was
	// cut short: tampered with, corrupted, or opened with the wrong key.
	ErrAuth = errors.New("authentication failed: the file was tampered with or corrupted, or the key is wrong")
	// ErrNotTencrypt: the input does not start with the tencrypt magic.
	ErrNotTencrypt = errors.New("not a tencrypt-encrypted file")
	// ErrUnknownVersion: a tencrypt file of a format version or cipher
	// suite this binary does not know.
	ErrUnknownVersion = errors.New("unknown tencrypt file format version or cipher suite: upgrade tencrypt to read it")
	// ErrMalformed: the header is not well formed (truncated, a field out of
	// bounds): the file is corrupted or was tampered with.
	ErrMalformed = errors.New("malformed tencrypt file header: the file is corrupted or was tampered with")
	// ErrTooLarge: a streaming writer reached MaxBlocks.
	ErrTooLarge = errors.New("file too large for one key: more than 2^32 blocks (16 TiB)")
)

// HeaderBlock is the Block of a CorruptError about the header.
const HeaderBlock = -1

// CorruptError reports a block (or the header, Block == HeaderBlock) that
// failed authentication, or a file cut short. It wraps ErrAuth. Reason is
// the same for every cryptographic failure, so it never tells which check
// failed; it differs only for facts visible without a key (the length).
type CorruptError struct {
	Path   string
	Block  int64
	Reason string
}

func (e *CorruptError) Error() string {
	where := "header"
	if e.Block != HeaderBlock {
		where = fmt.Sprintf("block %d", e.Block)
	}
	path := e.Path
	if path == "" {
		path = "(input)"
	}
	return fmt.Sprintf("%s: %s: %s: %v", path, where, e.Reason, ErrAuth)
}

// Unwrap returns ErrAuth.
func (e *CorruptError) Unwrap() error { return ErrAuth }

// Reasons of CorruptError. reasonAuth is the one reason given for any AEAD
// failure; the others are facts visible from the length alone.
const (
	reasonAuth       = "does not authenticate"
	reasonTruncated  = "the file ends without its final block (truncated)"
	reasonShortBlock = "the last block is shorter than a sealed block can be (truncated)"
	reasonEmptyFinal = "an empty final block after full blocks, which tencrypt never writes"
)

// Header is a parsed file header. Its fields other than FileID and Key are
// fixed in v1; Key is the wrapped DEK, and its tenant, provider and KEK
// version are public (they are what `tencrypt file inspect` prints).
type Header struct {
	Version   uint8
	Suite     Suite
	BlockSize int
	FileID    [FileIDSize]byte
	Key       keys.WrappedKey

	// raw is the encoded header, seal included once sealed or parsed.
	raw []byte
}

// Size is the header's encoded length.
func (h *Header) Size() int { return len(h.raw) }

// Bytes returns the encoded header, seal included. The caller must not
// modify it.
func (h *Header) Bytes() []byte { return h.raw }

// authenticated is the part of the header the header seal covers: all of
// it but the seal.
func (h *Header) authenticated() []byte { return h.raw[:len(h.raw)-headerTagSize] }

func (h *Header) seal() []byte { return h.raw[len(h.raw)-headerTagSize:] }

// newHeader encodes a header for a fresh file ID, with an empty seal.
func newHeader(fileID [FileIDSize]byte, wk keys.WrappedKey) (*Header, error) {
	blob, err := wk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("file header: %w", err)
	}
	b := make([]byte, 0, fixedSize+len(blob)+headerTagSize)
	b = append(b, Magic...)
	b = append(b, Version1, byte(SuiteAES256GCM))
	b = binary.BigEndian.AppendUint32(b, BlockSize)
	b = append(b, fileID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(blob)))
	b = append(b, blob...)
	b = append(b, make([]byte, headerTagSize)...)
	return &Header{Version: Version1, Suite: SuiteAES256GCM, BlockSize: BlockSize, FileID: fileID, Key: wk, raw: b}, nil
}

// withKey returns a copy of h naming another wrapped key (a rewrap), with an
// empty seal.
func (h *Header) withKey(wk keys.WrappedKey) (*Header, error) { return newHeader(h.FileID, wk) }

func headerError(sentinel error, what string, b []byte) error {
	return fmt.Errorf("%w: %s (header starts %s)", sentinel, what, hex.EncodeToString(b[:min(len(b), fixedSize)]))
}

// checkPrefix validates the fixed part of a header (at least fixedSize
// bytes, or fewer for the errors found in them) and returns the wrapped-key
// length it announces.
func checkPrefix(b []byte) (int, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return 0, headerError(ErrNotTencrypt, "no TENC magic", b)
	}
	if len(b) < 6 {
		return 0, headerError(ErrMalformed, "truncated after the magic", b)
	}
	if b[4] != Version1 {
		return 0, headerError(ErrUnknownVersion, fmt.Sprintf("format version %d (this tencrypt reads version %d)", b[4], Version1), b)
	}
	if Suite(b[5]) != SuiteAES256GCM {
		return 0, headerError(ErrUnknownVersion, fmt.Sprintf("cipher suite %d (this tencrypt knows %d, %v)", b[5], SuiteAES256GCM, SuiteAES256GCM), b)
	}
	if len(b) < fixedSize {
		return 0, headerError(ErrMalformed, fmt.Sprintf("truncated: %d bytes, the fixed header is %d", len(b), fixedSize), b)
	}
	if bs := binary.BigEndian.Uint32(b[6:]); bs != BlockSize {
		return 0, headerError(ErrMalformed, fmt.Sprintf("block size %d (version 1 has %d)", bs, BlockSize), b)
	}
	if bytes.Equal(b[10:10+FileIDSize], make([]byte, FileIDSize)) {
		return 0, headerError(ErrMalformed, "all-zero file ID", b)
	}
	n := int(binary.BigEndian.Uint16(b[fixedSize-2:]))
	if n == 0 || n > keys.MaxWrappedKeySize {
		return 0, headerError(ErrMalformed, fmt.Sprintf("wrapped key of %d bytes (want 1 to %d)", n, keys.MaxWrappedKeySize), b)
	}
	return n, nil
}

// ParseHeader parses exactly one header, strictly: a wrong magic is
// ErrNotTencrypt, an unknown version or suite ErrUnknownVersion, and a wrong
// length, block size, all-zero file ID or wrapped key out of bounds
// ErrMalformed. It does not check the header's seal, which needs the key:
// the readers do. b is copied.
func ParseHeader(b []byte) (*Header, error) {
	n, err := checkPrefix(b)
	if err != nil {
		return nil, err
	}
	if want := fixedSize + n + headerTagSize; len(b) != want {
		return nil, headerError(ErrMalformed, fmt.Sprintf("header of %d bytes, its fields give %d", len(b), want), b)
	}
	h := &Header{Version: Version1, Suite: SuiteAES256GCM, BlockSize: BlockSize, raw: bytes.Clone(b)}
	copy(h.FileID[:], b[10:])
	if err := h.Key.UnmarshalBinary(b[fixedSize : fixedSize+n]); err != nil {
		return nil, headerError(ErrMalformed, err.Error(), b)
	}
	if h.Key.Purpose != Purpose {
		return nil, headerError(ErrMalformed, fmt.Sprintf("wrapped key for purpose %q, not %q", h.Key.Purpose, Purpose), b)
	}
	return h, nil
}

// Purpose is the keys purpose of every file DEK.
const Purpose = "file"

// ReadHeader reads and parses the header at the start of r, reading no
// further than its end.
func ReadHeader(r io.Reader) (*Header, error) {
	buf := make([]byte, fixedSize, MaxHeaderSize)
	if n, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if _, perr := checkPrefix(buf[:n]); perr != nil {
				return nil, perr
			}
			return nil, headerError(ErrMalformed, "truncated header", buf[:n])
		}
		return nil, fmt.Errorf("read the file header: %w", err)
	}
	n, err := checkPrefix(buf)
	if err != nil {
		return nil, err
	}
	buf = buf[:fixedSize+n+headerTagSize]
	if _, err := io.ReadFull(r, buf[fixedSize:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, headerError(ErrMalformed, "truncated header", buf)
		}
		return nil, fmt.Errorf("read the file header: %w", err)
	}
	return ParseHeader(buf)
}

// Unwrapper returns the DEK in a file's wrapped key; keys.Envelope.Unwrap
// with Purpose and a caller name is the usual one. It owns the audit.
type Unwrapper func(wk keys.WrappedKey) (keys.DEK, error)

// options are the settings Option sets.
type options struct {
	path   string
	random io.Reader
}

// Option changes how a reader or writer works.
type Option func(*options)

// WithPath names the file in CorruptError values.
func WithPath(path string) Option { return func(o *options) { o.path = path } }

// withRandom replaces the CSPRNG that makes file IDs and nonces, for
// known-answer tests only.
func withRandom(r io.Reader) Option { return func(o *options) { o.random = r } }

func getOptions(opts []Option) options {
	o := options{random: rand.Reader}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// fileKeys holds a file's subkeys, derived from its DEK.
type fileKeys struct {
	content, header *cryptocore.BlockAEAD
}

// deriveKeys derives the content and header keys of the file h describes
// from dek: HKDF-SHA256(DEK, salt = file ID, info = label).
func deriveKeys(dek *keys.DEK, h *Header, random io.Reader) (*fileKeys, error) {
	secret := cryptocore.Key(*dek)
	defer secret.Zero()
	ck := cryptocore.DeriveKey(&secret, h.FileID[:], cryptocore.LabelFileContent)
	defer ck.Zero()
	hk := cryptocore.DeriveKey(&secret, h.FileID[:], cryptocore.LabelFileHeader)
	defer hk.Zero()
	c, err := cryptocore.NewBlockAESGCM(&ck, random)
	if err != nil {
		return nil, err
	}
	hd, err := cryptocore.NewBlockAESGCM(&hk, random)
	if err != nil {
		return nil, err
	}
	return &fileKeys{content: c, header: hd}, nil
}

// sealHeader writes the header seal into h.
func (k *fileKeys) sealHeader(h *Header) error {
	s, err := k.header.SealBlock(make([]byte, 0, headerTagSize), nil, h.authenticated())
	if err != nil {
		return err
	}
	copy(h.seal(), s)
	return nil
}

// checkHeader verifies h's seal.
func (k *fileKeys) checkHeader(h *Header, path string) error {
	if _, err := k.header.OpenBlock(nil, h.seal(), h.authenticated()); err != nil {
		return &CorruptError{Path: path, Block: HeaderBlock, Reason: reasonAuth}
	}
	return nil
}

// blockAD is the associated data of one block:
//
//	ad = magic ‖ version ‖ suite ‖ block size (BE32) ‖ fileID ‖ blockNo (BE64) ‖ final (1 byte)
//
// The first five fields are the header's first 26 bytes, so a changed
// version, suite, block size or file ID fails every block.
type blockAD [adSize]byte

func newBlockAD(h *Header) blockAD {
	var ad blockAD
	copy(ad[:], h.raw[:adPrefixSize])
	return ad
}

// set fills in the block number and final flag.
func (ad *blockAD) set(block int64, final bool) []byte {
	binary.BigEndian.PutUint64(ad[adPrefixSize:], uint64(block))
	ad[adSize-1] = 0
	if final {
		ad[adSize-1] = 1
	}
	return ad[:]
}

// openHeader unwraps the DEK of h, derives its keys and checks its seal.
func openHeader(h *Header, unwrap Unwrapper, o options) (*fileKeys, error) {
	var dek keys.DEK
	defer dek.Zero()
	return openHeaderDEK(h, unwrap, o, &dek)
}

// openHeaderDEK is openHeader leaving the DEK in *dek for a caller that
// needs it too (Rewrap); the caller zeroes it, also after an error.
func openHeaderDEK(h *Header, unwrap Unwrapper, o options, dek *keys.DEK) (*fileKeys, error) {
	var err error
	if *dek, err = unwrap(h.Key); err != nil {
		return nil, fmt.Errorf("%s: unwrap the file key: %w", displayPath(o.path), err)
	}
	k, err := deriveKeys(dek, h, o.random)
	if err != nil {
		return nil, err
	}
	if err := k.checkHeader(h, o.path); err != nil {
		return nil, err
	}
	return k, nil
}

func displayPath(p string) string {
	if p == "" {
		return "(input)"
	}
	return p
}

// CiphertextSize is the on-disk size of a file of plaintext bytes whose
// header is headerSize bytes.
func CiphertextSize(headerSize int, plaintext int64) int64 {
	blocks := (plaintext + BlockSize - 1) / BlockSize
	if blocks == 0 {
		blocks = 1 // an empty file has one empty final block
	}
	return int64(headerSize) + plaintext + blocks*BlockOverhead
}

// PlaintextSize computes the plaintext size of a file from its total size
// and header size. It fails with a CorruptError if the size cannot be that
// of a complete file (no final block, or a last block shorter than its
// overhead).
func PlaintextSize(headerSize int, fileSize int64) (int64, error) {
	body := fileSize - int64(headerSize)
	if body < BlockOverhead {
		return 0, &CorruptError{Block: 0, Reason: reasonTruncated}
	}
	blocks := (body + SealedBlockSize - 1) / SealedBlockSize
	last := body - (blocks-1)*SealedBlockSize
	if last < BlockOverhead {
		return 0, &CorruptError{Block: blocks - 1, Reason: reasonShortBlock}
	}
	if last == BlockOverhead && blocks > 1 {
		return 0, &CorruptError{Block: blocks - 1, Reason: reasonEmptyFinal}
	}
	return body - blocks*BlockOverhead, nil
}

// Rewrap returns h re-pointed at a new wrapped key for the same DEK, with
// a new seal; the content blocks are unchanged, so only the header needs
// rewriting. It unwraps h's key, checks h's seal, asks rewrap for the new
// wrapped key (keys.Envelope.Rewrap), and unwraps that too to check it
// holds the same DEK before anything is written: a faulty backend must not
// make the file unreadable.
func Rewrap(h *Header, unwrap Unwrapper, rewrap func(keys.WrappedKey) (keys.WrappedKey, error), opts ...Option) (*Header, error) {
	o := getOptions(opts)
	var dek keys.DEK
	defer dek.Zero()
	k, err := openHeaderDEK(h, unwrap, o, &dek)
	if err != nil {
		return nil, err
	}
	wk, err := rewrap(h.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: rewrap the file key: %w", displayPath(o.path), err)
	}
	check, err := unwrap(wk)
	if err != nil {
		return nil, fmt.Errorf("%s: unwrap the rewrapped file key: %w", displayPath(o.path), err)
	}
	same := check.Equal(&dek)
	check.Zero()
	if !same {
		return nil, fmt.Errorf("%s: BUG: the backend rewrapped the file key into another key; the file was not changed", displayPath(o.path))
	}
	nh, err := h.withKey(wk)
	if err != nil {
		return nil, err
	}
	if err := k.sealHeader(nh); err != nil {
		return nil, err
	}
	return nh, nil
}
