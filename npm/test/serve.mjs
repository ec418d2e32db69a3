// A static file server for the scratch project (the packed package under node_modules/), with
// the key server's API proxied on the same origin, and the headless Chromium every browser test
// and benchmark uses (/usr/bin/chromium; the machine has no internet, so no downloads).
import { createServer, request } from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".json": "application/json", ".wasm": "application/wasm", ".css": "text/css",
};

/** Serves `root` on 127.0.0.1 (any free port); `/v1/` and `/.well-known/` go to `upstream`. */
export async function startServer(root, { upstream, token } = {}) {
  function proxy(req, res) {
    const target = new URL(req.url, upstream);
    const out = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    out.on("error", () => res.writeHead(502).end());
    req.pipe(out);
  }
  async function serve(req, res) {
    const { pathname } = new URL(req.url, "http://x");
    if (upstream && (pathname.startsWith("/v1/") || pathname.startsWith("/.well-known/"))) return proxy(req, res);
    if (pathname === "/config.json") {
      res.writeHead(200, { "content-type": TYPES[".json"] });
      return res.end(JSON.stringify(upstream ? { token, issuer: upstream } : {}));
    }
    const file = path.join(root, path.normalize(decodeURIComponent(pathname)).replace(/^(\.\.[/\\])+/, ""));
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  }
  const server = createServer((req, res) => void serve(req, res));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: server.address().port };
}

/** Headless Chromium with the flags this machine needs; `portal.test` maps to 127.0.0.1. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP portal.test 127.0.0.1"],
  });
}
