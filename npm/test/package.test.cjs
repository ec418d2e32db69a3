// The checks of checks.mjs through CommonJS `require("vouchsafe")` (see package.test.mjs).
const { test } = require("node:test");
const { readFileSync } = require("node:fs");
const path = require("node:path");
const vs = require("vouchsafe");

const vectors = JSON.parse(readFileSync(path.join(__dirname, "vectors", "jwcrypto.json"), "utf8"));
const url = process.env.VOUCHSAFE_URL;
const server = url ? { url, token: process.env.VOUCHSAFE_TOKEN, issuer: url } : null;

test("require gives a ready module: init() is optional in Node", async () => {
  await vs.init();
});

const ready = Promise.all([import("jose"), import("./checks.mjs")]);
test("cjs: every check", async (t) => {
  const [jose, { checks }] = await ready;
  for (const c of checks(vs, { jose, vectors, server })) {
    const skip = c.server && !server && "VOUCHSAFE_URL not set (scripts/interop sets it)";
    await t.test(c.name, { skip }, c.run);
  }
});
