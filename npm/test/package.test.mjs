// Tests of the packed npm package, imported by its public name from a scratch project
// (scripts/test-npm packs and installs it), through ES modules. package.test.cjs runs the same
// checks through `require`. With VOUCHSAFE_URL and VOUCHSAFE_TOKEN set (scripts/interop sets
// them), the KeyServerClient check runs against a real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import * as jose from "jose";
import * as vs from "vouchsafe";
import { checks } from "./checks.mjs";

await vs.init();
const vectors = JSON.parse(readFileSync(new URL("./vectors/jwcrypto.json", import.meta.url), "utf8"));
const url = process.env.VOUCHSAFE_URL;
const server = url ? { url, token: process.env.VOUCHSAFE_TOKEN, issuer: url } : null;

test("CommonJS require and ES import give the same module", () => {
  const cjs = createRequire(import.meta.url)("vouchsafe");
  assert.equal(cjs.DataKey, vs.DataKey);
  assert.equal(cjs.VouchsafeError, vs.VouchsafeError);
  assert.equal(typeof vs.init, "function");
});

test("the browser build (.wasm + JS, each gzipped) is at most 120 KB", () => {
  const root = new URL("../node_modules/vouchsafe/", import.meta.url);
  const files = ["web/pkg/vouchsafe_wasm_bg.wasm", "web/pkg/vouchsafe_wasm.js", "web/index.js"];
  const gz = files.reduce((n, f) => n + gzipSync(readFileSync(new URL(f, root)), { level: 9 }).length, 0);
  assert.ok(gz <= 120_000, `${gz} bytes gzipped`);
});

for (const c of checks(vs, { jose, vectors, server })) {
  const skip = c.server && !server && "VOUCHSAFE_URL not set (scripts/interop sets it)";
  test(`esm: ${c.name}`, { skip }, c.run);
}
