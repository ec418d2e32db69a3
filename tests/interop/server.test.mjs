// Interop with a running vouchsafe server (VOUCHSAFE_URL, VOUCHSAFE_TOKEN; scripts/test starts
// one): what third-party JOSE code seals opens through /decrypt, and what the server seals
// follows the JOSE formats exactly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import { CompactEncrypt, importJWK, decodeProtectedHeader, base64url } from "jose";

const URL_ = process.env.VOUCHSAFE_URL;
const TOKEN = process.env.VOUCHSAFE_TOKEN;
if (!URL_ || !TOKEN) throw new Error("set VOUCHSAFE_URL and VOUCHSAFE_TOKEN (scripts/test does)");

async function api(method, path, body) {
  const res = await fetch(URL_ + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function ensureKey(name, type) {
  const r = await api("POST", "/v1/keys", { name, type });
  assert.ok(r.status === 201 || r.status === 409, JSON.stringify(r));
}

const enc = new TextEncoder();
const dec = new TextDecoder();

test("jose seals ECDH-ES+A256KW to the JWKS key; the server opens it in the keystore", async () => {
  await ensureKey("interop", "aes256-gcm");
  await ensureKey("interop-seal", "ecdh-p256");
  const jwks = await (await fetch(URL_ + "/.well-known/jwks.json")).json();
  const jwk = jwks.keys.find((k) => k.kid.startsWith("interop-seal.v"));
  assert.equal(jwk.alg, "ECDH-ES+A256KW");
  const key = await importJWK(jwk, "ECDH-ES+A256KW");
  const form = JSON.stringify({ name: "Amina Wanjiru", phone: "0712 345 678" });
  const jwe = await new CompactEncrypt(enc.encode(form))
    .setProtectedHeader({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: jwk.kid, ctx: "registrant/9" })
    .encrypt(key);
  const r = await api("POST", "/v1/keys/interop/decrypt", { jwe, ctx: "registrant/9" });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.text, form);
  const wrong = await api("POST", "/v1/keys/interop/decrypt", { jwe, ctx: "registrant/10" });
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.error.code, "context_mismatch");
});

test("jose with apu/apv (Concat KDF party info) also opens", async () => {
  const jwks = await (await fetch(URL_ + "/.well-known/jwks.json")).json();
  const jwk = jwks.keys.find((k) => k.kid.startsWith("interop-seal.v"));
  const key = await importJWK(jwk, "ECDH-ES+A256KW");
  const jwe = await new CompactEncrypt(enc.encode("party info"))
    .setProtectedHeader({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: jwk.kid })
    .setKeyManagementParameters({ apu: enc.encode("tablet-17"), apv: enc.encode("vouchsafe") })
    .encrypt(key);
  const r = await api("POST", "/v1/keys/interop/decrypt", { jwe });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.text, "party info");
});

async function sealWithWebCrypto(datakey, plaintext, ctx) {
  const header = { ...datakey.header, ctx };
  const h64 = base64url.encode(JSON.stringify(header));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const cek = await crypto.subtle.importKey("raw", base64url.decode(datakey.plaintext), "AES-GCM", false, ["encrypt"]);
  const out = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: enc.encode(h64), tagLength: 128 }, cek, enc.encode(plaintext)),
  );
  const ct = out.slice(0, out.length - 16);
  const tag = out.slice(out.length - 16);
  return [h64, datakey.encrypted_key, base64url.encode(iv), base64url.encode(ct), base64url.encode(tag)].join(".");
}

async function openWithWebCrypto(jwe, dekB64) {
  const [h64, , iv, ct, tag] = jwe.split(".");
  const cek = await crypto.subtle.importKey("raw", base64url.decode(dekB64), "AES-GCM", false, ["decrypt"]);
  const data = new Uint8Array([...base64url.decode(ct), ...base64url.decode(tag)]);
  const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: base64url.decode(iv), additionalData: enc.encode(h64), tagLength: 128 }, cek, data);
  return dec.decode(pt);
}

test("WebCrypto AES-GCM around a datakey response opens through /decrypt", async () => {
  const dk = await api("POST", "/v1/keys/interop/datakey", {});
  assert.equal(dk.status, 200);
  assert.deepEqual(Object.keys(dk.body.header).sort(), ["alg", "enc", "iv", "kid", "tag"]);
  const jwe = await sealWithWebCrypto(dk.body, "national id 12345678", "registrant/9/nid");
  assert.equal(decodeProtectedHeader(jwe).alg, "A256GCMKW");
  const r = await api("POST", "/v1/keys/interop/decrypt", { jwe, ctx: "registrant/9/nid" });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.text, "national id 12345678");
});

test("what the server seals (rewrap) opens with WebCrypto given the DEK from /unwrap", async () => {
  const dk = await api("POST", "/v1/keys/interop/datakey", {});
  const original = await sealWithWebCrypto(dk.body, "moved to the current version", "r/1");
  await api("POST", "/v1/keys/interop/rotate", {});
  const rw = await api("POST", "/v1/keys/interop/rewrap", { jwe: original });
  assert.equal(rw.status, 200, JSON.stringify(rw.body));
  const header = decodeProtectedHeader(rw.body.jwe);
  assert.equal(header.alg, "A256GCMKW");
  assert.equal(header.enc, "A256GCM");
  assert.equal(header.ctx, "r/1");
  assert.notEqual(header.kid, dk.body.kid, "sealed under the new current version");
  const parts = rw.body.jwe.split(".");
  const { kid, iv, tag } = header;
  const unwrapped = await api("POST", "/v1/keys/interop/unwrap", {
    header: { alg: "A256GCMKW", enc: "A256GCM", kid, iv, tag },
    encrypted_key: parts[1],
  });
  assert.equal(unwrapped.status, 200, JSON.stringify(unwrapped.body));
  assert.equal(await openWithWebCrypto(rw.body.jwe, unwrapped.body.plaintext), "moved to the current version");
});
