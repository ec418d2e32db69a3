#!/usr/bin/env python3
"""Verifies vouchers with PyPI jwcrypto, an independent JOSE implementation, given only the
server's JWKS. Reads {"jwks", "issuer", "tokens": [...]} on stdin; writes one result per token:
{"ok": true, "claims": {...}} or {"ok": false, "error": "<exception class>"}."""
import json
import sys

from jwcrypto import jwk, jwt

data = json.load(sys.stdin)
keys = jwk.JWKSet.from_json(json.dumps(data["jwks"]))
results = []
for token in data["tokens"]:
    try:
        t = jwt.JWT(
            jwt=token,
            key=keys,
            algs=["ES256"],
            check_claims={"iss": data["issuer"], "exp": None, "nbf": None},
        )
        header = json.loads(t.header)
        if header.get("typ") != "voucher+jwt":
            raise ValueError("typ")
        results.append({"ok": True, "claims": json.loads(t.claims)})
    except Exception as e:  # noqa: BLE001 - the class name is the answer
        results.append({"ok": False, "error": type(e).__name__})
json.dump(results, sys.stdout)
