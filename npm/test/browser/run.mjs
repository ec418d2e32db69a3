// Runs checks.mjs inside a browser page or worker and returns what browser.test.mjs asserts.
// The test's static server provides /config.json (the key server's token and issuer; its API is
// proxied on the same origin) and serves tests/vectors as /test/vectors/.
import { runChecks } from "../checks.mjs";

export async function run(vs, jose) {
  await vs.init();
  const origin = globalThis.location.origin;
  const config = await (await fetch(`${origin}/config.json`)).json();
  const vectors = await (await fetch(`${origin}/test/vectors/jwcrypto.json`)).json();
  const server = config.token ? { url: origin, token: config.token, issuer: config.issuer } : null;
  const hasSubtle = !!(globalThis.crypto && globalThis.crypto.subtle);
  const results = await runChecks(vs, { jose, vectors, server }, (c) => hasSubtle || !c.subtle);
  return { results, isSecureContext: globalThis.isSecureContext, hasSubtle, serverConfigured: !!server };
}
