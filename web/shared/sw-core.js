// Service-worker logic shared by the apps (each app's sw.js imports it with its own file list).
// Everything cached is public: the app's files (cached whole at install) and the key set and
// status lists. All are fetched network first and answered from the cache only when the
// network fails, so the app starts with no network. Other API calls (tokens, POSTs,
// registrations, decrypt answers) are never cached.
/* eslint-env serviceworker */

function vouchsafeServiceWorker(app, shell) {
  const cacheName = `vouchsafe-${app}-v1`;
  const isData = (url) => url.pathname === "/.well-known/jwks.json" || url.pathname.startsWith("/v1/status");

  self.addEventListener("install", (event) => {
    event.waitUntil(caches.open(cacheName).then((c) => c.addAll(shell)).then(() => self.skipWaiting()));
  });

  self.addEventListener("activate", (event) => {
    event.waitUntil((async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(`vouchsafe-${app}-`) && name !== cacheName) await caches.delete(name);
      }
      await self.clients.claim();
    })());
  });

  /** The network's answer (kept in the cache), or the cached copy when the network fails. */
  async function networkFirst(request, matchOptions) {
    const cache = await caches.open(cacheName);
    try {
      const fresh = await fetch(request);
      if (fresh.ok) await cache.put(request, fresh.clone());
      return fresh;
    } catch (e) {
      const cached = await cache.match(request, matchOptions);
      if (cached) return cached;
      throw e;
    }
  }

  self.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
    if (isData(url)) {
      event.respondWith(networkFirst(event.request, {}));
      return;
    }
    if (url.pathname.startsWith("/v1/")) return;
    // App files: network first while online, so a deploy (and any fix in it) is used at once
    // and files never mix versions; the cache when offline.
    event.respondWith(networkFirst(event.request, { ignoreSearch: true }));
  });
}
