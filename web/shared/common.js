// Helpers shared by the vouchsafe web apps (plain ES modules, no build step).

/** `document.querySelector`, failing loudly when the page lacks the element. */
export function $(selector) {
  const el = document.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/** Creates an element with text and attributes. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** Shows a message in a `.notice` element (kind: ok | bad | warn | ""). */
export function notify(target, kind, text) {
  target.className = `notice ${kind}`;
  target.textContent = text;
  target.hidden = false;
}

/**
 * The API token this browser keeps for the app, and a form to change it (and, with a
 * `button.forget`, to drop it). `storage`: localStorage (stays on the device) or sessionStorage
 * (gone when the tab closes: the admin's decrypt token).
 */
export function tokenSetting(form, key, storage = localStorage) {
  const input = form.querySelector("input");
  input.value = storage.getItem(key) || "";
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    storage.setItem(key, input.value.trim());
    form.querySelector("output").textContent = "Saved.";
  });
  const forget = form.querySelector("button.forget");
  if (forget) {
    forget.addEventListener("click", () => {
      storage.removeItem(key);
      input.value = "";
      form.querySelector("output").textContent = "Forgotten.";
    });
  }
  return () => storage.getItem(key) || "";
}

/** An error from the server (its JSON error body) or from the network. */
export class ApiError extends Error {
  constructor(status, code, message, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    /** The whole error object the server sent (e.g. `redeemed_at` with `already_redeemed`). */
    this.detail = detail;
  }
}

/**
 * JSON request to the key server on this origin; throws ApiError (status 0: no network or no
 * answer within `timeoutMs`, as on a weak connection).
 */
export async function api(path, { method = "GET", token, body, cache = "no-cache", headers: extra = {}, timeoutMs = 15_000 } = {}) {
  const headers = { ...extra };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let r;
  try {
    r = await fetch(path, {
      method, headers, cache, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new ApiError(0, "network_error", `no network: ${e.message}`);
  }
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page); reported below by status.
  }
  if (!r.ok) {
    const err = json && json.error;
    throw new ApiError(r.status, err ? err.code : "http_error", err ? err.message : `HTTP ${r.status}`, err || {});
  }
  return json;
}

/** A random id (crypto.randomUUID needs a secure context; getRandomValues does not). */
export function newId() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Base64url to bytes. */
export function unb64u(s) {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The decoded protected header of a compact JWE/JWS (no verification). */
export function joseHeader(compact) {
  return JSON.parse(new TextDecoder().decode(unb64u(compact.split(".")[0])));
}

/**
 * Registers the app's service worker where the browser allows one (https or localhost) and
 * says plainly what works where it does not (a plain http:// LAN address).
 */
export async function offlineSupport(notice, swUrl, scope) {
  if (!window.isSecureContext || !("serviceWorker" in navigator)) {
    notify(notice, "warn",
      "This page is on a non-secure address (plain http://): anyone on the network can read and change " +
      "what it sends and receives. Sealing and verifying still work on this device, but the app cannot " +
      "install itself for offline start-up. Use https (or localhost) for real work.");
    return false;
  }
  try {
    await navigator.serviceWorker.register(swUrl, { scope });
    return true;
  } catch (e) {
    notify(notice, "warn", `Offline start-up is not available: ${e.message}`);
    return false;
  }
}

/** Local date and time, readable. */
export function when(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
