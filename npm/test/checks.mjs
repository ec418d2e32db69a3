// The package's behaviour checks, written once and run everywhere the package must work: Node
// (ESM and CommonJS, package.test.mjs), a Chromium page, a Web Worker, a Vite build and a page
// on a non-secure http:// origin (browser.test.mjs). Plain ES2022 with no Node or DOM imports.
//
// `checks(vs, env)` returns `[{ name, subtle, run }]`:
// - vs: the initialised `vouchsafe` module;
// - env.jose: npm `jose` (used to make and open third-party tokens); absent where WebCrypto is;
// - env.vectors: tests/vectors/jwcrypto.json (the Rust tests read the same file);
// - env.server: `{ url, token, issuer }` of a running key server, or null.
// A check with `subtle: true` needs WebCrypto (jose uses it), which a non-secure origin lacks;
// one with `server: true` needs env.server.

export class CheckFailure extends Error {}

function ok(cond, message) {
  if (!cond) throw new CheckFailure(message);
}

function eq(actual, expected, message = "") {
  const a = canonical(actual);
  const e = canonical(expected);
  if (a !== e) throw new CheckFailure(`${message}: expected ${e}, got ${a}`);
}

function canonical(v) {
  if (v instanceof Uint8Array) return `Uint8Array[${Array.from(v).join(",")}]`;
  if (v && typeof v === "object") {
    if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

const utf8 = (s) => new TextEncoder().encode(s);

export function b64u(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64u(s) {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The same ES256 signature with s replaced by n - s (also valid). */
async function highS(token) {
  const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
  const [h, p, s64] = token.split(".");
  const sig = unb64u(s64);
  const s = BigInt(`0x${Array.from(sig.slice(32), (b) => b.toString(16).padStart(2, "0")).join("")}`);
  const hex = (n - s).toString(16).padStart(64, "0");
  const out = new Uint8Array(64);
  out.set(sig.slice(0, 32));
  for (let i = 0; i < 32; i++) out[32 + i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return `${h}.${p}.${b64u(out)}`;
}

const header = (compact) => JSON.parse(new TextDecoder().decode(unb64u(compact.split(".")[0])));

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The code of the VouchsafeError `fn` throws (sync or async). */
async function codeOf(vs, fn) {
  try {
    await fn();
  } catch (e) {
    ok(e instanceof vs.VouchsafeError, `not a VouchsafeError: ${e && e.stack}`);
    ok(e instanceof Error, "a VouchsafeError is an Error");
    ok(typeof e.message === "string" && e.message.length > 0, "has a message");
    return e.code;
  }
  throw new CheckFailure("did not throw");
}

/** A datakey response as the server sends it, around a DEK we hold. */
function datakeyResponse(dek, kid = "pii.v1") {
  return {
    kid,
    plaintext: b64u(dek),
    header: { alg: "A256GCMKW", enc: "A256GCM", kid, iv: "AAAAAAAAAAAAAAAA", tag: "AAAAAAAAAAAAAAAAAAAAAA" },
    encrypted_key: b64u(new Uint8Array(32)),
  };
}

export function checks(vs, env) {
  const { jose, vectors, server } = env;
  const code = (fn) => codeOf(vs, fn);
  const list = [];
  const check = (name, opts, run) => list.push({ name, subtle: !!opts.subtle, server: !!opts.server, run });

  check("a data key seals text and bytes; ctx is checked; dispose wipes it", {}, async () => {
    const dek = crypto.getRandomValues(new Uint8Array(32));
    const dk = vs.DataKey.fromResponse(datakeyResponse(dek));
    eq(dk.kid, "pii.v1", "kid");
    const jwe = dk.seal("0712 345 678", { ctx: "registrant/123/phone" });
    eq(header(jwe).ctx, "registrant/123/phone", "ctx in the protected header");
    eq(header(jwe).cty, "text/plain;charset=utf-8", "text is marked");
    eq(dk.open(jwe, { ctx: "registrant/123/phone" }), "0712 345 678", "open");
    eq(vs.openWithDataKey(dk, jwe), "0712 345 678", "openWithDataKey");
    eq(await code(() => dk.open(jwe, { ctx: "registrant/124/phone" })), "context_mismatch", "other ctx");
    const bin = dk.seal(new Uint8Array([1, 2, 3]));
    eq(dk.open(bin), new Uint8Array([1, 2, 3]), "bytes open as bytes");
    eq(dk.open(dk.seal("")), "", "empty text");
    const tampered = jwe.slice(0, -4) + (jwe.endsWith("AAAA") ? "BBBB" : "AAAA");
    eq(await code(() => dk.open(tampered)), "decrypt_failed", "tampered tag");
    eq(await code(() => dk.open("not.a.jwe")), "malformed", "garbage");
    eq(await code(() => dk.seal(42)), "invalid_argument", "a number is not data");
    eq(await code(() => vs.DataKey.fromResponse({ kid: "pii.v1" })), "malformed", "no plaintext");
    // sealAsync: WebCrypto where it exists, the same path as seal elsewhere; same format.
    const async1 = await dk.sealAsync("0712 345 678", { ctx: "registrant/123/phone" });
    eq(header(async1), header(jwe), "sealAsync's header is seal's");
    eq(dk.open(async1, { ctx: "registrant/123/phone" }), "0712 345 678", "sealAsync opens");
    const big = crypto.getRandomValues(new Uint8Array(65536));
    const large = new Uint8Array(1 << 20).map((_, i) => big[i & 0xffff]);
    eq(dk.open(await dk.sealAsync(large)).length, large.length, "1 MiB through sealAsync");
    eq(await code(() => dk.sealAsync(new Uint8Array((1 << 20) + 1))), "too_large", "over 1 MiB");
    eq(await code(() => dk.sealAsync("x", { ctx: 5 })), "invalid_argument", "ctx must be a string");
    const pending = dk.sealAsync("in flight");
    dk.dispose();
    eq(typeof (await pending), "string", "a seal started before dispose completes");
    eq(await code(() => dk.sealAsync("x")), "disposed", "sealAsync after dispose");
    dk.dispose();
    eq(dk.disposed, true, "disposed");
    eq(await code(() => dk.seal("x")), "disposed", "seal after dispose");
    eq(await code(() => dk.open(jwe)), "disposed", "open after dispose");
  });

  check("sealToPublicKey seals to the newest version in the vector JWKS, with ctx", {}, async () => {
    const jwks = vectors.jwks;
    const jwe = vs.sealToPublicKey(jwks, "pii-seal", "Amina", { ctx: "registrant/9/name" });
    const h = header(jwe);
    eq([h.alg, h.enc, h.kid, h.ctx], ["ECDH-ES+A256KW", "A256GCM", "pii-seal.v1", "registrant/9/name"], "header");
    ok(h.epk && h.epk.kty === "EC" && !("d" in h.epk), "a public ephemeral key");
    const single = vs.sealToPublicKey(jwks.keys[0], "pii-seal", new Uint8Array([7]));
    eq(header(single).kid, "pii-seal.v1", "one JWK");
    eq(await code(() => vs.sealToPublicKey(jwks, "other-seal", "x")), "unknown_kid", "other name");
    eq(await code(() => vs.sealToPublicKey("{", "pii-seal", "x")), "malformed", "not JSON");
  });

  check("sealToPublicKey output opens in jose (ECDH-ES+A256KW)", { subtle: true }, async () => {
    const { publicKey, privateKey } = await jose.generateKeyPair("ECDH-ES+A256KW", { extractable: true });
    const jwk = { ...(await jose.exportJWK(publicKey)), kid: "pii-seal.v2", use: "enc", alg: "ECDH-ES+A256KW" };
    const jwks = { keys: [{ ...jwk, kid: "pii-seal.v1" }, jwk] };
    const jwe = vs.sealToPublicKey(jwks, "pii-seal", '{"name":"Amina"}', { ctx: "registrant/9" });
    const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, privateKey);
    eq(new TextDecoder().decode(plaintext), '{"name":"Amina"}', "plaintext");
    eq(protectedHeader.kid, "pii-seal.v2", "the newest version");
    eq(protectedHeader.ctx, "registrant/9", "ctx");
    eq(await code(() => vs.sealToPublicKey({ keys: [{ ...jwk, d: "AAAA" }] }, "pii-seal", "x")), "invalid_key", "private");
  });

  check("DataKey JWEs open in jose and WebCrypto; jose's JWEs open here", { subtle: true }, async () => {
    const dek = crypto.getRandomValues(new Uint8Array(32));
    const dk = vs.DataKey.fromResponse(datakeyResponse(dek));
    const jwe = dk.seal("Wanjiru", { ctx: "registrant/5/name" });
    // WebCrypto: the DEK is the content key; the AAD is the protected header as sent.
    const [h, , iv, ct, tag] = jwe.split(".");
    const key = await crypto.subtle.importKey("raw", dek, "AES-GCM", false, ["decrypt"]);
    const body = new Uint8Array([...unb64u(ct), ...unb64u(tag)]);
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: unb64u(iv), additionalData: utf8(h) }, key, body);
    eq(new TextDecoder().decode(plain), "Wanjiru", "WebCrypto");
    // jose, given the content key the server would unwrap.
    const kek = crypto.getRandomValues(new Uint8Array(32));
    const sealedByJose = await new jose.CompactEncrypt(utf8("from jose"))
      .setProtectedHeader({ alg: "A256GCMKW", enc: "A256GCM", kid: "pii.v1", ctx: "registrant/5/note" })
      .setContentEncryptionKey(dek)
      .encrypt(kek);
    eq(dk.open(sealedByJose, { ctx: "registrant/5/note" }), utf8("from jose"), "jose JWE opens (bytes: no cty)");
    // With a response whose wrap header really wraps the DEK under a KEK (as the server's does),
    // jose opens our JWE given only that KEK: standard A256GCMKW on the wire.
    const wrapIv = crypto.getRandomValues(new Uint8Array(12));
    const kekKey = await crypto.subtle.importKey("raw", kek, "AES-GCM", false, ["encrypt"]);
    const wrapped = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: wrapIv }, kekKey, dek));
    const real = vs.DataKey.fromResponse({
      kid: "pii.v1", plaintext: b64u(dek), encrypted_key: b64u(wrapped.slice(0, 32)),
      header: { alg: "A256GCMKW", enc: "A256GCM", kid: "pii.v1", iv: b64u(wrapIv), tag: b64u(wrapped.slice(32)) },
    });
    const opened = await jose.compactDecrypt(real.seal("to jose", { ctx: "registrant/5/x" }), kek);
    eq(new TextDecoder().decode(opened.plaintext), "to jose", "jose opens with the KEK");
    eq(opened.protectedHeader.ctx, "registrant/5/x", "ctx");
  });

  check("the jwcrypto A256GCMKW vector opens once WebCrypto unwraps its content key", { subtle: true }, async () => {
    const [h, ek] = vectors.jwe_a256gcmkw.split(".");
    const hdr = JSON.parse(new TextDecoder().decode(unb64u(h)));
    const kek = await crypto.subtle.importKey("raw", unb64u(vectors.kek.k), "AES-GCM", false, ["decrypt"]);
    const wrapped = new Uint8Array([...unb64u(ek), ...unb64u(hdr.tag)]);
    const cek = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: unb64u(hdr.iv) }, kek, wrapped));
    const dk = vs.DataKey.fromResponse({
      kid: hdr.kid, plaintext: b64u(cek), encrypted_key: ek,
      header: { alg: hdr.alg, enc: hdr.enc, kid: hdr.kid, iv: hdr.iv, tag: hdr.tag },
    });
    const out = dk.open(vectors.jwe_a256gcmkw, { ctx: vectors.ctx });
    eq(typeof out === "string" ? out : new TextDecoder().decode(out), vectors.plaintext_utf8, "plaintext");
    eq(await code(() => dk.open(vectors.jwe_a256gcmkw, { ctx: "registrant/999/phone" })), "context_mismatch", "ctx");
  });

  check("the jwcrypto voucher verifies strictly; altered copies are refused", {}, async () => {
    const at = vectors.voucher_valid_at;
    const v = new vs.VoucherVerifier(vectors.jwks, { issuer: "https://keys.example.org", audience: "food-2026" });
    eq(v.verify(vectors.voucher, { now: at }), vectors.voucher_claims, "claims");
    const together = await Promise.all([1, 2, 3].map(() => v.verifyAsync(vectors.voucher, { now: at })));
    for (const c of together) eq(c, vectors.voucher_claims, "claims (verifyAsync, three at once sharing one key import)");
    eq(await v.verifyAsync(vectors.voucher, { now: at }), vectors.voucher_claims, "claims (verifyAsync)");
    eq(v.verify(vectors.voucher, { now: new Date(at * 1000) }).jti, "01J9Z8-0001", "now as a Date");
    const [h, p, s] = vectors.voucher.split(".");
    const claims = JSON.parse(new TextDecoder().decode(unb64u(p)));
    const forged = `${h}.${b64u(utf8(JSON.stringify({ ...claims, amount: "99999.00" })))}.${s}`;
    eq(await code(() => v.verify(forged, { now: at })), "bad_signature", "amount changed");
    eq(await code(() => v.verifyAsync(forged, { now: at })), "bad_signature", "amount changed (verifyAsync)");
    const flipped = `${h}.${p}.${s.slice(0, 10)}${s[10] === "A" ? "B" : "A"}${s.slice(11)}`;
    eq(await code(() => v.verify(flipped, { now: at })), "bad_signature", "one signature character");
    const none = `${b64u(utf8(JSON.stringify({ alg: "none", typ: "voucher+jwt", kid: "vouchers.v1" })))}.${p}.`;
    eq(await code(() => v.verify(none, { now: at })), "unsupported_alg", "alg none");
    const hs = `${b64u(utf8(JSON.stringify({ alg: "HS256", typ: "voucher+jwt", kid: "vouchers.v1" })))}.${p}.${s}`;
    eq(await code(() => v.verify(hs, { now: at })), "unsupported_alg", "HS256 with the public key as secret");
    eq(await code(() => v.verify(vectors.voucher, { now: claims.exp + 1 })), "expired", "after exp");
    eq(await code(() => v.verify(vectors.voucher, { now: claims.nbf - 120 })), "not_yet_valid", "before nbf");
    const strangers = new vs.VoucherVerifier(vectors.jwks, { issuer: "https://other.example" });
    eq(await code(() => strangers.verify(vectors.voucher, { now: at })), "wrong_issuer", "issuer");
    const elsewhere = new vs.VoucherVerifier(vectors.jwks, { audience: "school-meals" });
    eq(await code(() => elsewhere.verify(vectors.voucher, { now: at })), "wrong_audience", "audience");
    const noKey = new vs.VoucherVerifier({ keys: [] });
    eq(await code(() => noKey.verify(vectors.voucher, { now: at })), "unknown_kid", "empty JWKS");
    eq(await code(() => v.verify("a.b", { now: at })), "malformed", "two parts");
    eq(await code(() => new vs.VoucherVerifier(vectors.jwks, { leewaySeconds: 601 })), "invalid_argument", "leeway cap");
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
    const sign = (c, hdr = {}) =>
      new jose.SignJWT(c).setProtectedHeader({ alg: "ES256", typ: "voucher+jwt", kid: "vouchers.v1", ...hdr }).sign(privateKey);
    return { jwks: { keys: [jwk] }, claims, sign, privateKey, now };
  }

  check("vouchers signed by jose verify; every attack class is refused with its code", { subtle: true }, async () => {
    const { jwks, claims, sign, now } = await voucherKit();
    const v = new vs.VoucherVerifier(jwks, { issuer: claims.iss, audience: "cash-2026", leewaySeconds: 60 });
    const good = await sign(claims);
    eq(v.verify(good), claims, "claims");
    const [h, p, s] = good.split(".");
    const other = await jose.generateKeyPair("ES256");
    const cases = {
      bad_signature: `${h}.${b64u(utf8(JSON.stringify({ ...claims, amount: "9999.00" })))}.${s}`,
      unsupported_alg: `${b64u(utf8('{"alg":"none","typ":"voucher+jwt","kid":"vouchers.v1"}'))}.${p}.`,
      unknown_kid: await sign(claims, { kid: "vouchers.v9" }),
      bad_type: await sign(claims, { typ: "JWT" }),
      expired: await sign({ ...claims, iat: now - 7200, nbf: now - 7200, exp: now - 3600 }),
      not_yet_valid: await sign({ ...claims, nbf: now + 3600, exp: now + 7200 }),
      wrong_issuer: await sign({ ...claims, iss: "https://evil.example" }),
      wrong_audience: await sign({ ...claims, aud: "school-meals" }),
      unsupported_header: await sign(claims, { jku: "https://evil.example/jwks" }),
      bad_signature_foreign: await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: "ES256", typ: "voucher+jwt", kid: "vouchers.v1" }).sign(other.privateKey),
      // The JWKS's public key used as an HMAC secret (the classic RS/HS confusion).
      unsupported_alg_hs256: await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: "HS256", typ: "voucher+jwt", kid: "vouchers.v1" })
        .sign(utf8(JSON.stringify(jwks.keys[0]))),
    };
    eq(await v.verifyAsync(good), claims, "claims (verifyAsync)");
    for (const [want, token] of Object.entries(cases)) {
      eq(await code(() => v.verify(token)), want.replace(/_(foreign|hs256)$/, ""), want);
      eq(await code(() => v.verifyAsync(token)), want.replace(/_(foreign|hs256)$/, ""), `${want} (verifyAsync)`);
    }
    const high = await highS(good);
    eq(v.verify(high).jti, "v-1", "a high-S signature verifies (RFC 7518 does not forbid it)");
    eq((await v.verifyAsync(high)).jti, "v-1", "a high-S signature verifies (verifyAsync)");
    eq(await code(() => v.verify(good, { now: now + 7200 })), "expired", "now is the caller's");
  });

  check("a status list verifies by its own signature and marks revoked vouchers", { subtle: true }, async () => {
    const { jwks, claims, sign, privateKey, now } = await voucherKit();
    const bits = new Uint8Array(16);
    bits[0] = 1 << 5; // index 5
    const uri = claims.status.status_list.uri;
    const list = await new jose.SignJWT({
      sub: uri, iat: now, exp: now + 86400, ttl: 300,
      status_list: { bits: 1, lst: b64u(await deflate(bits)) },
    }).setProtectedHeader({ alg: "ES256", typ: "statuslist+jwt", kid: "vouchers.v1" }).sign(privateKey);
    const sl = vs.StatusList.fromToken(list, jwks, { uri });
    eq([sl.get(5), sl.get(4), sl.size, sl.uri, sl.ttl], [1, 0, 128, uri, 300], "list");
    const voucher = await sign(claims);
    const v = new vs.VoucherVerifier(jwks);
    eq(await code(() => v.verify(voucher, { statusList: sl })), "revoked", "one list");
    eq(await code(() => v.verify(voucher, { statusList: [sl] })), "revoked", "an array of lists");
    eq(await code(() => v.verifyAsync(voucher, { statusList: sl })), "revoked", "verifyAsync checks the list");
    eq(v.verify(voucher).jti, "v-1", "without the list, the voucher passes");
    eq(await code(() => vs.StatusList.fromToken(list, jwks, { now: now + 90000 })), "expired", "old list");
    eq(await code(() => vs.StatusList.fromToken(list, jwks, { uri: uri + "0" })), "invalid_claim", "other uri");
    eq(await code(() => vs.StatusList.fromToken(voucher, jwks)), "bad_type", "a voucher is not a list");
    eq(await code(() => v.verify(list)), "bad_type", "a status list is not a voucher");
  });

  check("KeyServerClient refuses bad arguments and reports an unreachable server", {}, async () => {
    eq(await code(() => new vs.KeyServerClient("http://127.0.0.1:9").jwks()), "network_error", "nothing listening");
    eq(await code(() => new vs.KeyServerClient("http://127.0.0.1:9").dataKey("pii")), "network_error", "dataKey too");
    eq(await code(() => new vs.KeyServerClient("ftp://keys.example.org")), "invalid_argument", "url scheme");
    eq(await code(() => new vs.KeyServerClient(42)), "invalid_argument", "url type");
    eq(await code(() => new vs.KeyServerClient("https://keys.example.org", { token: 5 })), "invalid_argument", "token type");
    eq(await code(() => new vs.KeyServerClient("https://keys.example.org").dataKey(5)), "invalid_argument", "name type");
  });

  check("the wasm's internal halves are not on the public classes", {}, async () => {
    for (const [cls, name] of [[vs.DataKey, "__rawKey"], [vs.DataKey, "__prepareSeal"], [vs.VoucherVerifier, "__prepareVerify"]]) {
      eq(name in cls.prototype, false, name);
    }
  });

  check("KeyServerClient against a running server: seal here, open there; verify its vouchers", { server: true }, async () => {
    ok(server, "no server");
    const { url, token, issuer } = server;
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const client = new vs.KeyServerClient(url, { token });
    await fetch(`${url}/v1/keys`, { method: "POST", headers: auth, body: JSON.stringify({ name: "npm-pii", type: "aes256-gcm" }) });
    const dk = await client.dataKey("npm-pii");
    ok(/^npm-pii\.v\d+$/.test(dk.kid), `kid ${dk.kid}`);
    const jwe = dk.seal("0712 345 678", { ctx: "registrant/1/phone" });
    dk.dispose();
    const r = await fetch(`${url}/v1/keys/npm-pii/decrypt`, { method: "POST", headers: auth, body: JSON.stringify({ jwe, ctx: "registrant/1/phone" }) });
    eq((await r.json()).text, "0712 345 678", "the server opens what the package sealed");
    const jwks = await client.jwks();
    ok(Array.isArray(jwks.keys), "jwks");
    await fetch(`${url}/v1/keys`, { method: "POST", headers: auth, body: JSON.stringify({ name: "npm-pii-seal", type: "ecdh-p256" }) });
    const pub = await client.publicKey("npm-pii-seal");
    const offline = vs.sealToPublicKey(pub, "npm-pii-seal", "offline 1", { ctx: "registrant/2/name" });
    const r2 = await fetch(`${url}/v1/keys/npm-pii-seal/decrypt`, { method: "POST", headers: auth, body: JSON.stringify({ jwe: offline, ctx: "registrant/2/name" }) });
    eq((await r2.json()).text, "offline 1", "the server opens what was sealed offline");
    const issued = await (await fetch(`${url}/v1/vouchers`, {
      method: "POST", headers: auth, body: JSON.stringify({ sub: "hh-9", aud: "cash-2026", amount: "10.00", currency: "KES" }),
    })).json();
    const fresh = await client.jwks();
    const claims = new vs.VoucherVerifier(fresh, { issuer, audience: "cash-2026" }).verify(issued.token);
    eq(claims.jti, issued.jti, "jti");
    const listUri = claims.status.status_list.uri;
    // Fetched through `url`: in a browser test that is the page's own origin.
    const listText = await (await fetch(url + new URL(listUri).pathname)).text();
    const list = vs.StatusList.fromToken(listText, fresh, { uri: listUri });
    eq(list.get(claims.status.status_list.idx), 0, "not revoked");
    const unauth = await code(() => new vs.KeyServerClient(url, { token: "wrong" }).dataKey("npm-pii"));
    eq(unauth, "unauthenticated", "bad token");
    eq(await code(() => client.dataKey("no-such-key")), "not_found", "unknown key");
    const slash = new vs.KeyServerClient(url + "//", { token });
    ok(Array.isArray((await slash.jwks()).keys), "trailing slashes on the base URL");
  });

  return list;
}

/** Runs every check (or those allowed by `filter`) and reports `{ name, ok, error }` for each. */
export async function runChecks(vs, env, filter = () => true) {
  const results = [];
  for (const c of checks(vs, env)) {
    if (!filter(c) || (c.server && !env.server)) {
      results.push({ name: c.name, ok: null, skipped: true });
      continue;
    }
    try {
      await c.run();
      results.push({ name: c.name, ok: true });
    } catch (e) {
      results.push({ name: c.name, ok: false, error: String((e && e.stack) || e) });
    }
  }
  return results;
}
