// The verifier's service worker: the app and the toolkit are cached for offline start-up.
importScripts("/shared/sw-core.js");

vouchsafeServiceWorker("verifier", [
  "/verifier/",
  "/verifier/verifier.js",
  "/shared/app.css",
  "/shared/common.js",
  "/vendor/jsQR.js",
  "/vendor/vouchsafe/index.js",
  "/vendor/vouchsafe/pkg/vouchsafe_wasm.js",
  "/vendor/vouchsafe/pkg/vouchsafe_wasm_bg.wasm",
]);
