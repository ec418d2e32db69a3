// Runs bench/cases.mjs in Node and in headless Chromium against the packed package installed in
// a scratch project (scripts/test-npm --bench sets that up), and prints the package's size.
// `--quick`: one short batch per figure (CI checks the benchmark still runs, not the numbers).
import { readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import os from "node:os";
import * as vs from "vouchsafe";
import * as jose from "jose";
import * as noble from "@noble/curves/nist.js";
import { bench, table } from "./cases.mjs";
import { launchChromium, startServer } from "../test/serve.mjs";

const quick = process.argv.includes("--quick");
const root = process.cwd();

const files = ["web/pkg/vouchsafe_wasm_bg.wasm", "web/pkg/vouchsafe_wasm.js", "web/index.js"];
let raw = 0;
let gz = 0;
for (const f of files) {
  const bytes = await readFile(`${root}/node_modules/vouchsafe/${f}`);
  raw += bytes.length;
  gz += gzipSync(bytes, { level: 9 }).length;
}
console.log(`## vouchsafe npm package — ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0].model}`);
console.log(`\nbrowser build (.wasm + JS, each file gzipped -9): ${(raw / 1024).toFixed(1)} KiB raw, ${(gz / 1000).toFixed(1)} KB gzipped\n`);

console.log(`### Node ${process.version}\n`);
console.log(table(await bench({ vs, jose, noble, quick })));

const { server, port } = await startServer(root);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`pageerror: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/bench/index.html${quick ? "?quick" : ""}`);
  await page.waitForFunction(() => window.__bench, null, { timeout: 600_000 });
  const rows = await page.evaluate(() => window.__bench);
  if (rows.failed) throw new Error(rows.failed);
  console.log(`\n### Chromium ${browser.version()} (headless)\n`);
  console.log(table(rows));
} finally {
  await browser.close();
  server.close();
}
