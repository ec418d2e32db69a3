// The registration portal: every field is sealed in this page with the npm package `vouchsafe`
// (online: a data key from the key server; offline: the registry's public sealing key), each
// bound by `ctx` to its record and field. Plain values never leave the page. Sealed records
// that cannot be sent wait in an IndexedDB queue and go out when the network returns.
import { init, KeyServerClient, sealToPublicKey, VouchsafeError } from "vouchsafe";
import { $, el, notify, tokenSetting, api, ApiError, newId, offlineSupport } from "/shared/common.js";

const DATA_KEY = "pii"; // aes256-gcm: online sealing with data keys
const SEAL_KEY = "pii-seal"; // ecdh-p256: offline sealing to its public key
const REGISTRY = "/v1/registrations";
const FIELDS = ["given_name", "family_name", "phone", "national_id", "date_of_birth", "location"];
const MAX_PHOTO = 700 * 1024;
const USER_FIXABLE = new Set(["unauthenticated", "forbidden", "not_found", "invalid_request"]);

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new ApiError(0, "network_error", "no answer")), ms))]);
}

const token = tokenSetting($("#token-form"), "vouchsafe.portal.token");
const client = () => new KeyServerClient(location.origin, { token: token() });

// ---- the outbox (IndexedDB) ----
// "outbox": sealed records waiting to be sent, by creation time. "held": records the registry
// refused for good (shown, kept, never lost), so one bad record cannot block the rest.
let connection = null;
function db() {
  connection ??= new Promise((resolve, reject) => {
    const req = indexedDB.open("vouchsafe-portal", 2);
    req.onupgradeneeded = () => {
      const d = req.result;
      if (!d.objectStoreNames.contains("outbox")) d.createObjectStore("outbox", { keyPath: "id" });
      const tx = req.transaction;
      if (!tx.objectStore("outbox").indexNames.contains("created_at")) tx.objectStore("outbox").createIndex("created_at", "created_at");
      if (!d.objectStoreNames.contains("held")) d.createObjectStore("held", { keyPath: "id" });
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return connection;
}

async function store(name, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    // Strict durability: a record counts as kept only once it is on disk.
    const tx = d.transaction(name, mode, { durability: "strict" });
    const req = fn(tx.objectStore(name));
    tx.oncomplete = () => resolve(req && req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("the device's storage refused the write"));
  });
}

const queued = () => store("outbox", "readonly", (s) => s.index("created_at").getAll());
const held = () => store("held", "readonly", (s) => s.getAll());
const enqueue = (record) => store("outbox", "readwrite", (s) => s.put(record));
const dequeue = (id) => store("outbox", "readwrite", (s) => s.delete(id));
async function hold(record, reason) {
  await store("held", "readwrite", (s) => s.put({ ...record, refused: reason }));
  await dequeue(record.id);
}

async function showQueue() {
  const refused = await held();
  $("#held").hidden = refused.length === 0;
  $("#held-list").replaceChildren(...refused.map((r) => el("li", {},
    el("strong", {}, `Registration ${r.id}`), ` — refused by the registry: ${r.refused}. It stays on this device; ask your supervisor.`)));
  const items = await queued();
  $("#queue-count").textContent = String(items.length);
  const list = $("#queue");
  list.replaceChildren(...items.map((r) => el("li", {},
    el("strong", {}, `Registration ${r.id}`), " — ",
    `${Object.keys(r.fields).length} sealed fields, ${r.mode === "offline" ? "sealed offline" : "sealed online"}, `,
    `made ${new Date(r.created_at).toLocaleString()}`)));
  if (!items.length) list.append(el("li", { class: "hint" }, "Nothing waiting."));
}

// ---- the key set, kept for offline sealing ----
async function keySet() {
  try {
    const jwks = await client().jwks();
    localStorage.setItem("vouchsafe.portal.jwks", JSON.stringify(jwks));
    return jwks;
  } catch {
    const cached = localStorage.getItem("vouchsafe.portal.jwks");
    return cached ? JSON.parse(cached) : null;
  }
}

// ---- sealing ----
async function photoBytes(file) {
  let blob = file;
  if (file.size > MAX_PHOTO) {
    // Reduce on the device: the sealed photo must stay under the toolkit's 1 MiB limit.
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 1280 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    for (const quality of [0.8, 0.6, 0.4]) {
      blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", quality));
      if (blob.size <= MAX_PHOTO) break;
    }
  }
  return { bytes: new Uint8Array(await blob.arrayBuffer()), type: blob.type || file.type || "application/octet-stream" };
}

/** Seals every answer of the form; returns the record to send (no plain values in it). */
async function sealRecord(form) {
  const id = newId();
  const ctx = (field) => `registration/${id}/${field}`;
  const values = {};
  for (const f of FIELDS) {
    const v = form.elements[f].value.trim();
    if (v) values[f] = v;
  }
  const file = form.elements.photo.files[0];
  const photo = file ? await photoBytes(file) : null;

  let seal;
  let mode;
  let kid;
  try {
    if (!navigator.onLine) throw new ApiError(0, "network_error", "offline");
    // On plain http:// a data key would cross the network in clear text: seal to the public key.
    if (!window.isSecureContext) throw new ApiError(0, "insecure_origin", "not a secure context");
    const dk = await withTimeout(client().dataKey(DATA_KEY), 10_000);
    mode = "online";
    kid = dk.kid;
    seal = { fn: (v, c) => dk.seal(v, { ctx: c }), done: () => dk.dispose() };
  } catch (e) {
    // A refused token is the user's to fix; anything else (no network, a slow or failing
    // server, a captive portal's page) is a reason to seal offline instead.
    if (USER_FIXABLE.has(e.code)) throw e;
    const jwks = await keySet();
    if (!jwks) throw new Error("No network and no saved public key yet: open this page online once first.");
    mode = "offline";
    seal = { fn: (v, c) => sealToPublicKey(jwks, SEAL_KEY, v, { ctx: c }), done: () => {} };
  }
  try {
    const fields = {};
    for (const [f, v] of Object.entries(values)) fields[f] = seal.fn(v, ctx(f));
    if (photo) fields.photo = seal.fn(photo.bytes, ctx("photo"));
    return {
      id, created_at: new Date().toISOString(), mode, kid: kid || null, fields,
      meta: photo ? { photo_type: photo.type } : {},
    };
  } finally {
    seal.done();
  }
}

// ---- sending ----
async function send(record) {
  await api(REGISTRY, { method: "POST", token: token(), body: record });
}

let draining = false;
/** A refusal that retrying cannot fix (a timeout, throttling or a server error can be retried). */
const permanent = (e) => e instanceof ApiError && e.status >= 400 && e.status < 500 && ![401, 408, 429].includes(e.status);

async function drain() {
  if (draining) return;
  draining = true;
  try {
    for (const record of await queued()) {
      try {
        await send(record);
        await dequeue(record.id);
      } catch (e) {
        if (permanent(e)) {
          await hold(record, `${e.code}: ${e.message}`);
          continue;
        }
        break; // no network or a passing failure: keep the order, try again later
      }
    }
  } finally {
    draining = false;
    await showQueue();
  }
}

function showNetwork() {
  notify($("#net"), navigator.onLine ? "ok" : "warn", navigator.onLine
    ? "Online: answers are sealed with a fresh data key from the key server."
    : "Offline: answers are sealed to the registry's public key and kept here until the network returns.");
}

$("#registration").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const result = $("#result");
  if (!form.elements.given_name.value.trim() || !form.elements.family_name.value.trim()) {
    notify(result, "bad", "Given name and family name are needed.");
    form.elements[form.elements.given_name.value.trim() ? "family_name" : "given_name"].focus();
    return;
  }
  $("#submit").disabled = true;
  try {
    const record = await sealRecord(form);
    await enqueue(record); // kept until the registry confirms it
    form.reset();
    try {
      await send(record);
      await dequeue(record.id);
      notify(result, "ok", `Registration ${record.id} sealed (${record.mode}) and sent.`);
    } catch (err) {
      if (permanent(err)) {
        await hold(record, `${err.code}: ${err.message}`);
        notify(result, "bad", `Registration ${record.id} is sealed and kept here, but the registry refused it (${err.code}): ${err.message}`);
      } else if (err instanceof ApiError && err.status === 401) {
        notify(result, "bad", `Registration ${record.id} is sealed and kept here; the registry did not accept the API token (Settings). It will be sent once the token is fixed.`);
      } else {
        notify(result, "warn", `Registration ${record.id} is sealed and kept here; it will be sent when the network returns.`);
      }
    }
  } catch (err) {
    const code = err instanceof VouchsafeError || err instanceof ApiError ? ` (${err.code})` : "";
    notify(result, "bad", `Not sealed${code}: ${err.message}`);
  } finally {
    $("#submit").disabled = false;
    await showQueue();
  }
});

$("#send-now").addEventListener("click", () => void drain());
window.addEventListener("online", () => { showNetwork(); void keySet(); void drain(); });
window.addEventListener("offline", showNetwork);

await init();
showNetwork();
await offlineSupport($("#offline-support"), "/portal/sw.js", "/portal/");
// Ask the browser not to evict the queue under storage pressure (granted to installed or
// much-used sites; where it is not, the page says so).
if (navigator.storage && navigator.storage.persist && !(await navigator.storage.persist().catch(() => false))) {
  $("#storage").hidden = false;
}
await keySet();
await showQueue();
void drain();
setInterval(() => void drain(), 30_000);
document.body.dataset.ready = "true";
