// A module worker has no import map: it imports the package's browser entry by path.
import * as vs from "/node_modules/vouchsafe/web/index.js";
import * as jose from "/node_modules/jose/dist/webapi/index.js";
import { run } from "./run.mjs";

run(vs, jose).then(
  (r) => postMessage({ ...r, inWorker: typeof WorkerGlobalScope !== "undefined" }),
  (e) => postMessage({ failed: String((e && e.stack) || e) }),
);
