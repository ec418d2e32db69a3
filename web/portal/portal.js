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

const token = tokenSetting($("#token-form"), "vouchsafe.portal.token");
const client = () => new KeyServerClient(location.origin, { token: token() });

// ---- the outbox (IndexedDB) ----
function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("vouchsafe-portal", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("outbox", { keyPath: "id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function outbox(mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction("outbox", mode);
    const req = fn(tx.objectStore("outbox"));
    tx.oncomplete = () => resolve(req && req.result);
    tx.onerror = () => reject(tx.error);
  });
}

const queued = () => outbox("readonly", (s) => s.getAll());
const enqueue = (record) => outbox("readwrite", (s) => s.put(record));
const dequeue = (id) => outbox("readwrite", (s) => s.delete(id));

async function showQueue() {
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
    const dk = await client().dataKey(DATA_KEY);
    mode = "online";
    kid = dk.kid;
    seal = { fn: (v, c) => dk.seal(v, { ctx: c }), done: () => dk.dispose() };
  } catch (e) {
    const offline = e.code === "network_error" || (e instanceof ApiError && e.status === 0);
    if (!offline) throw e; // a refused token is the user's to fix, not a reason to go offline
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
async function drain() {
  if (draining) return;
  draining = true;
  try {
    for (const record of await queued()) {
      try {
        await send(record);
        await dequeue(record.id);
      } catch (e) {
        if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
          notify($("#result"), "bad", `Registration ${record.id} was refused (${e.code}): ${e.message}`);
        }
        break; // keep the order; try again later
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
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        notify(result, "bad", `Registration ${record.id} is sealed and kept here, but the registry refused it (${err.code}): ${err.message}`);
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
await keySet();
await showQueue();
void drain();
setInterval(() => void drain(), 30_000);
document.body.dataset.ready = "true";
