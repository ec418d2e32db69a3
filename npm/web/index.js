// Browser, worker and bundler entry: the wasm-bindgen `web` build. Call `await init()` once;
// everything after it is synchronous (except KeyServerClient, which fetches).
import wasmInit, * as wasm from "./pkg/vouchsafe_wasm.js";

/** The error every vouchsafe function throws; `code` is stable. */
export class VouchsafeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "VouchsafeError";
    this.code = code;
  }
}

let ready;

/**
 * Loads the WebAssembly module (from next to this file, or from `input`: a URL, Response,
 * BufferSource or WebAssembly.Module). Safe to call more than once.
 */
export function init(input) {
  ready ??= wasmInit(input === undefined ? undefined : { module_or_path: input }).then(() => {
    wasm.__setErrorClass(VouchsafeError);
  });
  return ready;
}

export const { DataKey, KeyServerClient, StatusList, VoucherVerifier, sealToPublicKey, openWithDataKey } = wasm;
