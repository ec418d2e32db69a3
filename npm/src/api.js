// The package's JavaScript half, shared by the browser and Node entries: `VouchsafeError`,
// `KeyServerClient` (the global `fetch`), and the WebCrypto paths of `sealAsync` and
// `verifyAsync`. Every format and every rule stays in the WebAssembly core; this code only moves
// bytes between the core and `fetch` or `crypto.subtle` (keeping it here, not in Rust futures,
// saves ~30 KB of WebAssembly).

/** The error every vouchsafe function throws; `code` is stable. */
export class VouchsafeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "VouchsafeError";
    this.code = code;
  }
}

const invalid = (message) => new VouchsafeError("invalid_argument", message);

/** `crypto.subtle` where it exists (secure contexts, workers, Node); undefined elsewhere. */
const subtle = () => {
  const s = globalThis.crypto?.subtle;
  return s && typeof s === "object" ? s : undefined;
};

/** `crypto.subtle[method](...args)`; a failure becomes `key_operation_failed`. */
async function webCrypto(s, method, ...args) {
  try {
    return await s[method](...args);
  } catch (e) {
    throw new VouchsafeError("key_operation_failed", `WebCrypto ${method}: ${e?.message ?? e}`);
  }
}

/**
 * `map.get(key)` if it holds a value, else `make()`'s promise, shared by concurrent callers and
 * replaced by its value once it settles; a failure is not kept, so a later call tries again.
 */
function cached(map, key, make) {
  const hit = map.get(key);
  if (hit !== undefined) return hit;
  const p = make().then(
    (value) => {
      if (map.get(key) === p) map.set(key, value);
      return value;
    },
    (e) => {
      if (map.get(key) === p) map.delete(key);
      throw e;
    },
  );
  map.set(key, p);
  return p;
}

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" };
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" };

/**
 * Adds the JavaScript half to the wasm-bindgen module `wasm`; returns the classes defined here.
 */
export function install(wasm) {
  const { DataKey, VoucherVerifier } = wasm;
  // The wasm's internal halves, taken off the public prototypes: only this module calls them
  // (`__rawKey` hands out the DEK for WebCrypto's importKey).
  const internal = (cls, name) => {
    const f = cls.prototype[name];
    delete cls.prototype[name];
    return f;
  };
  const prepareSeal = internal(DataKey, "__prepareSeal");
  const rawKey = internal(DataKey, "__rawKey");
  const prepareVerify = internal(VoucherVerifier, "__prepareVerify");

  // The DEK imported into WebCrypto (non-extractable) by the first sealAsync, per DataKey;
  // dropped by dispose(), free() and `using`.
  const aesKeys = new WeakMap();
  const { dispose, free } = DataKey.prototype;
  DataKey.prototype.dispose = function () {
    aesKeys.delete(this);
    dispose.call(this);
  };
  DataKey.prototype.free = function () {
    aesKeys.delete(this);
    free.call(this);
  };
  if (Symbol.dispose) DataKey.prototype[Symbol.dispose] = DataKey.prototype.free;
  DataKey.prototype.sealAsync = async function (data, options) {
    const s = subtle();
    if (!s) return this.seal(data, options);
    const job = prepareSeal.call(this, data, options);
    try {
      const key = await cached(aesKeys, this, () => {
        const raw = rawKey.call(this);
        return webCrypto(s, "importKey", "raw", raw, "AES-GCM", false, ["encrypt"]).finally(() => raw.fill(0));
      });
      const params = { name: "AES-GCM", iv: job.iv, additionalData: job.aad, tagLength: 128 };
      const sealed = await webCrypto(s, "encrypt", params, key, job.data);
      return job.finish(new Uint8Array(sealed));
    } finally {
      job.free();
    }
  };

  // Public keys imported into WebCrypto by verifyAsync, per verifier and kid.
  const ecKeys = new WeakMap();
  VoucherVerifier.prototype.verifyAsync = async function (token, options) {
    const s = subtle();
    if (!s) return this.verify(token, options);
    const job = prepareVerify.call(this, token, options);
    try {
      let keys = ecKeys.get(this);
      if (!keys) ecKeys.set(this, (keys = new Map()));
      const key = await cached(keys, job.kid, () =>
        webCrypto(s, "importKey", "jwk", JSON.parse(job.jwk), ECDSA_P256, false, ["verify"]),
      );
      const valid = await webCrypto(s, "verify", ECDSA_SHA256, key, job.signature, job.signingInput);
      return job.finish(valid === true);
    } finally {
      job.free();
    }
  };

  /** A client of the vouchsafe key server over the global `fetch` (pages, workers, Node). */
  class KeyServerClient {
    #base;
    #token;

    /** `url`: the server's base URL; `options.token`: a bearer token. */
    constructor(url, options) {
      if (typeof url !== "string" || !/^https?:\/\//.test(url)) {
        throw invalid("url must start with http:// or https://");
      }
      const token = options?.token;
      if (token != null && typeof token !== "string") throw invalid("token must be a string");
      this.#base = url.replace(/\/+$/, "");
      this.#token = token ?? undefined;
    }

    /** `POST /v1/keys/{name}/datakey` → a `DataKey`. */
    async dataKey(name) {
      return DataKey.fromResponse(await this.#request("POST", `/v1/keys/${segment(name)}/datakey`));
    }

    /** `GET /.well-known/jwks.json` → the key set (cache it for offline use). */
    async jwks() {
      return json(await this.#request("GET", "/.well-known/jwks.json"));
    }

    /** `GET /v1/keys/{name}/public` → the current public JWK of an EC key. */
    async publicKey(name) {
      return json(await this.#request("GET", `/v1/keys/${segment(name)}/public`));
    }

    /** Nothing to free (kept so code written for the other classes runs unchanged). */
    free() {}

    /** One request; a non-2xx answer becomes a `VouchsafeError` with the server's `code`. */
    async #request(method, path) {
      const url = this.#base + path;
      if (typeof globalThis.fetch !== "function") {
        throw new VouchsafeError("network_error", "no fetch in this environment");
      }
      const init = { method, headers: {} };
      if (method === "POST") {
        if (this.#token !== undefined) init.headers.authorization = `Bearer ${this.#token}`;
        init.headers["content-type"] = "application/json";
        init.body = "{}";
      }
      let response, text;
      try {
        response = await globalThis.fetch(url, init);
        text = await response.text();
      } catch (e) {
        throw new VouchsafeError("network_error", `cannot reach ${url}: ${e?.message ?? "network error"}`);
      }
      if (response.ok) return text;
      let code = "server_error";
      let message = `HTTP ${response.status}`;
      try {
        const error = JSON.parse(text)?.error;
        if (typeof error?.code === "string") code = error.code;
        if (typeof error?.message === "string") message = error.message;
      } catch {
        // Not a JSON error body (a proxy's HTML page, say): the status says enough.
      }
      throw new VouchsafeError(code, message);
    }
  }

  return { VouchsafeError, KeyServerClient };
}

function segment(name) {
  if (typeof name !== "string") throw invalid("name must be a string");
  return encodeURIComponent(name);
}

function json(text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new VouchsafeError("malformed", "not JSON");
  }
}
