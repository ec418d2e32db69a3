// The README's example, run exactly as written against a real key server (VOUCHSAFE_URL), and
// type-checked under `tsc --strict` against the package's index.d.ts (with types.ts, which
// also asserts what the declarations refuse).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";

const root = process.cwd();
const readme = readFileSync(path.join(root, "node_modules/vouchsafe/README.md"), "utf8");
const example = readme.match(/```js\n([\s\S]*?)```/)[1];
const url = process.env.VOUCHSAFE_URL;
const apiToken = process.env.VOUCHSAFE_TOKEN;

test("the README example runs as written", { skip: !url && "VOUCHSAFE_URL not set (scripts/interop sets it)" }, async () => {
  // Set up what the example names but does not define, then run it verbatim. Its server URL
  // (https://keys.example.org) is sent to the test server by a fetch wrapper.
  const auth = { authorization: `Bearer ${apiToken}`, "content-type": "application/json" };
  for (const [name, type] of [["pii", "aes256-gcm"], ["pii-seal", "ecdh-p256"]]) {
    await fetch(`${url}/v1/keys`, { method: "POST", headers: auth, body: JSON.stringify({ name, type }) });
  }
  const issued = await (await fetch(`${url}/v1/vouchers`, {
    method: "POST", headers: auth, body: JSON.stringify({ sub: "hh-7", aud: "cash-2026", amount: "25.00", currency: "KES" }),
  })).json();
  const prelude = `
import { StatusList as __StatusList } from "vouchsafe";
const __fetch = globalThis.fetch;
globalThis.fetch = (u, init) => __fetch(String(u).replace("https://keys.example.org", ${JSON.stringify(url)}), init);
const { apiToken, issuer, voucher } = globalThis.__readme;
const formJson = JSON.stringify({ name: "Amina Wanjiru", phone: "0712 345 678" });
const audience = "cash-2026";
const now = new Date();
const __uri = JSON.parse(atob(voucher.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).status.status_list.uri;
const __jwks = await (await fetch(${JSON.stringify(url)} + "/.well-known/jwks.json")).json();
const statusList = __StatusList.fromToken(await (await fetch(__uri)).text(), __jwks, { uri: __uri });
`;
  const epilogue = `
globalThis.__readme.result = { jwe, offline, claims, disposed: dk.disposed };
`;
  globalThis.__readme = { apiToken, issuer: url, voucher: issued.token };
  const file = path.join(root, "test", "readme-example.mjs");
  writeFileSync(file, prelude + example + epilogue);
  await import(file);
  const { jwe, offline, claims, disposed } = globalThis.__readme.result;
  assert.equal(jwe.split(".").length, 5);
  assert.equal(offline.split(".").length, 5);
  assert.equal(disposed, true);
  assert.equal(claims.jti, issued.jti);
  assert.equal(claims.amount, "25.00");
  // What the example sealed opens on the server.
  const r = await fetch(`${url}/v1/keys/pii-seal/decrypt`, { method: "POST", headers: auth, body: JSON.stringify({ jwe: offline }) });
  assert.equal((await r.json()).text, JSON.stringify({ name: "Amina Wanjiru", phone: "0712 345 678" }));
});

test("the README example and types.ts type-check under tsc --strict", () => {
  const declarations = `declare const apiToken: string;
declare const formJson: string;
declare const issuer: string;
declare const audience: string;
declare const voucher: string;
declare const now: Date;
declare const statusList: import("vouchsafe").StatusList;
`;
  writeFileSync(path.join(root, "test", "readme-example.ts"), declarations + example + "\nexport {};\n");
  writeFileSync(path.join(root, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: "es2022", module: "nodenext", moduleResolution: "nodenext",
      lib: ["es2022", "dom"], skipLibCheck: false, types: [],
    },
    files: ["test/readme-example.ts", "test/types.ts"],
  }));
  try {
    execFileSync(path.join(root, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], { cwd: root, encoding: "utf8" });
  } catch (e) {
    assert.fail(`tsc:\n${e.stdout}${e.stderr}`);
  }
});
