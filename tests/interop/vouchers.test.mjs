// Vouchers from a running vouchsafe server, checked by third-party verifiers that are given only
// the JWKS: npm jose (jwtVerify + createLocalJWKSet, typ checked) and PyPI jwcrypto. Also the
// signed status list, decoded by hand as an offline verifier would.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { inflateSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader, base64url, errors } from "jose";

const URL_ = process.env.VOUCHSAFE_URL;
const TOKEN = process.env.VOUCHSAFE_TOKEN;
if (!URL_ || !TOKEN) throw new Error("set VOUCHSAFE_URL and VOUCHSAFE_TOKEN (scripts/test does)");
const ISSUER = URL_; // scripts/interop sets the server's issuer to its own URL

async function api(method, path, body, headers = {}) {
  const res = await fetch(URL_ + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const jwks = async () => (await fetch(URL_ + "/.well-known/jwks.json")).json();

const voucher = (i) => ({ sub: `hh-${i}`, aud: "cash-transfer-2026", amount: "1500.00", currency: "KES" });

async function joseVerify(token, keys) {
  return jwtVerify(token, createLocalJWKSet(keys), {
    issuer: ISSUER,
    audience: "cash-transfer-2026",
    typ: "voucher+jwt",
    algorithms: ["ES256"],
    requiredClaims: ["exp", "jti", "nbf", "iat"],
  });
}

function jwcrypto(keys, tokens) {
  const script = fileURLToPath(new URL("./verify_jwcrypto.py", import.meta.url));
  const r = spawnSync("python3", [script], { input: JSON.stringify({ jwks: keys, issuer: ISSUER, tokens }) });
  assert.equal(r.status, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString());
}

test("single and batch vouchers verify in jose and jwcrypto with only the JWKS", async () => {
  const one = await api("POST", "/v1/vouchers", { ...voucher(0), claims: { cycle: "2026-11" } });
  assert.equal(one.status, 201, JSON.stringify(one.body));
  const batch = await api("POST", "/v1/vouchers/batch", { items: [1, 2, 3, 4, 5].map(voucher) });
  assert.equal(batch.status, 201, JSON.stringify(batch.body));
  const tokens = [one.body.token, ...batch.body.items.map((v) => v.token)];
  const keys = await jwks();
  for (const [i, t] of tokens.entries()) {
    const { payload, protectedHeader } = await joseVerify(t, keys);
    assert.deepEqual(Object.keys(protectedHeader).sort(), ["alg", "kid", "typ"]);
    assert.equal(payload.sub, `hh-${i}`);
    assert.equal(payload.amount, "1500.00");
    assert.match(payload.status.status_list.uri, /\/v1\/status\/\d+$/);
  }
  const py = jwcrypto(keys, tokens);
  assert.deepEqual(py.map((r) => r.ok), tokens.map(() => true), JSON.stringify(py));
  assert.equal(py[0].claims.cycle, "2026-11");
  assert.equal(py[3].claims.jti, batch.body.items[2].jti);
});

test("tampered and alg:none vouchers fail in jose and jwcrypto too", async () => {
  const { body } = await api("POST", "/v1/vouchers", voucher(9));
  const [h, p, s] = body.token.split(".");
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
  const richer = base64url.encode(JSON.stringify({ ...claims, amount: "9999999.00" }));
  const tampered = `${h}.${richer}.${s}`;
  const keys = await jwks();
  await assert.rejects(joseVerify(tampered, keys), errors.JWSSignatureVerificationFailed);
  const noneAlg = `${base64url.encode(JSON.stringify({ alg: "none", typ: "voucher+jwt" }))}.${p}.`;
  await assert.rejects(joseVerify(noneAlg, keys));
  const py = jwcrypto(keys, [tampered, noneAlg, body.token]);
  assert.deepEqual(py.map((r) => r.ok), [false, false, true], JSON.stringify(py));
  // The server agrees.
  const r = await api("POST", "/v1/vouchers/redeem", { token: tampered });
  assert.equal(r.body.error.code, "bad_signature");
});

test("an NDJSON stream of 3 000 vouchers: every line verifies in jose", async () => {
  const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify(voucher(i))).join("\n") + "\n";
  const res = await fetch(URL_ + "/v1/vouchers/batch", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/x-ndjson" },
    body: lines,
  });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  const out = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, 3001);
  assert.deepEqual(out.at(-1), { done: true, issued: 3000, rejected: 0 });
  const keys = await jwks();
  const set = createLocalJWKSet(keys);
  const jtis = new Set();
  for (const line of out.slice(0, 3000)) {
    const { payload } = await jwtVerify(line.token, set, { issuer: ISSUER, typ: "voucher+jwt", algorithms: ["ES256"] });
    assert.equal(payload.sub, `hh-${line.line - 1}`);
    jtis.add(payload.jti);
  }
  assert.equal(jtis.size, 3000);
});

test("redeem once, revoke, and the signed status list shows the revocation", async () => {
  const a = (await api("POST", "/v1/vouchers", voucher(100))).body;
  const b = (await api("POST", "/v1/vouchers", voucher(101))).body;
  const first = await api("POST", "/v1/vouchers/redeem", { token: a.token }, { "idempotency-key": "r-1" });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const again = await api("POST", "/v1/vouchers/redeem", { token: a.token });
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, "already_redeemed");
  assert.equal(again.body.error.redeemed_at, first.body.redeemed_at);
  const rev = await api("POST", `/v1/vouchers/${b.jti}/revoke`, {});
  assert.equal(rev.status, 200, JSON.stringify(rev.body));

  const { payload: vb } = await joseVerify(b.token, await jwks());
  const { uri, idx } = vb.status.status_list;
  assert.equal(rev.body.status.uri, uri);
  const res = await fetch(URL_ + new URL(uri).pathname);
  assert.equal(res.headers.get("content-type"), "application/statuslist+jwt");
  const listJwt = await res.text();
  assert.equal(decodeProtectedHeader(listJwt).typ, "statuslist+jwt");
  const { payload: list } = await jwtVerify(listJwt, createLocalJWKSet(await jwks()), {
    typ: "statuslist+jwt",
    algorithms: ["ES256"],
    subject: uri,
  });
  assert.equal(list.status_list.bits, 1);
  const bytes = inflateSync(Buffer.from(base64url.decode(list.status_list.lst)));
  const bit = (i) => (bytes[i >> 3] >> (i & 7)) & 1;
  assert.equal(bit(idx), 1, "revoked voucher's bit is set");
  const { payload: va } = await joseVerify(a.token, await jwks());
  assert.equal(bit(va.status.status_list.idx), 0, "a redeemed voucher is not revoked");
  assert.ok(list.ttl > 0 && list.exp > list.iat);
});
