// The merchant's voucher check: verifies voucher JWTs on this device with the npm package
// `vouchsafe`, against the key set and revocation lists it keeps from its last sync, so it
// works for days without network. Redeeming needs the network.
import { init, VoucherVerifier, StatusList, VouchsafeError } from "vouchsafe";
import { $, notify, tokenSetting, api, ApiError, offlineSupport, when } from "/shared/common.js";

const CACHE_KEY = "vouchsafe.verifier.cache";
const LEEWAY = 60;
const token = tokenSetting($("#token-form"), "vouchsafe.verifier.token");

/** What a merchant should read for each outcome: [headline, explanation]. */
const VERDICTS = {
  expired: ["EXPIRED", "This voucher's validity period is over. Do not accept it."],
  revoked: ["REVOKED", "The programme has cancelled this voucher. Do not accept it."],
  not_yet_valid: ["NOT VALID YET", "This voucher cannot be used before its start date."],
  unknown_kid: ["UNKNOWN ISSUER KEY", "This voucher was not signed by a key this device knows. Update keys when online; if it still fails, do not accept it."],
  forged: ["FORGED", "The voucher's signature does not match its contents: it was altered or made up. Do not accept it."],
  wrong_audience: ["WRONG PROGRAMME", "This voucher belongs to another programme."],
  wrong_issuer: ["UNKNOWN ISSUER", "This voucher was not issued by this programme's key server."],
};
const FORGED = new Set(["bad_signature", "malformed", "unsupported_alg", "unsupported_header", "bad_type", "missing_claim", "invalid_claim", "too_large"]);

let cache = JSON.parse(localStorage.getItem(CACHE_KEY) || "null"); // { jwks, lists: [{uri, token}], synced_at }
let verifier = null;
let lists = [];
let lastToken = null;
let checks = 0;

function prepare() {
  for (const l of lists) l.free();
  lists = [];
  verifier = null;
  if (!cache) return;
  verifier = new VoucherVerifier(cache.jwks, { leewaySeconds: LEEWAY });
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
  const age = `Keys and ${lists.length} revocation list(s) from ${when(cache.synced_at)}.`;
  notify(el, navigator.onLine ? "ok" : "warn", navigator.onLine ? age : `Offline — checking with the ${age.toLowerCase()}`);
  if (note) el.textContent += ` ${note}`;
}

async function sync() {
  try {
    const jwks = await api("/.well-known/jwks.json");
    const index = await api("/v1/status");
    const fetched = [];
    for (const l of index.lists) {
      // "Update now" means now: past the HTTP cache (the lists carry a max-age).
      const r = await fetch(new URL(l.uri).pathname, { cache: "no-cache" });
      if (r.ok) fetched.push({ uri: l.uri, token: await r.text() });
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

function show(kind, word, why, claims) {
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
    const listed = claims.status && lists.some((l) => l.uri === claims.status.status_list.uri);
    $("#d-status").textContent = !claims.status ? "none" : listed ? "checked: not revoked" : "not checked: list not downloaded yet";
  }
  $("#redeem").hidden = kind !== "ok";
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
  try {
    const claims = verifier.verify(t, { statusList: lists });
    show("ok", "VALID", "Signed by the programme, within its dates, not revoked.", claims);
  } catch (e) {
    if (!(e instanceof VouchsafeError)) throw e;
    const [word, why] = VERDICTS[e.code] || (FORGED.has(e.code) ? VERDICTS.forged : ["NOT VALID", e.message]);
    show("bad", word, why, null);
    $("#verdict").dataset.code = e.code;
    return;
  }
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

$("#camera").addEventListener("click", async () => {
  const video = $("#video");
  if (!navigator.mediaDevices || !window.isSecureContext) {
    show("bad", "NO CAMERA HERE", "The browser allows the camera only on https or localhost pages. Upload a photo instead.", null);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
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
          video.hidden = true;
          check(code.data);
          return;
        }
      }
      requestAnimationFrame(scan);
    };
    scan();
  } catch (e) {
    show("bad", "NO CAMERA", `The camera could not be opened (${e.name}). Upload a photo instead.`, null);
  }
});

$("#redeem").addEventListener("click", async () => {
  const out = $("#redeem-result");
  try {
    const r = await api("/v1/vouchers/redeem", { method: "POST", token: token(), body: { token: lastToken } });
    notify(out, "ok", `Redeemed at ${new Date(r.redeemed_at).toLocaleString()}. Hand over the goods.`);
    $("#redeem").hidden = true;
  } catch (e) {
    const text = e.code === "already_redeemed" ? `Already redeemed: ${e.message}. Do not accept it again.`
      : e.status === 0 ? "No network: redeeming needs the network. The voucher itself checked out."
        : `Not redeemed (${e.code}): ${e.message}`;
    notify(out, "bad", text);
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
document.body.dataset.ready = "true";
