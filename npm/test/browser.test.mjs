// The packed package in headless Chromium (/usr/bin/chromium through playwright-core): a page
// with <script type="module"> and an import map (no bundler), a module Web Worker, a Vite build,
// and the same page on a non-secure http:// origin (http://portal.test:PORT/, mapped to
// 127.0.0.1 by --host-resolver-rules), where WebCrypto is absent but sealing and verifying work.
// Every page runs checks.mjs; the key server (VOUCHSAFE_URL) is proxied on the page's origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { checks } from "./checks.mjs";
import { launchChromium, startServer } from "./serve.mjs";

const root = process.cwd(); // the scratch project: node_modules/vouchsafe is the packed tarball
const upstream = process.env.VOUCHSAFE_URL;
const token = process.env.VOUCHSAFE_TOKEN;

let server;
let port;
let browser;

before(async () => {
  // Vite builds the app as any application would (production build, relative base).
  execFileSync(process.execPath, [path.join(root, "node_modules/vite/bin/vite.js"), "build", "test/browser/vite",
    "--base", "./", "--logLevel", "warn", "--emptyOutDir"], { cwd: root, stdio: "inherit" });
  ({ server, port } = await startServer(root, { upstream, token }));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
});

const all = checks({}, { vectors: {}, server: null });
const SUBTLE = all.filter((c) => c.subtle).map((c) => c.name);
const SERVER = all.filter((c) => c.server).map((c) => c.name);

/** Loads `url`, waits for the page's checks and asserts every one that ran passed. */
async function runPage(url, { secure }) {
  const page = await browser.newPage();
  const problems = [];
  // Chromium logs every failed fetch ("Failed to load resource"); the checks make some on purpose
  // (401, 404, an unreachable port). Any other console error fails the test.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  try {
    await page.goto(url);
    await page.waitForFunction(() => window.__result, null, { timeout: 60_000 });
    const r = await page.evaluate(() => window.__result);
    assert.equal(r.failed, undefined, r.failed);
    assert.deepEqual(problems, [], "no console errors");
    assert.equal(r.isSecureContext, secure, "secure context");
    assert.equal(r.hasSubtle, secure, "WebCrypto present exactly in a secure context");
    assert.equal(r.serverConfigured, !!upstream, "the key server is reachable through the page origin");
    const failed = r.results.filter((x) => x.ok === false);
    assert.deepEqual(failed, [], `failed in ${url}:\n${failed.map((f) => `${f.name}\n${f.error}`).join("\n")}`);
    const skipped = r.results.filter((x) => x.skipped).map((x) => x.name).sort();
    const expected = [...(secure ? [] : SUBTLE), ...(upstream ? [] : SERVER)].sort();
    assert.deepEqual(skipped, expected, "only the checks that need WebCrypto or a server are skipped");
    assert.equal(r.results.length, all.length);
    return r;
  } finally {
    await page.close();
  }
}

test("a page with <script type=module> and an import map, no bundler", async () => {
  await runPage(`http://127.0.0.1:${port}/test/browser/index.html`, { secure: true });
});

test("a module Web Worker", async () => {
  const r = await runPage(`http://127.0.0.1:${port}/test/browser/worker.html`, { secure: true });
  assert.equal(r.inWorker, true);
});

test("a Vite production build", async () => {
  const html = await readFile(path.join(root, "test/browser/vite/dist/index.html"), "utf8");
  assert.match(html, /assets\/index-[\w-]+\.js/, "Vite bundled the app");
  await runPage(`http://127.0.0.1:${port}/test/browser/vite/dist/index.html`, { secure: true });
});

test("a non-secure http:// origin (an offline tablet on a LAN address): no WebCrypto, still works", async () => {
  await runPage(`http://portal.test:${port}/test/browser/index.html`, { secure: false });
});
