// End-to-end tests of the three web apps against a real server (the `vouchsafe` binary named by
// VOUCHSAFE_BIN, started here on a free port with SQLite, the soft keystore and four role
// tokens), in headless Chromium through playwright-core (/usr/bin/chromium), on a 360 px wide
// phone screen. scripts/test-web builds the binary and the apps first. Screenshots of each app
// go to SCREENSHOTS (default target/screenshots; `just screenshots` refreshes docs/screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import QRCode from "qrcode";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const bin = process.env.VOUCHSAFE_BIN || path.join(root, "target/debug/vouchsafe");
// docs/screenshots/ is refreshed on purpose (`just screenshots`); ordinary runs write to target/.
const shots = process.env.SCREENSHOTS || path.join(root, "target/screenshots");
const TOKENS = {
  clerk: "vsk_test_clerk_0000000000000000000000000000000",
  officer: "vsk_test_officer_000000000000000000000000000000",
  merchant: "vsk_test_merchant_00000000000000000000000000000",
  programme: "vsk_test_programme_0000000000000000000000000000",
};
const PERMISSIONS = {
  clerk: ["keys:encrypt:pii", "registrations:submit"],
  officer: ["registrations:read", "keys:decrypt:pii", "keys:decrypt:pii-seal", "audit:read"],
  merchant: ["vouchers:redeem"],
  programme: ["vouchers:issue", "vouchers:revoke"],
};

let server;
let base;
let port;
let work;
let browser;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** Headless /usr/bin/chromium with the flags this machine needs (no internet), plus `extra`. */
function launch(extra) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", ...extra],
  });
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "vouchsafe-web-"));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const tokens = Object.entries(TOKENS).map(([name, token]) =>
    `[[auth.tokens]]\nname = "${name}"\ntoken = "${token}"\npermissions = ${JSON.stringify(PERMISSIONS[name])}\n`).join("\n");
  writeFileSync(path.join(work, "vouchsafe.toml"), `listen = "127.0.0.1:${port}"
database_url = "sqlite://${work}/vouchsafe.db"
issuer = "${base}"
[keystore]
provider = "soft"
master_key_file = "${work}/master.key"
[web]
dir = "${root}/web"
package_dir = "${root}/npm/web"
${tokens}`);
  server = spawn(bin, ["--config", path.join(work, "vouchsafe.toml"), "serve"], {
    cwd: work, env: { ...process.env, DATABASE_URL: "" }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  server.stdout.on("data", (d) => { out += d; });
  server.stderr.on("data", (d) => { out += d; });
  for (let i = 0; !out.includes("listening on"); i++) {
    if (i > 300 || server.exitCode !== null) throw new Error(`server did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await launch(["--host-resolver-rules=MAP portal.test 127.0.0.1"]);
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function api(pathname, { token, method = "GET", body } = {}) {
  const r = await fetch(base + pathname, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** A phone-sized page that fails the test on console errors (other than fetches refused on purpose). */
async function phone(context) {
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => {
    const t = m.text();
    if (m.type() === "error" && !t.startsWith("Failed to load resource")) problems.push(`console: ${t}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.problems = problems;
  return page;
}

async function newContext() {
  return browser.newContext({ viewport: { width: 360, height: 780 }, deviceScaleFactor: 1 });
}

async function ready(page, url) {
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
}

async function fitsPhone(page) {
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `no horizontal scrolling on a 360 px screen (page is ${width} px wide)`);
}

async function setToken(page, token) {
  await page.click("details summary").catch(() => {});
  await page.fill("#token", token);
  await page.click("#token-form button");
}

async function fillHousehold(page, h) {
  await page.fill("#given_name", h.given);
  await page.fill("#family_name", h.family);
  await page.fill("#phone", h.phone);
  await page.fill("#national_id", h.id);
  await page.fill("#date_of_birth", h.dob);
  await page.fill("#location", h.location);
  await page.setInputFiles("#photo", { name: "id-card.png", mimeType: "image/png", buffer: h.photo });
}

const households = [];

test("portal: register online, then offline; the queue drains when the network returns; nothing plain leaves the page", async () => {
  const photo = await QRCode.toBuffer("NATIONAL ID CARD 12345678", { type: "png", width: 240 });
  households.push(
    { given: "Amina", family: "Wanjiru", phone: "0712 345 678", id: "12345678", dob: "1990-04-12", location: "Kibera", photo },
    { given: "Baraka", family: "Otieno", phone: "0722 000 111", id: "87654321", dob: "1985-11-02", location: "Kisumu", photo },
  );
  const context = await newContext();
  const page = await phone(context);
  const sent = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith("/v1/registrations")) sent.push(r.postData());
  });
  await ready(page, `${base}/portal/`);
  await setToken(page, TOKENS.clerk);
  await page.evaluate(() => navigator.serviceWorker.ready);

  await fillHousehold(page, households[0]);
  await page.click("#submit");
  await page.waitForSelector("#result.ok");
  assert.match(await page.textContent("#result"), /sealed \(online\) and sent/);
  households[0].record = (await page.textContent("#result")).match(/Registration (\w+)/)[1];
  await fitsPhone(page);
  await page.screenshot({ path: path.join(shots, "portal.png"), fullPage: true });

  // Offline: the app itself comes from the service worker; the record is sealed to the public key.
  await context.setOffline(true);
  await ready(page, `${base}/portal/`);
  assert.match(await page.textContent("#net"), /Offline/);
  await fillHousehold(page, households[1]);
  await page.click("#submit");
  await page.waitForSelector("#result.warn");
  households[1].record = (await page.textContent("#result")).match(/Registration (\w+)/)[1];
  assert.equal(await page.textContent("#queue-count"), "1");
  assert.match(await page.textContent("#queue"), new RegExp(`Registration ${households[1].record}.*sealed offline`));
  await page.screenshot({ path: path.join(shots, "portal-offline-queue.png"), fullPage: true });

  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#queue-count").textContent === "0", null, { timeout: 20_000 });
  assert.ok(sent.length >= 2, "both records went to the registry");
  for (const body of sent) {
    for (const h of households) {
      for (const plain of [h.given, h.family, h.phone, h.id, h.dob, h.location]) {
        assert.ok(!body.includes(plain), `the plain value ${plain} never leaves the page`);
      }
    }
  }
  const listed = await api("/v1/registrations", { token: TOKENS.officer });
  assert.deepEqual(listed.json.items.map((i) => i.mode).sort(), ["offline", "online"]);
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("portal: a record the registry refuses is held on the device and does not block the queue", async () => {
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/portal/`);
  await setToken(page, TOKENS.clerk);
  // A record the registry will refuse (a plain value instead of a JWE), queued first.
  await page.evaluate(() => new Promise((resolve, reject) => {
    const req = indexedDB.open("vouchsafe-portal", 2);
    req.onsuccess = () => {
      const tx = req.result.transaction("outbox", "readwrite");
      tx.objectStore("outbox").put({ id: "bad0000000000001", created_at: "2000-01-01T00:00:00.000Z", mode: "offline", kid: null, fields: { given_name: "not sealed" }, meta: {} });
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    };
  }));
  await context.setOffline(true);
  await fillHousehold(page, { ...households[0], given: "Esther" });
  await page.click("#submit");
  await page.waitForSelector("#result.warn");
  assert.equal(await page.textContent("#queue-count"), "2");
  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#queue-count").textContent === "0", null, { timeout: 20_000 });
  assert.equal(await page.isVisible("#held"), true);
  assert.match(await page.textContent("#held-list"), /bad0000000000001.*invalid_request/);
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("portal: keyboard only", async () => {
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/portal/`);
  await setToken(page, TOKENS.clerk);
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.keyboard.press("Tab");
  for (let i = 0; i < 20 && (await page.evaluate(() => document.activeElement.id)) !== "given_name"; i++) {
    await page.keyboard.press("Tab");
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), "given_name", "the form is reachable by Tab");
  for (const v of ["Chebet", "Kiprono", "0733 222 333", "11223344"]) {
    await page.keyboard.type(v);
    await page.keyboard.press("Tab");
  }
  await page.keyboard.type("04121990"); // a date input takes digits, segment by segment
  for (let i = 0; i < 4 && (await page.evaluate(() => document.activeElement.id)) !== "location"; i++) {
    await page.keyboard.press("Tab"); // Tab may first visit the date's own segments
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), "location");
  await page.keyboard.type("Eldoret");
  const values = await page.evaluate(() => [...document.querySelectorAll("#registration input")].map((i) => `${i.id}=${i.value}`).join(" "));
  const focused = await page.evaluate(() => document.activeElement.id);
  await page.keyboard.press("Enter"); // submits the form
  await page.waitForSelector("#result:not([hidden])", { timeout: 10_000 }).catch(() => {
    assert.fail(`no result after Enter; focus on ${focused}; ${values}`);
  });
  assert.match(await page.getAttribute("#result", "class"), /\bok\b/, await page.textContent("#result"));
  const outline = await page.evaluate(() => {
    document.querySelector("#submit").focus();
    return getComputedStyle(document.activeElement).outlineStyle;
  });
  assert.notEqual(outline, "none", "focus is visible");
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("admin: an officer opens each record and sees the original values; every opening is audited", async () => {
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/admin/`);
  await page.fill("#token", TOKENS.officer);
  await page.click("#token-form button");
  await page.click("#load");
  for (const h of households) {
    await page.click(`button[data-id="${h.record}"]`);
    await page.waitForSelector(`#record-title:has-text("${h.record}")`);
    const text = await page.textContent("#fields");
    for (const v of [h.given, h.family, h.phone, h.id, h.dob, h.location]) assert.ok(text.includes(v), `${v} shown`);
    const img = await page.$eval("tr[data-field=photo] img", (i) => i.complete && i.naturalWidth > 0);
    assert.ok(img, "the document photo opens and displays");
  }
  await fitsPhone(page);
  await page.screenshot({ path: path.join(shots, "admin.png"), fullPage: true });
  const audit = await api("/v1/audit?limit=1000", { token: TOKENS.officer });
  const decrypts = audit.json.entries.filter((e) => e.actor === "officer" && e.action === "keys.decrypt" && e.outcome === "ok");
  assert.ok(decrypts.some((e) => e.target === "pii") && decrypts.some((e) => e.target === "pii-seal"),
    "openings under both keys are in the audit log");
  const reads = audit.json.entries.filter((e) => e.actor === "officer" && e.action === "registrations.read");
  assert.equal(reads.length, 2);
  // Without the decrypt permission, the page says so instead of showing values.
  await page.fill("#token", TOKENS.clerk);
  await page.click("#token-form button");
  await page.click("#load");
  await page.waitForSelector("#status.bad");
  assert.match(await page.textContent("#status"), /forbidden/);
  assert.deepEqual(page.problems, []);
  await context.close();
});

async function issue(extra = {}) {
  const r = await api("/v1/vouchers", {
    method: "POST", token: TOKENS.programme,
    body: { sub: "household-0042", aud: "cash-2026", amount: "1500.00", currency: "KES", ...extra },
  });
  assert.equal(r.status, 201);
  return r.json;
}

/** Runs `action` and waits for the verdict it produces (not the one already on the page). */
async function checked(page, action) {
  const before = Number((await page.getAttribute("#verdict", "data-seq")) || 0);
  await action();
  await page.waitForFunction((n) => Number(document.querySelector("#verdict").dataset.seq || 0) > n, before);
  return verdict(page);
}

async function synced(page) {
  const before = await page.getAttribute("body", "data-synced");
  await page.click("#sync");
  await page.waitForFunction((b) => document.body.dataset.synced && document.body.dataset.synced !== b, before);
}

async function upload(page, token) {
  const png = await QRCode.toBuffer(token, { type: "png", errorCorrectionLevel: "L", width: 600, margin: 4 });
  await page.setInputFiles("#qr-file", { name: "voucher.png", mimeType: "image/png", buffer: png });
}

async function verdict(page) {
  await page.waitForSelector("#verdict:not([hidden])");
  return { word: (await page.textContent("#verdict-word")).trim(), code: await page.getAttribute("#verdict", "data-code") };
}

test("verifier: a QR photo verifies; revoked after a sync; one changed character is forged; works offline", async () => {
  const good = await issue();
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/verifier/`);
  await page.evaluate(() => navigator.serviceWorker.ready);
  assert.deepEqual(await checked(page, () => upload(page, good.token)), { word: "VALID", code: "valid" });
  assert.equal((await page.textContent("#verdict-amount")).trim(), "1500.00 KES");
  assert.equal(await page.textContent("#d-sub"), "household-0042");
  assert.equal(await page.textContent("#d-status"), "checked: not revoked");
  await fitsPhone(page);
  await page.screenshot({ path: path.join(shots, "verifier-valid.png"), fullPage: true });

  // Redeem (online, merchant token): once.
  await setToken(page, TOKENS.merchant);
  await page.click("#redeem");
  await page.waitForSelector("#redeem-result.ok");
  const again = await api("/v1/vouchers/redeem", { method: "POST", token: TOKENS.merchant, body: { token: good.token } });
  assert.equal(again.status, 409);

  // Revoked: the merchant syncs and the same kind of voucher now reads REVOKED.
  const revoked = await issue({ sub: "household-0043" });
  assert.equal((await api(`/v1/vouchers/${revoked.jti}/revoke`, { method: "POST", token: TOKENS.programme })).status, 200);
  await synced(page);
  assert.deepEqual(await checked(page, () => upload(page, revoked.token)), { word: "REVOKED", code: "revoked" });
  await page.screenshot({ path: path.join(shots, "verifier-revoked.png"), fullPage: true });

  // One character changed in the payload: forged.
  const [h, p, s] = good.token.split(".");
  const i = Math.floor(p.length / 2);
  const tampered = `${h}.${p.slice(0, i)}${p[i] === "A" ? "B" : "A"}${p.slice(i + 1)}.${s}`;
  await page.fill("#token-text", tampered);
  assert.equal((await checked(page, () => page.click("#paste-form button"))).word, "FORGED");
  await page.screenshot({ path: path.join(shots, "verifier-forged.png"), fullPage: true });

  // A week offline: the app starts from its cache and still checks vouchers.
  const later = await issue({ sub: "household-0044" });
  await synced(page);
  await context.setOffline(true);
  await ready(page, `${base}/verifier/`);
  assert.match(await page.textContent("#sync-status"), /Offline/);
  await page.fill("#token-text", later.token);
  assert.equal((await checked(page, () => page.click("#paste-form button"))).word, "VALID");
  await page.fill("#token-text", revoked.token);
  assert.equal((await checked(page, () => page.click("#paste-form button"))).word, "REVOKED");
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("verifier: a shop that accepts one programme refuses another programme's voucher", async () => {
  const v = await issue({ sub: "household-0080" });
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/verifier/`);
  await page.click("details summary");
  await page.fill("#programme", "school-meals-2026");
  await page.click("#programme-form button");
  await page.fill("#token-text", v.token);
  assert.deepEqual(await checked(page, () => page.click("#paste-form button")), { word: "WRONG PROGRAMME", code: "wrong_audience" });
  await page.fill("#programme", "cash-2026");
  const again = await checked(page, () => page.click("#programme-form button")); // re-checks the voucher on screen
  assert.equal(again.word, "VALID");
  assert.deepEqual(page.problems, []);
  await context.close();
});

test("verifier and admin: keyboard only", async () => {
  const v = await issue({ sub: "household-0070" });
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `${base}/verifier/`);
  const tabTo = async (id) => {
    for (let i = 0; i < 25 && (await page.evaluate(() => document.activeElement.id)) !== id; i++) await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.id), id, `#${id} is reachable by Tab`);
  };
  await tabTo("token-text");
  await page.keyboard.insertText(v.token); // as a paste would
  await page.keyboard.press("Tab");
  const result = await checked(page, () => page.keyboard.press("Enter"));
  assert.equal(result.word, "VALID");
  assert.equal(await page.getAttribute("#verdict", "role"), "alert", "screen readers hear the verdict");

  await ready(page, `${base}/admin/`);
  await tabTo("token");
  await page.keyboard.type(TOKENS.officer);
  await page.keyboard.press("Enter"); // saves the token
  await tabTo("load");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#records li button");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter"); // opens the newest record
  await page.waitForSelector("#record:not([hidden])");
  assert.equal(await page.evaluate(() => document.activeElement.id), "record-title", "focus moves to the opened record");
  assert.deepEqual(page.problems, []);
  await context.close();
});

/** A one-frame Y4M video of `text` as a QR code, for Chromium's fake camera. */
function qrVideo(text, file) {
  const qr = QRCode.create(text, { errorCorrectionLevel: "L" });
  const n = qr.modules.size;
  const [w, h] = [640, 480];
  const scale = Math.floor((h - 40) / (n + 8));
  const x0 = Math.floor((w - n * scale) / 2);
  const y0 = Math.floor((h - n * scale) / 2);
  const y = Buffer.alloc(w * h, 255);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (!qr.modules.get(r, c)) continue;
      for (let dy = 0; dy < scale; dy++) y.fill(0, (y0 + r * scale + dy) * w + x0 + c * scale, (y0 + r * scale + dy) * w + x0 + (c + 1) * scale);
    }
  }
  const chroma = Buffer.alloc((w / 2) * (h / 2) * 2, 128);
  writeFileSync(file, Buffer.concat([Buffer.from(`YUV4MPEG2 W${w} H${h} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), y, chroma]));
}

test("verifier: scanning with the camera (Chromium's fake camera showing the voucher's QR code)", async () => {
  const v = await issue({ sub: "household-0060", amount: "250.00" });
  const video = path.join(work, "voucher.y4m");
  qrVideo(v.token, video);
  const camBrowser = await launch(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${video}`]);
  try {
    const context = await camBrowser.newContext({ viewport: { width: 360, height: 780 }, permissions: ["camera"] });
    const page = await phone(context);
    await ready(page, `${base}/verifier/`);
    const result = await checked(page, () => page.click("#camera"));
    assert.equal(result.word, "VALID");
    assert.equal((await page.textContent("#verdict-amount")).trim(), "250.00 KES");
    assert.equal(await page.isHidden("#video"), true, "the camera stops after a read");
    assert.deepEqual(page.problems, []);
  } finally {
    await camBrowser.close();
  }
});

test("verifier and portal on a non-secure http:// LAN origin: they work and say what they cannot do", async () => {
  const v = await issue({ sub: "household-0050" });
  const context = await newContext();
  const page = await phone(context);
  await ready(page, `http://portal.test:${port}/verifier/`);
  assert.equal(await page.evaluate(() => window.isSecureContext), false);
  assert.match(await page.textContent("#offline-support"), /non-secure address/);
  await page.fill("#token-text", v.token);
  assert.equal((await checked(page, () => page.click("#paste-form button"))).word, "VALID");

  await ready(page, `http://portal.test:${port}/portal/`);
  await setToken(page, TOKENS.clerk);
  await fillHousehold(page, { ...households[0], given: "Dalia" });
  await page.click("#submit");
  await page.waitForSelector("#result.ok");
  // No data key over plain http: the record is sealed to the public key.
  assert.match(await page.textContent("#result"), /sealed \(offline\) and sent/);

  // The admin view refuses to show decrypted data over plain http.
  await ready(page, `http://portal.test:${port}/admin/`);
  assert.match(await page.textContent("#status"), /https/);
  assert.equal(await page.isDisabled("#load"), true);
  assert.deepEqual(page.problems, []);
  await context.close();
});
