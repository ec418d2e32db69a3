#!/usr/bin/env python3
"""Writes jwcrypto.json: JWEs and a voucher JWS made by an independent JOSE implementation
(PyPI jwcrypto), which vouchsafe's Rust and JS tests must open and verify.

Run by hand (`pip install jwcrypto`, then `python3 generate_jwcrypto.py`); the output is
committed so the tests need no Python. Keys are fixed test keys, not secrets.
"""
import base64
import importlib.metadata
import json
import time

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import json_encode


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ec_key(d_hex: str, kid: str) -> jwk.JWK:
    from cryptography.hazmat.primitives.asymmetric import ec

    priv = ec.derive_private_key(int(d_hex, 16), ec.SECP256R1())
    k = jwk.JWK.from_pyca(priv)
    exported = json.loads(k.export(private_key=True))
    exported["kid"] = kid
    return jwk.JWK(**exported)


kek = jwk.JWK(kty="oct", k=b64(bytes(range(32))), kid="pii.v3")
seal = ec_key("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721", "pii-seal.v1")
sign = ec_key("519b423d715f8b581f4fa8ee59f4771a5b44c8130b4e3eacca54a56dda72b464", "vouchers.v1")

plaintext = "0712 345 678 — Amina Wanjiru".encode()
ctx = "registrant/123/phone"

online = jwe.JWE(plaintext, json_encode({"alg": "A256GCMKW", "enc": "A256GCM", "kid": "pii.v3", "ctx": ctx}))
online.add_recipient(kek)
offline = jwe.JWE(plaintext, json_encode({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": "pii-seal.v1", "ctx": ctx}))
offline.add_recipient(seal)

claims = {
    "iss": "https://keys.example.org", "sub": "beneficiary-42", "aud": "food-2026",
    "jti": "01J9Z8-0001", "iat": 1790000000, "nbf": 1790000000, "exp": 1790086400,
    "amount": "1500.00", "currency": "KES",
    "status": {"status_list": {"idx": 17, "uri": "https://keys.example.org/v1/status/1"}},
}
voucher = jws.JWS(json.dumps(claims).encode())
voucher.add_signature(sign, None, json_encode({"alg": "ES256", "typ": "voucher+jwt", "kid": "vouchers.v1"}))

out = {
    "generator": "jwcrypto " + importlib.metadata.version("jwcrypto"),
    "generated": time.strftime("%Y-%m-%d"),
    "kek": json.loads(kek.export()),
    "seal_private_jwk": json.loads(seal.export(private_key=True)),
    "jwks": {"keys": [
        dict(json.loads(seal.export_public()), use="enc", alg="ECDH-ES+A256KW"),
        dict(json.loads(sign.export_public()), use="sig", alg="ES256"),
    ]},
    "plaintext_utf8": plaintext.decode(),
    "ctx": ctx,
    "jwe_a256gcmkw": online.serialize(compact=True),
    "jwe_ecdh_es_a256kw": offline.serialize(compact=True),
    "voucher": voucher.serialize(compact=True),
    "voucher_claims": claims,
    "voucher_valid_at": 1790000100,
}
with open("jwcrypto.json", "w") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write("\n")
print("wrote jwcrypto.json")
