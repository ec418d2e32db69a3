// Node entry (CommonJS): the wasm-bindgen `nodejs` build, loaded synchronously at require time.
"use strict";
const wasm = require("./pkg/vouchsafe_wasm.js");

/** The error every vouchsafe function throws; `code` is stable. */
class VouchsafeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "VouchsafeError";
    this.code = code;
  }
}
wasm.__setErrorClass(VouchsafeError);

module.exports = {
  /** A no-op in Node (the module is ready when loaded); kept so code runs unchanged everywhere. */
  init: async () => {},
  VouchsafeError,
  DataKey: wasm.DataKey,
  KeyServerClient: wasm.KeyServerClient,
  StatusList: wasm.StatusList,
  VoucherVerifier: wasm.VoucherVerifier,
  sealToPublicKey: wasm.sealToPublicKey,
  openWithDataKey: wasm.openWithDataKey,
};
