package pkcs11

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
)

// Object labels on a tenant's token (docs/PKCS11.md):
//
//	tencrypt:<tenant>:v<N>      CKO_SECRET_KEY, AES-256, KEK version N (N >= 1)
//	tencrypt:<tenant>:shredded  CKO_DATA, the tombstone Shred leaves
const (
	labelPrefix   = "tencrypt:"
	shreddedLabel = "shredded"
	application   = "tencrypt"
)

func kekLabel(tenant string, version uint32) string {
	return labelPrefix + tenant + ":v" + strconv.FormatUint(uint64(version), 10)
}

func tombstoneLabel(tenant string) string {
	return labelPrefix + tenant + ":" + shreddedLabel
}

// kekID is a KEK's CKA_ID: tenant ‖ ':' ‖ version (BE32). PKCS#11 tools
// show and select keys by ID; the label is what tencrypt searches by.
func kekID(tenant string, version uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(tenant+":"), version)
}

// kekTemplate is the template of a new KEK: an AES-256 key that lives on the
// token and never leaves it. It may only encrypt and decrypt; it cannot wrap
// or be wrapped, copied or changed.
func kekTemplate(tenant string, version uint32) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, kekLabel(tenant, version)),
		pkcs11.NewAttribute(pkcs11.CKA_ID, kekID(tenant, version)),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_COPYABLE, false),
	}
}

// tombstoneTemplate is the CKO_DATA object that marks a shredded tenant.
// It is public (readable without login) and holds the time of the shred.
func tombstoneTemplate(tenant string, at time.Time) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, tombstoneLabel(tenant)),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, application),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte(at.UTC().Format(time.RFC3339))),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
	}
}

// inventory is what a tenant's token holds.
type inventory struct {
	versions map[uint32]pkcs11.ObjectHandle
	current  uint32 // highest version; 0 if none
	min      uint32 // lowest version; 0 if none
	shredded bool
	tomb     pkcs11.ObjectHandle
}

// exists reports whether the tenant has keys or a tombstone.
func (inv inventory) exists() bool { return inv.shredded || len(inv.versions) > 0 }

// takeInventory lists the tencrypt objects on the token of session s. An
// object labelled for another tenant is an error: each tenant has its own
// token, and a token shared by two would not keep them apart.
func takeInventory(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, tenant, tokenLabel string) (inventory, error) {
	inv := inventory{versions: map[uint32]pkcs11.ObjectHandle{}}
	handles, err := findAll(ctx, s, nil)
	if err != nil {
		return inv, err
	}
	for _, h := range handles {
		attrs, err := ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		})
		if err != nil {
			return inv, mapErr("C_GetAttributeValue", err)
		}
		label := string(attrs[1].Value)
		rest, ok := strings.CutPrefix(label, labelPrefix)
		if !ok {
			continue // not ours
		}
		owner, what, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if owner != tenant {
			return inv, fmt.Errorf("pkcs11: token %q holds object %q of tenant %q, not only objects of %q: give each tenant its own token",
				tokenLabel, label, owner, tenant)
		}
		class := uint(0)
		if len(attrs[0].Value) > 0 {
			class = uint(attrUint(attrs[0].Value))
		}
		switch {
		case what == shreddedLabel && class == pkcs11.CKO_DATA:
			inv.shredded, inv.tomb = true, h
		case strings.HasPrefix(what, "v") && class == pkcs11.CKO_SECRET_KEY:
			v, err := parseVersion(what[1:])
			if err != nil {
				return inv, fmt.Errorf("pkcs11: token %q: object %q: %w", tokenLabel, label, err)
			}
			if _, dup := inv.versions[v]; dup {
				return inv, fmt.Errorf("pkcs11: token %q holds two keys labelled %q (two admins rotated at once?): destroy the newer one that wrapped nothing",
					tokenLabel, label)
			}
			inv.versions[v] = h
			if v > inv.current {
				inv.current = v
			}
			if inv.min == 0 || v < inv.min {
				inv.min = v
			}
		}
	}
	return inv, nil
}

// parseVersion parses the N of "vN": canonical decimal, at least 1.
func parseVersion(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 || strconv.FormatUint(v, 10) != s {
		return 0, fmt.Errorf("bad version %q", s)
	}
	return uint32(v), nil
}

// attrUint decodes a CK_ULONG attribute, which the library returns in host
// byte order and size.
func attrUint(b []byte) uint64 {
	switch len(b) {
	case 8:
		return binary.NativeEndian.Uint64(b)
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	}
	return 0
}

// findAll returns every object matching template that the session can see.
func findAll(ctx *pkcs11.Ctx, s pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(s, template); err != nil {
		return nil, mapErr("C_FindObjectsInit", err)
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := ctx.FindObjects(s, 64)
		if err != nil {
			_ = ctx.FindObjectsFinal(s)
			return nil, mapErr("C_FindObjects", err)
		}
		all = append(all, hs...)
		if len(hs) < 64 {
			break
		}
	}
	if err := ctx.FindObjectsFinal(s); err != nil {
		return nil, mapErr("C_FindObjectsFinal", err)
	}
	return all, nil
}
