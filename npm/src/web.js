// Browser, worker and bundler entry (built into web/index.js by scripts/build-npm): the
// wasm-bindgen `web` build. Call `await init()` once; everything after it is synchronous (except
// KeyServerClient, which fetches, and the WebCrypto paths sealAsync / verifyAsync).
import wasmInit, * as wasm from "./pkg/vouchsafe_wasm.js";
import { install } from "./api.js";

const { VouchsafeError, KeyServerClient } = install(wasm);
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

export { VouchsafeError, KeyServerClient };
export const { DataKey, StatusList, VoucherVerifier, sealToPublicKey, openWithDataKey } = wasm;
