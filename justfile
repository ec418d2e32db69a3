# One recipe per task; each mirrors a step of scripts/test (what CI runs).

# Start the key server with the web apps on the embedded defaults.
serve *ARGS:
    scripts/serve {{ARGS}}

# Every check CI runs (installs what it needs first).
test:
    scripts/test

# Install the toolchain pieces the build and tests need.
setup:
    scripts/setup

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Native tests only.
unit:
    cargo test --workspace --locked

# Third-party JOSE clients against a running server.
interop:
    scripts/interop

# The npm package (web + Node builds) in npm/.
wasm:
    scripts/build-npm

# The packed npm package's tests, by its public name (Node and headless Chromium).
npm-test:
    scripts/test-npm

# The WebAssembly facade under wasm-bindgen-test, in Node and headless Chromium.
wasm-test:
    scripts/test-wasm

# The web apps (portal, admin, verifier): build them, then their end-to-end tests.
web:
    scripts/build-web

web-test:
    scripts/test-web

# Refresh docs/screenshots/ from the end-to-end tests.
screenshots:
    SCREENSHOTS=docs/screenshots scripts/test-web

# vouchsafe-core for the browser target.
wasm-core:
    cargo build -p vouchsafe-core --target wasm32-unknown-unknown --locked

# Criterion benchmarks; results go to docs/BENCHMARKS.md by hand, with machine and date.
bench:
    cargo bench -p vouchsafe-core --features std --bench formats --locked
    cargo bench -p vouchsafe-keystore --bench keystore --locked
    cargo bench -p vouchsafe-server --bench load --locked
    cargo bench -p vouchsafe-server --bench vouchers --locked
    scripts/test-npm --bench

ci:
    .ci/run
