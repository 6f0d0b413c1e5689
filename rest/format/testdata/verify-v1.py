#!/usr/bin/env python3
"""Independent reader of the tencrypt v1 file format (docs/FORMAT.md), used
once to cross-check the golden files written by the Go code. Usage:
    verify-v1.py DEK-HEX FILE  -> prints the plaintext's SHA-256
Needs python3-cryptography. Not run by go test."""
import hashlib, hmac, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def hkdf(ikm, salt, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

dek, data = bytes.fromhex(sys.argv[1]), open(sys.argv[2], "rb").read()
assert data[:4] == b"TENC" and data[4] == 1 and data[5] == 1
assert struct.unpack(">I", data[6:10])[0] == 4096
fid = data[10:26]
n = struct.unpack(">H", data[26:28])[0]
hend = 28 + n + 28
hk, ck = hkdf(dek, fid, b"tencrypt file v1 header"), hkdf(dek, fid, b"tencrypt file v1 content")
seal = data[28 + n:hend]
AESGCM(hk).decrypt(seal[:12], seal[12:], data[:28 + n])
body, out, i = data[hend:], b"", 0
blocks = [body[o:o + 4124] for o in range(0, len(body), 4124)]
for i, b in enumerate(blocks):
    ad = data[:26] + struct.pack(">Q", i) + bytes([i == len(blocks) - 1])
    out += AESGCM(ck).decrypt(b[:12], b[12:], ad)
print(len(out), hashlib.sha256(out).hexdigest())
