#!/usr/bin/env python3
"""Independent checker of the names of volume format 2 (docs/NAMES.md), used
once to cross-check testdata/vectors.json written by the Go code: HKDF
labels, EME (Halevi-Rogaway, from the paper) over name ‖ PKCS#7 ‖ 16 zero
bytes, base64url, long names, directory IV files and symlink targets
(XChaCha20-Poly1305 = HChaCha20 + ChaCha20-Poly1305). Usage:
    verify-v2.py testdata/vectors.json   -> prints "ok N vectors"
Needs python3-cryptography. Not run by go test."""
import base64, hashlib, hmac, json, struct, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

def hkdf(ikm, salt, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))

def times2(b):  # GF(2^128), little-endian bytes as in EME
    n = int.from_bytes(b, "little") << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ 0x87
    return n.to_bytes(16, "little")

def eme_encrypt(key, tweak, p):
    aes = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    E = lambda x: aes.update(x)
    m = len(p) // 16
    L = [times2(E(bytes(16)))]
    for _ in range(m - 1):
        L.append(times2(L[-1]))
    PPP = [E(xor(p[16 * j:16 * j + 16], L[j])) for j in range(m)]
    MP = tweak
    for x in PPP:
        MP = xor(MP, x)
    MC = E(MP)
    M = xor(MP, MC)
    CCC = [None] * m
    for j in range(1, m):
        M = times2(M)
        CCC[j] = xor(PPP[j], M)
    c1 = xor(MC, tweak)
    for j in range(1, m):
        c1 = xor(c1, CCC[j])
    CCC[0] = c1
    return b"".join(xor(E(CCC[j]), L[j]) for j in range(m))

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def rotl(v, n):
    return ((v << n) & 0xffffffff) | (v >> (32 - n))

def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = rotl(s[b] ^ s[c], 7)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))

def xchacha_open(key, sealed, ad):
    nonce, ct = sealed[:24], sealed[24:]
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0\0\0\0" + nonce[16:], ct, ad)

v = json.load(open(sys.argv[1]))
dek, vid, d = bytes.fromhex(v["dek"]), bytes.fromhex(v["volume_id"]), bytes.fromhex(v["dir_id"])
nk = hkdf(dek, vid, b"tencrypt names v2 EME file names")
dk = hkdf(dek, vid, b"tencrypt names v2 directory ID")
sk = hkdf(dek, vid, b"tencrypt names v2 symlink targets")
count = 0
for n in v["names"]:
    p = n["plain"].encode()
    pad = 16 - len(p) % 16
    enc = b64(eme_encrypt(nk, d, p + bytes([pad]) * pad + bytes(16)))
    assert enc == n["enc"], (n["plain"][:20], enc, n["enc"])
    stored = enc if len(enc) <= 255 else "tencrypt.longname." + b64(hashlib.sha256(enc.encode()).digest())
    assert stored == n["stored"]
    count += 1
for iv in v["dir_ivs"]:
    f = bytes.fromhex(iv["file"])
    assert len(f) == 61 and f[:5] == b"TDIV\x02"
    if iv.get("root"):
        ad = f[:5] + b"R" + vid
    else:
        ad = f[:5] + b"D" + bytes.fromhex(iv["parent"]) + iv["stored"].encode()
    assert xchacha_open(dk, f[5:], ad).hex() == iv["id"]
    count += 1
for s in v["symlinks"]:
    ad = b"tencrypt names v2 symlink" + d + s["stored"].encode()
    assert xchacha_open(sk, unb64(s["sealed"]), ad).decode() == s["target"]
    count += 1
xn = hkdf(dek, vid, b"tencrypt names v2 xattr names")
xv = hkdf(dek, vid, b"tencrypt names v2 xattr values")
for x in v["xattrs"]:
    name = x["plain"][len("user."):].encode()
    pad = 16 - len(name) % 16
    stored = "user.tencrypt." + b64(eme_encrypt(xn, bytes(16), name + bytes([pad]) * pad + bytes(16)))
    assert stored == x["stored"], (stored, x["stored"])
    sealed, entry = bytes.fromhex(x["sealed"]), bytes.fromhex(x["entry"])
    assert sealed[0] == 1
    ad = b"tencrypt names v2 xattr" + x["kind"].encode() + bytes([len(entry)]) + entry + stored.encode()
    assert xchacha_open(xv, sealed[1:], ad).decode() == x["value"]
    count += 1
print("ok", count, "vectors")
