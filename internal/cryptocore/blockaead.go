package cryptocore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
)

// HKDF info labels of the file format (docs/FORMAT.md). The salt is the
// file's 128-bit file ID, so two files never share a subkey even if they
// shared a DEK. Changing a label changes the on-disk format.
const (
	// LabelFileContent derives the key that seals a file's content blocks
	// from its DEK.
	LabelFileContent = "tencrypt file v1 content"
	// LabelFileHeader derives the key that authenticates a file's header
	// from its DEK.
	LabelFileHeader = "tencrypt file v1 header"
)

// BlockAEAD seals the blocks of one file with AES-256-GCM under one per-file
// subkey, each with a fresh random 96-bit nonce written in front of it:
// nonce (12) ‖ ciphertext ‖ tag (16). Random nonces are safe while a key
// seals well under 2^32 blocks, which a per-file key (16 TiB of writes)
// keeps to. It is safe for concurrent use if its nonce source is.
type BlockAEAD struct {
	gcm    cipher.AEAD
	nonces io.Reader
}

// BlockNonceSize, BlockTagSize and BlockOverhead are the sizes of a sealed
// block's parts.
const (
	BlockNonceSize = GCMNonceSize
	BlockTagSize   = TagSize
	BlockOverhead  = BlockNonceSize + BlockTagSize
)

// NewBlockAESGCM returns a BlockAEAD under k. nonces is the nonce source:
// nil means the operating system's CSPRNG, which is the only choice outside
// known-answer tests. The caller may zero k afterwards.
func NewBlockAESGCM(k *Key, nonces io.Reader) (*BlockAEAD, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("cryptocore: AES-256: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("cryptocore: GCM: %w", err)
	}
	if nonces == nil {
		nonces = rand.Reader
	}
	return &BlockAEAD{gcm: g, nonces: nonces}, nil
}

// SealBlock appends nonce ‖ ciphertext ‖ tag of plaintext, authenticating
// ad, to dst and returns the result. dst's spare capacity must not overlap
// plaintext. It fails only if an injected nonce source fails.
func (a *BlockAEAD) SealBlock(dst, plaintext, ad []byte) ([]byte, error) {
	if len(plaintext) > maxSealedPlaintext {
		panic("BUG: cryptocore: SealBlock of an oversize block")
	}
	n := len(dst)
	out := grow(dst, BlockNonceSize+len(plaintext)+BlockTagSize)
	nonce := out[n : n+BlockNonceSize]
	if _, err := io.ReadFull(a.nonces, nonce); err != nil {
		return dst, fmt.Errorf("cryptocore: nonce source: %w", err)
	}
	return a.gcm.Seal(out[:n+BlockNonceSize], nonce, plaintext, ad), nil
}

// OpenBlock checks and opens sealed (nonce ‖ ciphertext ‖ tag) with ad and
// appends the plaintext to dst. Any failure is ErrAuth and nothing is
// appended. An all-zero nonce is refused: it is what a zeroed region (a
// hole) looks like, never what SealBlock writes.
func (a *BlockAEAD) OpenBlock(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < BlockOverhead {
		return nil, ErrAuth
	}
	var zero [BlockNonceSize]byte
	nonce := sealed[:BlockNonceSize]
	if subtle.ConstantTimeCompare(nonce, zero[:]) == 1 {
		return nil, ErrAuth
	}
	out, err := a.gcm.Open(dst, nonce, sealed[BlockNonceSize:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// grow returns b extended by n bytes, reallocating only when its capacity
// is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// GCMBaseline measures the machine's raw AES-256-GCM rate over blocks of one
// size, for benchmarks that report their rate as a ratio of it. It seals
// under a fixed nonce into its own buffer, which is safe only because no
// output ever leaves it: nothing is returned but an error.
type GCMBaseline struct {
	gcm           cipher.AEAD
	nonce, pt, ct []byte
	sealed        []byte
}

// NewGCMBaseline returns a baseline over blocks of blockSize bytes under a
// random key.
func NewGCMBaseline(blockSize int) *GCMBaseline {
	k := NewRandomKey()
	defer k.Zero()
	b, _ := aes.NewCipher(k[:])
	g, _ := cipher.NewGCM(b)
	bl := &GCMBaseline{gcm: g, nonce: make([]byte, GCMNonceSize), pt: make([]byte, blockSize), ct: make([]byte, 0, blockSize+TagSize)}
	_, _ = rand.Read(bl.nonce)
	bl.sealed = g.Seal(nil, bl.nonce, bl.pt, nil)
	return bl
}

// Seal seals one block, as a block cipher mode would, and discards it.
func (b *GCMBaseline) Seal() { b.ct = b.gcm.Seal(b.ct[:0], b.nonce, b.pt, nil) }

// Open opens one sealed block into the baseline's own buffer.
func (b *GCMBaseline) Open() error {
	var err error
	b.pt, err = b.gcm.Open(b.pt[:0], b.nonce, b.sealed, nil)
	return err
}
