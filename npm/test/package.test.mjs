// Tests of the packed npm package, imported by its public name from a scratch project
// (scripts/test-npm packs and installs it). With VOUCHSAFE_URL and VOUCHSAFE_TOKEN set (scripts
// /interop does), the KeyServerClient tests run against a real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { deflateSync } from "node:zlib";
import * as jose from "jose";
import {
  init, DataKey, KeyServerClient, StatusList, VoucherVerifier, VouchsafeError, sealToPublicKey, openWithDataKey,
} from "vouchsafe";

await init();
const URL_ = process.env.VOUCHSAFE_URL;
const TOKEN = process.env.VOUCHSAFE_TOKEN;
const b64 = (bytes) => jose.base64url.encode(bytes);
const response = (dek) => ({
  kid: "pii.v1",
  plaintext: b64(dek),
  header: { alg: "A256GCMKW", enc: "A256GCM", kid: "pii.v1", iv: "AAAAAAAAAAAAAAAA", tag: "AAAAAAAAAAAAAAAAAAAAAA" },
  encrypted_key: b64(new Uint8Array(32)),
});

function code(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof VouchsafeError, `not a VouchsafeError: ${e}`);
    return e.code;
  }
  assert.fail("did not throw");
}

test("CommonJS require and ES import give the same module", () => {
  const cjs = createRequire(import.meta.url)("vouchsafe");
  assert.equal(cjs.DataKey, DataKey);
  assert.equal(cjs.VouchsafeError, VouchsafeError);
});

test("a data key seals text and bytes; context is checked; dispose wipes it", () => {
  const dek = crypto.getRandomValues(new Uint8Array(32));
  const dk = DataKey.fromResponse(response(dek));
  assert.equal(dk.kid, "pii.v1");
  const jwe = dk.seal("0712 345 678", { ctx: "registrant/123/phone" });
  assert.equal(jose.decodeProtectedHeader(jwe).ctx, "registrant/123/phone");
  assert.equal(dk.open(jwe, { ctx: "registrant/123/phone" }), "0712 345 678");
  assert.equal(openWithDataKey(dk, jwe), "0712 345 678");
  assert.equal(code(() => dk.open(jwe, { ctx: "registrant/124/phone" })), "context_mismatch");
  const bin = dk.seal(new Uint8Array([1, 2, 3]));
  assert.deepEqual(dk.open(bin), new Uint8Array([1, 2, 3]));
  const tampered = jwe.slice(0, -4) + (jwe.endsWith("AAAA") ? "BBBB" : "AAAA");
  assert.equal(code(() => dk.open(tampered)), "decrypt_failed");
  assert.equal(code(() => dk.open("not.a.jwe")), "malformed");
  dk.dispose();
  assert.equal(dk.disposed, true);
  assert.equal(code(() => dk.seal("x")), "disposed");
  assert.equal(code(() => dk.open(jwe)), "disposed");
});

test("sealToPublicKey output opens in jose; jose's own JWE content key matches", async () => {
  const { publicKey, privateKey } = await jose.generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: "pii-seal.v2", use: "enc", alg: "ECDH-ES+A256KW" };
  const jwks = { keys: [{ ...jwk, kid: "pii-seal.v1" }, jwk] };
  const jwe = sealToPublicKey(jwks, "pii-seal", '{"name":"Amina"}', { ctx: "registrant/9" });
  const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, privateKey);
  assert.equal(new TextDecoder().decode(plaintext), '{"name":"Amina"}');
  assert.equal(protectedHeader.kid, "pii-seal.v2", "the newest version");
  assert.equal(protectedHeader.ctx, "registrant/9");
  assert.equal(code(() => sealToPublicKey(jwks, "other-seal", "x")), "unknown_kid");
  assert.equal(code(() => sealToPublicKey({ keys: [{ ...jwk, d: "AAAA" }] }, "pii-seal", "x")), "invalid_key");
});

async function voucherKit() {
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: "vouchers.v1", use: "sig", alg: "ES256" };
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: "https://keys.example.org", sub: "hh-1", aud: "cash-2026", jti: "v-1",
    iat: now, nbf: now, exp: now + 3600, amount: "1500.00", currency: "KES",
    status: { status_list: { idx: 5, uri: "https://keys.example.org/v1/status/1" } },
  };
  const sign = (c, header = {}) =>
    new jose.SignJWT(c).setProtectedHeader({ alg: "ES256", typ: "voucher+jwt", kid: "vouchers.v1", ...header }).sign(privateKey);
  return { jwks: { keys: [jwk] }, claims, sign, privateKey, now };
}

test("vouchers signed by jose verify; every attack class is refused with its code", async () => {
  const { jwks, claims, sign, now } = await voucherKit();
  const v = new VoucherVerifier(jwks, { issuer: claims.iss, audience: "cash-2026", leewaySeconds: 60 });
  const good = await sign(claims);
  assert.deepEqual(v.verify(good), claims);
  const [h, p, s] = good.split(".");
  const other = await jose.generateKeyPair("ES256");
  const cases = {
    bad_signature: `${h}.${b64(new TextEncoder().encode(JSON.stringify({ ...claims, amount: "9999.00" })))}.${s}`,
    unsupported_alg: `${b64(new TextEncoder().encode('{"alg":"none","typ":"voucher+jwt","kid":"vouchers.v1"}'))}.${p}.`,
    unknown_kid: await sign(claims, { kid: "vouchers.v9" }),
    bad_type: await sign(claims, { typ: "JWT" }),
    expired: await sign({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 }),
    not_yet_valid: await sign({ ...claims, nbf: now + 3600, exp: now + 7200 }),
    wrong_issuer: await sign({ ...claims, iss: "https://evil.example" }),
    wrong_audience: await sign({ ...claims, aud: "school-meals" }),
    unsupported_header: await sign(claims, { jku: "https://evil.example/jwks" }),
  };
  cases.bad_signature_foreign = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", typ: "voucher+jwt", kid: "vouchers.v1" }).sign(other.privateKey);
  for (const [want, token] of Object.entries(cases)) {
    assert.equal(code(() => v.verify(token)), want.replace("_foreign", ""), want);
  }
  assert.equal(code(() => v.verify(good, { now: now + 7200 })), "expired", "now is the caller's");
  assert.equal(code(() => new VoucherVerifier(jwks, { leewaySeconds: 601 })), "invalid_argument");
});

test("a status list verifies by its own signature and revokes", async () => {
  const { jwks, claims, sign, privateKey, now } = await voucherKit();
  const bits = new Uint8Array(16);
  bits[0] = 1 << 5; // index 5
  const list = await new jose.SignJWT({
    sub: claims.status.status_list.uri, iat: now, exp: now + 86400, ttl: 300,
    status_list: { bits: 1, lst: b64(deflateSync(bits)) },
  }).setProtectedHeader({ alg: "ES256", typ: "statuslist+jwt", kid: "vouchers.v1" }).sign(privateKey);
  const sl = StatusList.fromToken(list, jwks, { uri: claims.status.status_list.uri });
  assert.equal(sl.get(5), 1);
  assert.equal(sl.get(4), 0);
  assert.equal(sl.size, 128);
  const voucher = await sign(claims);
  const asList = await sign(claims);
  const v = new VoucherVerifier(jwks);
  assert.equal(code(() => v.verify(voucher, { statusList: sl })), "revoked");
  assert.equal(code(() => v.verify(voucher, { statusList: [sl] })), "revoked");
  assert.equal(v.verify(voucher).jti, "v-1", "without the list, the voucher passes");
  assert.equal(code(() => StatusList.fromToken(list, jwks, { now: now + 90000 })), "expired");
  assert.equal(code(() => StatusList.fromToken(asList, jwks)), "bad_type");
  assert.equal(code(() => v.verify(list)), "bad_type", "a status list is not a voucher");
});

test("KeyServerClient against a running server", { skip: !URL_ && "VOUCHSAFE_URL not set (scripts/interop sets it)" }, async () => {
  const client = new KeyServerClient(URL_, { token: TOKEN });
  await fetch(URL_ + "/v1/keys", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "npm-pii", type: "aes256-gcm" }),
  });
  const dk = await client.dataKey("npm-pii");
  assert.match(dk.kid, /^npm-pii\.v\d+$/);
  const jwe = dk.seal("0712 345 678", { ctx: "registrant/1/phone" });
  const r = await fetch(URL_ + "/v1/keys/npm-pii/decrypt", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ jwe, ctx: "registrant/1/phone" }),
  });
  assert.equal((await r.json()).text, "0712 345 678", "the server opens what the package sealed");
  const jwks = await client.jwks();
  assert.ok(Array.isArray(jwks.keys));
  const issued = await (await fetch(URL_ + "/v1/vouchers", {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ sub: "hh-9", aud: "cash-2026", amount: "10.00", currency: "KES" }),
  })).json();
  const fresh = await client.jwks();
  const claims = new VoucherVerifier(fresh, { issuer: URL_, audience: "cash-2026" }).verify(issued.token);
  assert.equal(claims.jti, issued.jti);
  const uri = claims.status.status_list.uri;
  const list = StatusList.fromToken(await (await fetch(uri)).text(), fresh, { uri });
  assert.equal(list.get(claims.status.status_list.idx), 0);
  await assert.rejects(new KeyServerClient(URL_, { token: "wrong" }).dataKey("npm-pii"), (e) => e instanceof VouchsafeError && e.code === "unauthenticated");
  await assert.rejects(client.dataKey("no-such-key"), (e) => e.code === "not_found");
});
