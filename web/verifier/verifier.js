// The merchant's voucher check: verifies voucher JWTs on this device with the npm package
// `vouchsafe`, against the key set and revocation lists it keeps from its last sync, so it
// works for days without network. Redeeming needs the network.
import { init, VoucherVerifier, StatusList, VouchsafeError } from "vouchsafe";
import { $, notify, tokenSetting, api, ApiError, offlineSupport, when, newId } from "/shared/common.js";

const CACHE_KEY = "vouchsafe.verifier.cache";
const LEEWAY = 60;
const token = tokenSetting($("#token-form"), "vouchsafe.verifier.token");
// The programme (audience) is a setting like a token: same form, same storage.
const programme = tokenSetting($("#programme-form"), "vouchsafe.verifier.programme");
$("#programme-form").addEventListener("submit", () => {
  prepare();
  if (lastToken) check(lastToken);
});

/** What a merchant should read for each outcome: [headline, explanation]. */
const VERDICTS = {
  expired: ["EXPIRED", "This voucher's validity period is over. Do not accept it."],
  revoked: ["REVOKED", "The programme has cancelled this voucher. Do not accept it."],
  not_yet_valid: ["NOT VALID YET", "This voucher cannot be used before its start date."],
  unknown_kid: ["UNKNOWN ISSUER KEY", "This voucher was not signed by a key this device knows. Update keys when online; if it still fails, do not accept it."],
  forged: ["FORGED", "The voucher's signature does not match its contents: it was altered or made up. Do not accept it."],
  not_a_voucher: ["NOT A VOUCHER", "This is not a voucher of this programme. Check that you scanned the right code."],
  claims: ["NOT VALID", "The voucher is signed but its contents break the programme's rules. Do not accept it."],
  wrong_programme: ["WRONG PROGRAMME", "This voucher belongs to another programme than the one this shop accepts. Do not accept it."],
};
/** Core error codes (crates/core/src/error.rs) → verdict. */
const CODES = {
  expired: "expired", revoked: "revoked", not_yet_valid: "not_yet_valid", unknown_kid: "unknown_kid",
  bad_signature: "forged", unsupported_alg: "forged", unsupported_header: "forged",
  malformed: "not_a_voucher", bad_type: "not_a_voucher", too_large: "not_a_voucher",
  missing_claim: "claims", invalid_claim: "claims", wrong_audience: "wrong_programme", wrong_issuer: "claims",
};

let cache = JSON.parse(localStorage.getItem(CACHE_KEY) || "null"); // { jwks, lists: [{uri, token}], synced_at }
const deviceId = localStorage.getItem("vouchsafe.verifier.device") || newId();
localStorage.setItem("vouchsafe.verifier.device", deviceId);
let verifier = null;
let lists = [];
let lastToken = null;
let checks = 0;

function prepare() {
  for (const l of lists) l.free();
  lists = [];
  verifier = null;
  if (!cache) return;
  const audience = programme() || undefined;
  verifier = new VoucherVerifier(cache.jwks, { leewaySeconds: LEEWAY, audience });
  for (const l of cache.lists) {
    try {
      lists.push(StatusList.fromToken(l.token, cache.jwks, { uri: l.uri }));
    } catch (e) {
      // An expired or bad list is left out: vouchers on it show "revocation not checked".
      console.warn(`status list ${l.uri} not used: ${e.code}`);
    }
  }
}

function showSync(note) {
  const el = $("#sync-status");
  if (!cache) {
    notify(el, "bad", note || "No keys yet: connect to the network once so this device can download them.");
    return;
  }
  // Freshness is what the lists themselves say (their signed iat), not when this device last
  // asked: offline, a "sync" can only return the copies it already had.
  const issued = lists.length ? Math.min(...lists.map((l) => l.iat)) : null;
  const age = issued
    ? `Revocation lists issued ${when(issued)} (${lists.length}); keys checked ${when(cache.synced_at)}.`
    : `Keys from ${when(cache.synced_at)}; no current revocation list: revocation cannot be checked.`;
  notify(el, navigator.onLine && issued ? "ok" : "warn", navigator.onLine ? age : `Offline — ${age}`);
  if (note) el.textContent += ` ${note}`;
}

async function sync() {
  try {
    const jwks = await api("/.well-known/jwks.json");
    const index = await api("/v1/status");
    const fetched = [];
    for (const l of index.lists) {
      // "Update now" means now: past the HTTP cache (the lists carry a max-age). A list that
      // cannot be fetched keeps its last good copy.
      const r = await fetch(new URL(l.uri).pathname, { cache: "no-cache" }).catch(() => null);
      const previous = cache && cache.lists.find((p) => p.uri === l.uri);
      if (r && r.ok) fetched.push({ uri: l.uri, token: await r.text() });
      else if (previous) fetched.push(previous);
    }
    cache = { jwks, lists: fetched, synced_at: Math.floor(Date.now() / 1000) };
    localStorage.setItem(CACHE_KEY, JSON.stringify(cache));
    prepare();
    showSync();
    document.body.dataset.synced = String(Date.now());
    if (lastToken) check(lastToken);
  } catch (e) {
    showSync(e instanceof ApiError && e.status === 0 ? "(Could not update: no network.)" : `(Could not update: ${e.message})`);
  }
}

function show(kind, word, why, claims, note = "") {
  $("#verdict").className = `verdict ${kind}`;
  $("#verdict-word").textContent = word;
  $("#verdict-why").textContent = why;
  $("#verdict-amount").textContent = claims ? `${claims.amount} ${claims.currency}` : "";
  $("#verdict").hidden = false;
  $("#verdict").dataset.seq = String(++checks);
  $("#details").hidden = !claims;
  if (claims) {
    $("#d-sub").textContent = claims.sub;
    $("#d-aud").textContent = claims.aud;
    $("#d-exp").textContent = when(claims.exp);
    $("#d-jti").textContent = claims.jti;
    $("#d-status").textContent = note;
  }
  $("#redeem").hidden = kind === "bad";
  $("#redeem").disabled = false;
  $("#redeem-result").hidden = true;
  $("#verdict").scrollIntoView({ block: "nearest" });
}

function check(text) {
  const t = text.trim();
  lastToken = t;
  if (!verifier) {
    show("bad", "CANNOT CHECK", "This device has no keys yet: connect once and press Update now.");
    return;
  }
  // Lists past their own expiry are dropped before every check, not only at sync.
  const now = Date.now() / 1000;
  if (lists.some((l) => l.exp !== undefined && l.exp <= now)) prepare();
  let claims;
  try {
    claims = verifier.verify(t, { statusList: lists });
  } catch (e) {
    const code = e instanceof VouchsafeError ? e.code : "malformed";
    const [word, why] = VERDICTS[CODES[code]] || ["NOT VALID", e.message];
    show("bad", word, why, null);
    $("#verdict").dataset.code = code;
    return;
  }
  const listed = claims.status && lists.some((l) => l.uri === claims.status.status_list.uri);
  if (claims.status && !listed) {
    show("warn", "VALID — REVOCATION NOT CHECKED",
      "Signed by the programme and within its dates, but this device has no current revocation list for it. Update when online before accepting large amounts.",
      claims, "not checked: no current list on this device");
    $("#verdict").dataset.code = "valid_unchecked";
    return;
  }
  show("ok", "VALID", "Signed by the programme, within its dates, not revoked.", claims, claims.status ? "checked: not revoked" : "none");
  $("#verdict").dataset.code = "valid";
}

async function decodeQr(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const code = globalThis.jsQR(image.data, image.width, image.height);
  return code ? code.data : null;
}

$("#qr-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const text = await decodeQr(file).catch(() => null);
  if (text) check(text);
  else show("bad", "NO QR CODE FOUND", "Take the photo again, closer and sharper.", null);
});

$("#paste-form").addEventListener("submit", (e) => {
  e.preventDefault();
  check($("#token-text").value);
});

let scanning = null;
$("#camera").addEventListener("click", async () => {
  const video = $("#video");
  if (scanning) { // a second press stops the camera
    for (const t of scanning.getTracks()) t.stop();
    scanning = null;
    video.hidden = true;
    $("#camera").textContent = "Scan with camera";
    return;
  }
  if (!navigator.mediaDevices || !window.isSecureContext) {
    show("bad", "NO CAMERA HERE", "The browser allows the camera only on https or localhost pages. Upload a photo instead.", null);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    scanning = stream;
    $("#camera").textContent = "Stop camera";
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const scan = () => {
      if (video.readyState >= 2) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        const code = globalThis.jsQR(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
        if (code) {
          for (const t of stream.getTracks()) t.stop();
          scanning = null;
          $("#camera").textContent = "Scan with camera";
          video.hidden = true;
          check(code.data);
          return;
        }
      }
      if (scanning === stream) setTimeout(scan, 150); // a few reads a second are enough
    };
    scan();
  } catch (e) {
    show("bad", "NO CAMERA", `The camera could not be opened (${e.name}). Upload a photo instead.`, null);
  }
});

$("#redeem").addEventListener("click", async () => {
  const out = $("#redeem-result");
  const button = $("#redeem");
  button.disabled = true; // one request at a time: a double tap must not read as "already redeemed"
  const jti = $("#d-jti").textContent;
  try {
    // The same key for every retry of this voucher from this device: a retry after a lost answer
    // gets the first answer back instead of "already redeemed".
    const r = await api("/v1/vouchers/redeem", {
      method: "POST", token: token(), headers: { "idempotency-key": `${deviceId}-${jti}` },
      body: programme() ? { token: lastToken, audience: programme() } : { token: lastToken },
    });
    notify(out, "ok", `Redeemed at ${new Date(r.redeemed_at).toLocaleString()}. Hand over the goods.`);
    button.hidden = true;
  } catch (e) {
    const first = e.detail && e.detail.redeemed_at ? ` on ${new Date(e.detail.redeemed_at).toLocaleString()}` : "";
    const text = e.code === "already_redeemed" ? `Already redeemed${first}. Do not accept it again.`
      : e.status === 0 ? "No network: redeeming needs the network. Do not hand over goods until it is redeemed."
        : `Not redeemed (${e.code}): ${e.message}`;
    notify(out, "bad", text);
    button.disabled = false;
  }
});

$("#sync").addEventListener("click", () => void sync());
window.addEventListener("online", () => void sync());
window.addEventListener("offline", () => showSync());

await init();
prepare();
showSync();
await offlineSupport($("#offline-support"), "/verifier/sw.js", "/verifier/");
if (navigator.onLine) await sync();
// Lists carry a ttl (5 minutes by default): an open verifier keeps itself current.
setInterval(() => { if (navigator.onLine) void sync(); }, 5 * 60_000);
document.body.dataset.ready = "true";
