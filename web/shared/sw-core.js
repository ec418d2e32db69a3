// Service-worker logic shared by the apps (each app's sw.js imports it with its own file list).
// App files: served from the cache at once and refreshed from the network behind (stale while
// revalidate), so the app starts with no network. Key sets and status lists: network first,
// the cached copy when offline. Other API calls (tokens, POSTs) are never cached.
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

  self.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
    if (isData(url)) {
      event.respondWith((async () => {
        const cache = await caches.open(cacheName);
        try {
          const fresh = await fetch(event.request);
          if (fresh.ok) await cache.put(event.request, fresh.clone());
          return fresh;
        } catch (e) {
          const cached = await cache.match(event.request);
          if (cached) return cached;
          throw e;
        }
      })());
      return;
    }
    if (url.pathname.startsWith("/v1/")) return;
    event.respondWith((async () => {
      const cache = await caches.open(cacheName);
      const cached = await cache.match(event.request, { ignoreSearch: true });
      const refresh = fetch(event.request).then(async (fresh) => {
        if (fresh.ok) await cache.put(event.request, fresh.clone());
        return fresh;
      });
      if (cached) {
        event.waitUntil(refresh.catch(() => undefined));
        return cached;
      }
      return refresh;
    })());
  });
}
