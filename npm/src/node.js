// Node entry (built into node/index.cjs, CommonJS, by scripts/build-npm): the wasm-bindgen
// `nodejs` build, loaded synchronously at require time. node/index.mjs re-exports it, so `import`
// and `require` in one program share one module instance and one VouchsafeError class.
import * as wasm from "./pkg/vouchsafe_wasm.js";
import { install } from "./api.js";

const { VouchsafeError, KeyServerClient } = install(wasm);
wasm.__setErrorClass(VouchsafeError);

/** A no-op in Node (the module is ready when loaded); kept so code runs unchanged everywhere. */
export const init = async () => {};
export { VouchsafeError, KeyServerClient };
export const { DataKey, StatusList, VoucherVerifier, sealToPublicKey, openWithDataKey } = wasm;
