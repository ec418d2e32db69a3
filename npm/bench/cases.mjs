// The npm package's benchmark, written once and run in Node and in Chromium (bench/run.mjs):
// the same operations in vouchsafe (sync and async), npm jose, raw WebCrypto and @noble/curves.
// Each figure is the median of 7 timed batches of at least `batchMs` milliseconds, after a
// warm-up; the result is microseconds per operation. The implementations of one operation take
// turns batch by batch, so a slow spell of a shared machine falls on all of them alike.

async function batch(fn, batchMs) {
  let n = 0;
  const t0 = performance.now();
  let t;
  do {
    for (let i = 0; i < 10; i++) await fn();
    n += 10;
    t = performance.now() - t0;
  } while (t < batchMs);
  return (t * 1000) / n;
}

async function measure(cases, { batchMs, batches = 7 }) {
  for (const [, fn] of cases) for (let i = 0; i < 20; i++) await fn();
  const per = cases.map(() => []);
  for (let b = 0; b < batches; b++) {
    for (const [i, [, fn]] of cases.entries()) per[i].push(await batch(fn, batchMs));
  }
  return per.map((p) => p.sort((a, b) => a - b)[Math.floor(p.length / 2)]);
}

/** Fails the benchmark if an implementation gives a wrong answer. */
function must(cond, what) {
  if (!cond) throw new Error(`benchmark self-check failed: ${what}`);
}

export async function bench({ vs, jose, noble, quick = false }) {
  await vs.init();
  const opts = { batchMs: quick ? 20 : 200, batches: quick ? 1 : 7 };
  const rows = [];
  const compare = async (op, cases) => {
    const us = await measure(cases, opts);
    cases.forEach(([impl], i) => rows.push({ op, impl, us: us[i] }));
  };
  const enc = new TextEncoder();

  // ES256 voucher: signed by jose, verified with every rule by vouchsafe and jose; the raw
  // signature check alone by WebCrypto and @noble/curves.
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid: "vouchers.v1", alg: "ES256", use: "sig" };
  const now = Math.floor(Date.now() / 1000);
  const token = await new jose.SignJWT({
    sub: "hh-1", aud: "cash-2026", jti: "01J9Z8-0001", amount: "1500.00", currency: "KES",
    status: { status_list: { idx: 17, uri: "https://keys.example.org/v1/status/1" } },
  }).setProtectedHeader({ alg: "ES256", typ: "voucher+jwt", kid: "vouchers.v1" })
    .setIssuer("https://keys.example.org").setIssuedAt(now).setNotBefore(now).setExpirationTime(now + 86400)
    .sign(privateKey);
  const verifier = new vs.VoucherVerifier({ keys: [jwk] }, { issuer: "https://keys.example.org", audience: "cash-2026" });
  const [h, p, s] = token.split(".");
  const input = enc.encode(`${h}.${p}`);
  const sig = jose.base64url.decode(s);
  const pub = new Uint8Array([4, ...jose.base64url.decode(jwk.x), ...jose.base64url.decode(jwk.y)]);
  const verifyOp = "ES256 voucher verify";
  must(verifier.verify(token).jti === "01J9Z8-0001", "vouchsafe verify");
  must((await verifier.verifyAsync(token)).jti === "01J9Z8-0001", "vouchsafe verifyAsync");
  must(noble.p256.verify(sig, input, pub, { lowS: false }), "noble verify");
  must(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, publicKey, sig, input), "WebCrypto verify");
  const joseOpts = { issuer: "https://keys.example.org", audience: "cash-2026", typ: "voucher+jwt", algorithms: ["ES256"] };
  await compare(verifyOp, [
    ["vouchsafe `verify` (sync, every rule)", () => verifier.verify(token)],
    ["vouchsafe `verifyAsync` (WebCrypto, every rule)", () => verifier.verifyAsync(token)],
    ["jose `jwtVerify` (CryptoKey, every rule)", () => jose.jwtVerify(token, publicKey, joseOpts)],
    ["WebCrypto `verify` (signature only)", () => crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, publicKey, sig, input)],
    ["@noble/curves `p256.verify` (signature only, sync)", () => noble.p256.verify(sig, input, pub, { lowS: false })],
  ]);

  // Sealing a 1 KiB field with a data key in hand (A256GCMKW / A256GCM).
  const field = "x".repeat(1024);
  const dek = crypto.getRandomValues(new Uint8Array(32));
  const kek = crypto.getRandomValues(new Uint8Array(32));
  const kekKey = await crypto.subtle.importKey("raw", kek, "AES-GCM", false, ["encrypt", "decrypt"]);
  const wrapIv = crypto.getRandomValues(new Uint8Array(12));
  const wrapped = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: wrapIv }, kekKey, dek));
  const dk = vs.DataKey.fromResponse({
    kid: "pii.v1", plaintext: jose.base64url.encode(dek), encrypted_key: jose.base64url.encode(wrapped.slice(0, 32)),
    header: { alg: "A256GCMKW", enc: "A256GCM", kid: "pii.v1", iv: jose.base64url.encode(wrapIv), tag: jose.base64url.encode(wrapped.slice(32)) },
  });
  const dekKey = await crypto.subtle.importKey("raw", dek, "AES-GCM", false, ["encrypt"]);
  const fieldBytes = enc.encode(field);
  must((await jose.compactDecrypt(dk.seal(field), kekKey)).plaintext.length === 1024, "jose opens seal");
  must((await jose.compactDecrypt(await dk.sealAsync(field), kekKey)).plaintext.length === 1024, "jose opens sealAsync");
  const sealOp = "seal 1 KiB field, A256GCMKW (data key in hand)";
  await compare(sealOp, [
    ["vouchsafe `seal` (sync)", () => dk.seal(field, { ctx: "registrant/1/note" })],
    ["vouchsafe `sealAsync` (WebCrypto AES-GCM)", () => dk.sealAsync(field, { ctx: "registrant/1/note" })],
    ["jose `CompactEncrypt` (KEK as CryptoKey)", () =>
      new jose.CompactEncrypt(fieldBytes).setProtectedHeader({ alg: "A256GCMKW", enc: "A256GCM", kid: "pii.v1" }).encrypt(kekKey)],
    ["WebCrypto AES-GCM encrypt (content only)", () =>
      crypto.subtle.encrypt({ name: "AES-GCM", iv: crypto.getRandomValues(new Uint8Array(12)) }, dekKey, fieldBytes)],
  ]);

  // Sealing 1 KiB to a public key (ECDH-ES+A256KW): the offline registration path.
  const ecdh = await jose.generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const sealJwk = { ...(await jose.exportJWK(ecdh.publicKey)), kid: "pii-seal.v1", use: "enc", alg: "ECDH-ES+A256KW" };
  must((await jose.compactDecrypt(vs.sealToPublicKey(sealJwk, "pii-seal", field), ecdh.privateKey)).plaintext.length === 1024, "jose opens ECDH");
  const ecdhOp = "seal 1 KiB to a public key, ECDH-ES+A256KW";
  await compare(ecdhOp, [
    ["vouchsafe `sealToPublicKey` (sync)", () => vs.sealToPublicKey(sealJwk, "pii-seal", field)],
    ["jose `CompactEncrypt` (public CryptoKey)", () =>
      new jose.CompactEncrypt(fieldBytes).setProtectedHeader({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: "pii-seal.v1" }).encrypt(ecdh.publicKey)],
  ]);

  return rows;
}

/** A Markdown table of `rows` (µs per operation). */
export function table(rows) {
  const out = ["| operation | implementation | µs/op |", "|---|---|---:|"];
  for (const r of rows) out.push(`| ${r.op} | ${r.impl} | ${r.us < 10 ? r.us.toFixed(2) : r.us.toFixed(1)} |`);
  return out.join("\n");
}
