// Bundled by Vite exactly as an application would import the package.
import * as vs from "vouchsafe";
import * as jose from "jose";
import { run } from "../run.mjs";

run(vs, jose).then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { failed: String((e && e.stack) || e) }; },
);
