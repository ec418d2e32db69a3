// The portal's service worker: the app and the toolkit are cached for offline start-up.
importScripts("/shared/sw-core.js");

vouchsafeServiceWorker("portal", [
  "/portal/",
  "/portal/portal.js",
  "/shared/app.css",
  "/shared/common.js",
  "/vendor/vouchsafe/index.js",
  "/vendor/vouchsafe/pkg/vouchsafe_wasm.js",
  "/vendor/vouchsafe/pkg/vouchsafe_wasm_bg.wasm",
]);
