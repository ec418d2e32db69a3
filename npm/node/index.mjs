// Node entry (ES module): the same objects as the CommonJS entry, so `import` and `require` in one
// program share one module instance and one VouchsafeError class.
import { createRequire } from "node:module";

const vouchsafe = createRequire(import.meta.url)("./index.cjs");

export const {
  init,
  VouchsafeError,
  DataKey,
  KeyServerClient,
  StatusList,
  VoucherVerifier,
  sealToPublicKey,
  openWithDataKey,
} = vouchsafe;
