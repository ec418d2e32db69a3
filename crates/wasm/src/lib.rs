//! WebAssembly facade of `vouchsafe-core` for the npm package `vouchsafe`.
//!
//! Every format and every check is vouchsafe-core's; this crate only converts between JS values
//! and core types, turns core errors into `VouchsafeError`s with the same stable codes, and talks
//! to the key server with the global `fetch` (pages, workers and Node alike). All crypto is
//! synchronous; only the key-server calls return promises.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, JSON, Object, Promise, Reflect, Uint8Array};
use vouchsafe_core::jws::UncheckedJws;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{Jwe, Jwks, KeyUse, PublicJwk, VerifiedStatusList, VoucherValidator};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use zeroize::Zeroizing;

thread_local! {
    /// The package's `VouchsafeError` class, handed over by its entry module at load.
    static ERROR_CLASS: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Registers the JS `VouchsafeError` class (`new VouchsafeError(code, message)`). Called once by
/// the package's entry module; not part of the public API.
#[wasm_bindgen(js_name = __setErrorClass)]
pub fn set_error_class(class: Function) {
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some(class));
}

/// A `VouchsafeError` with `code` and `message` (a plain `Error` with `code` if no class was
/// registered).
fn error(code: &str, message: impl std::fmt::Display) -> JsValue {
    let message = message.to_string();
    let args = Array::of2(&JsValue::from_str(code), &JsValue::from_str(&message));
    let made = ERROR_CLASS.with(|c| c.borrow().as_ref().and_then(|class| Reflect::construct(class, &args).ok()));
    made.unwrap_or_else(|| {
        let e = js_sys::Error::new(&message);
        let _ = Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code));
        e.into()
    })
}

fn core_error(e: vouchsafe_core::Error) -> JsValue {
    error(e.code(), e)
}

fn invalid(message: &str) -> JsValue {
    error("invalid_argument", message)
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// The DEK as imported into WebCrypto, if it was; `disposed` stops a late import from keeping it.
#[derive(Default)]
struct SubtleKey {
    disposed: bool,
    key: Option<JsValue>,
}

/// `crypto.subtle` where it exists (secure contexts and Node); `None` on a non-secure origin.
fn subtle() -> Option<Object> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok().filter(JsValue::is_object)?;
    Reflect::get(&crypto, &"subtle".into()).ok().filter(JsValue::is_object).map(Object::from)
}

/// Awaits `crypto.subtle[method](...args)`; a rejection becomes `key_operation_failed`.
async fn subtle_call(subtle: &Object, method: &str, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(subtle, &method.into())?.dyn_into()?;
    let list = args.iter().copied().collect::<Array>();
    let promise: Promise = Reflect::apply(&f, subtle, &list)?.dyn_into()?;
    JsFuture::from(promise)
        .await
        .map_err(|e| error("key_operation_failed", format!("WebCrypto {method}: {}", describe(&e))))
}

/// A plain object from name/value pairs.
fn object(members: &[(&str, JsValue)]) -> Result<JsValue, JsValue> {
    let o = Object::new();
    for (k, v) in members {
        Reflect::set(&o, &JsValue::from_str(k), v)?;
    }
    Ok(o.into())
}

/// A settled promise for a synchronous result.
fn settle(r: Result<JsValue, JsValue>) -> Promise {
    match r {
        Ok(v) => Promise::resolve(&v),
        Err(e) => Promise::reject(&e),
    }
}

/// `opts[name]`, or undefined when `opts` is absent.
fn opt(opts: &Option<Object>, name: &str) -> Result<JsValue, JsValue> {
    match opts {
        Some(o) => Reflect::get(o, &JsValue::from_str(name)),
        None => Ok(JsValue::UNDEFINED),
    }
}

fn opt_string(opts: &Option<Object>, name: &str) -> Result<Option<String>, JsValue> {
    let v = opt(opts, name)?;
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or_else(|| invalid(&format!("{name} must be a string")))
}

/// Seconds since the epoch from a number of seconds or a `Date`; now when absent.
fn opt_now(opts: &Option<Object>) -> Result<i64, JsValue> {
    let v = opt(opts, "now")?;
    if v.is_undefined() || v.is_null() {
        return Ok((js_sys::Date::now() / 1000.0).floor() as i64);
    }
    if let Some(d) = v.dyn_ref::<js_sys::Date>() {
        return Ok((d.get_time() / 1000.0).floor() as i64);
    }
    match v.as_f64() {
        Some(s) if s.is_finite() => Ok(s.floor() as i64),
        _ => Err(invalid("now is seconds since the epoch (a number) or a Date")),
    }
}

/// Bytes of a string (UTF-8) or a `Uint8Array`, and whether it was text.
fn data_bytes(data: &JsValue) -> Result<(Vec<u8>, bool), JsValue> {
    if let Some(s) = data.as_string() {
        return Ok((s.into_bytes(), true));
    }
    if let Some(a) = data.dyn_ref::<Uint8Array>() {
        return Ok((a.to_vec(), false));
    }
    Err(invalid("data must be a string or a Uint8Array"))
}

/// JSON text of a value given as a string or as an object.
fn json_text(v: &JsValue, what: &str) -> Result<String, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(s);
    }
    if v.is_object() {
        return JSON::stringify(v)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| invalid(&format!("{what} is not JSON")));
    }
    Err(invalid(&format!("{what} must be an object or a JSON string")))
}

fn parse_json(text: &str) -> Result<JsValue, JsValue> {
    JSON::parse(text).map_err(|_| error("malformed", "not JSON"))
}

fn jwks_from(v: &JsValue) -> Result<Jwks, JsValue> {
    Jwks::from_json(&json_text(v, "jwks")?).map_err(core_error)
}

/// A data key from the key server (`POST /v1/keys/{name}/datakey`): seals and opens fields
/// locally. `dispose()` wipes the key; any use after that throws `disposed`.
#[wasm_bindgen]
pub struct DataKey {
    inner: Option<vouchsafe_core::DataKey>,
    /// The DEK imported into WebCrypto (non-extractable) by the first `sealAsync`; shared with
    /// that call's future, and cleared for good by `dispose`.
    subtle_key: Rc<RefCell<SubtleKey>>,
}

#[wasm_bindgen]
impl DataKey {
    /// From a datakey response (object or JSON text) that includes `plaintext`.
    #[wasm_bindgen(js_name = fromResponse)]
    pub fn from_response(response: JsValue) -> Result<DataKey, JsValue> {
        let text = json_text(&response, "response")?;
        let inner = vouchsafe_core::DataKey::from_response_json(&text).map_err(core_error)?;
        Ok(DataKey { inner: Some(inner), subtle_key: Rc::default() })
    }

    fn key(&self) -> Result<&vouchsafe_core::DataKey, JsValue> {
        self.inner.as_ref().ok_or_else(|| error("disposed", "this data key has been disposed"))
    }

    /// The wrapping key version, e.g. `pii.v3`.
    #[wasm_bindgen(getter)]
    pub fn kid(&self) -> Result<String, JsValue> {
        Ok(self.key()?.wrapped().kid.clone())
    }

    /// Seals a string or bytes as a compact JWE (`A256GCMKW`/`A256GCM`), with `opts.ctx` bound
    /// into the authenticated header. Strings are marked `cty` text and open as strings.
    pub fn seal(&self, data: JsValue, opts: Option<Object>) -> Result<String, JsValue> {
        let key = self.key()?;
        let ctx = opt_string(&opts, "ctx")?;
        let (bytes, text) = data_bytes(&data)?;
        let sealed = if text {
            // Valid UTF-8: it came from a JS string.
            let s = String::from_utf8(bytes).map_err(|_| invalid("data is not text"))?;
            key.seal_text(&s, ctx.as_deref(), &mut rng())
        } else {
            key.seal(&bytes, ctx.as_deref(), &mut rng())
        };
        sealed.map_err(core_error)
    }

    /// [`seal`](Self::seal) with the content encrypted by WebCrypto's AES-GCM where
    /// `crypto.subtle` exists (faster for large inputs), by the synchronous path elsewhere (a
    /// non-secure origin). The output is the same format either way and opens with `open`.
    #[wasm_bindgen(js_name = sealAsync)]
    pub fn seal_async(&self, data: JsValue, opts: Option<Object>) -> Promise {
        let Some(subtle) = subtle() else {
            return settle(self.seal(data, opts).map(JsValue::from));
        };
        let prepared = (|| {
            let key = self.key()?;
            let ctx = opt_string(&opts, "ctx")?;
            let (bytes, text) = data_bytes(&data)?;
            let prepared = key.prepare_seal(bytes.len(), ctx.as_deref(), text, &mut rng()).map_err(core_error)?;
            Ok::<_, JsValue>((prepared, bytes))
        })();
        let (prepared, bytes) = match prepared {
            Ok(p) => p,
            Err(e) => return Promise::reject(&e),
        };
        let cached = self.subtle_key.borrow().key.clone();
        // Only copied out when WebCrypto has not got the key yet; wiped right after the import.
        let dek = match (&cached, self.key()) {
            (None, Ok(k)) => Some(Zeroizing::new(k.dek().expose_secret().to_vec())),
            _ => None,
        };
        let slot = self.subtle_key.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let key = match (cached, dek) {
                (Some(k), _) => k,
                (None, dek) => {
                    let raw = Uint8Array::from(dek.as_deref().map_or(&[][..], |d| d.as_slice()));
                    let usages = Array::of1(&"encrypt".into());
                    let imported = subtle_call(
                        &subtle,
                        "importKey",
                        &[&"raw".into(), &raw, &"AES-GCM".into(), &false.into(), &usages],
                    )
                    .await;
                    raw.fill(0, 0, raw.length());
                    let k = imported?;
                    let mut slot = slot.borrow_mut();
                    if !slot.disposed {
                        slot.key = Some(k.clone());
                    }
                    k
                }
            };
            let params = object(&[
                ("name", "AES-GCM".into()),
                ("iv", Uint8Array::from(&prepared.iv()[..]).into()),
                ("additionalData", Uint8Array::from(prepared.aad()).into()),
                ("tagLength", 128.into()),
            ])?;
            let out = subtle_call(&subtle, "encrypt", &[&params, &key, &Uint8Array::from(bytes.as_slice())]).await?;
            let out = Uint8Array::new(&out).to_vec();
            let (ct, tag) = out.split_at(out.len().saturating_sub(16));
            let tag: &[u8; 16] = tag.try_into().map_err(|_| error("key_operation_failed", "WebCrypto gave no tag"))?;
            Ok(JsValue::from_str(&prepared.finish(ct, tag)))
        })
    }

    /// Opens a JWE sealed under this data key; with `opts.ctx`, its context must match exactly.
    /// Returns a string for sealed text, a `Uint8Array` otherwise.
    pub fn open(&self, jwe: &str, opts: Option<Object>) -> Result<JsValue, JsValue> {
        let key = self.key()?;
        let ctx = opt_string(&opts, "ctx")?;
        let parsed = Jwe::parse(jwe).map_err(core_error)?;
        let text = parsed.header().is_text();
        let plain = parsed.open_with_dek(key.dek(), ctx.as_deref()).map_err(core_error)?;
        plaintext_value(plain, text)
    }

    /// Wipes the key from memory. Safe to call twice.
    pub fn dispose(&mut self) {
        // Dropping the core DataKey zeroizes its DEK; WebCrypto's copy goes with its handle.
        self.inner = None;
        let mut slot = self.subtle_key.borrow_mut();
        slot.disposed = true;
        slot.key = None;
    }

    /// Whether `dispose()` was called.
    #[wasm_bindgen(getter)]
    pub fn disposed(&self) -> bool {
        self.inner.is_none()
    }
}

fn plaintext_value(plain: Vec<u8>, text: bool) -> Result<JsValue, JsValue> {
    if text {
        let s = String::from_utf8(plain).map_err(|_| error("malformed", "sealed text is not UTF-8"))?;
        Ok(JsValue::from_str(&s))
    } else {
        Ok(Uint8Array::from(plain.as_slice()).into())
    }
}

/// `dataKey.open(jwe, opts)`, as a function.
#[wasm_bindgen(js_name = openWithDataKey)]
pub fn open_with_data_key(data_key: &DataKey, jwe: &str, opts: Option<Object>) -> Result<JsValue, JsValue> {
    data_key.open(jwe, opts)
}

/// Seals to the current `enc` key of `name` in a JWKS (or to one given JWK) with
/// `ECDH-ES+A256KW`/`A256GCM`: for offline devices, no network.
#[wasm_bindgen(js_name = sealToPublicKey)]
pub fn seal_to_public_key(keys: JsValue, name: &str, data: JsValue, opts: Option<Object>) -> Result<String, JsValue> {
    let text = json_text(&keys, "jwks")?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| error("malformed", "jwks is not JSON"))?;
    let jwk = if value.get("keys").is_some() {
        let set = Jwks::from_json(&text).map_err(core_error)?;
        set.current(name, KeyUse::Enc)
            .cloned()
            .ok_or_else(|| error("unknown_kid", format!("the key set has no sealing key named '{name}'")))?
    } else {
        let jwk = PublicJwk::from_json(&text).map_err(core_error)?;
        if let Some(kid) = jwk.kid()
            && vouchsafe_core::kid::parse(kid).is_some_and(|(n, _)| n != name)
        {
            return Err(error("unknown_kid", format!("the key '{kid}' is not a version of '{name}'")));
        }
        if jwk.key_use().is_some_and(|u| u != KeyUse::Enc) {
            return Err(error("invalid_key", "the key is not a sealing (enc) key"));
        }
        jwk
    };
    let ctx = opt_string(&opts, "ctx")?;
    let (bytes, is_text) = data_bytes(&data)?;
    let sealed = if is_text {
        let s = String::from_utf8(bytes).map_err(|_| invalid("data is not text"))?;
        vouchsafe_core::seal_text_to_public_key(&jwk, &s, ctx.as_deref(), &mut rng())
    } else {
        vouchsafe_core::seal_to_public_key(&jwk, &bytes, ctx.as_deref(), &mut rng())
    };
    sealed.map_err(core_error)
}

thread_local! {
    /// Verified status lists by id: `VoucherVerifier.verify` finds a `StatusList` argument's list
    /// here without consuming the JS object.
    /// (A short list searched linearly: a verifier holds a handful of lists, and a map type
    /// would cost the browser build several KB.)
    static LISTS: RefCell<Vec<(u32, Rc<VerifiedStatusList>)>> = const { RefCell::new(Vec::new()) };
    static NEXT_LIST: RefCell<u32> = const { RefCell::new(1) };
}

/// A revocation status list whose `statuslist+jwt` signature verified.
#[wasm_bindgen]
pub struct StatusList {
    id: u32,
    list: Rc<VerifiedStatusList>,
}

#[wasm_bindgen]
impl StatusList {
    /// Verifies a `statuslist+jwt` against `jwks` (ES256, key by `kid`); `opts.uri` must match
    /// its `sub` when given; an expired list (`exp` before `opts.now`) is refused.
    #[wasm_bindgen(js_name = fromToken)]
    pub fn from_token(jwt: &str, jwks: JsValue, opts: Option<Object>) -> Result<StatusList, JsValue> {
        let keys = jwks_from(&jwks)?;
        let uri = opt_string(&opts, "uri")?;
        let now = opt_now(&opts)?;
        let list = Rc::new(VerifiedStatusList::from_token(jwt, &keys, uri.as_deref(), now).map_err(core_error)?);
        let id = NEXT_LIST.with(|n| {
            let mut n = n.borrow_mut();
            *n = n.wrapping_add(1).max(1);
            *n
        });
        LISTS.with(|l| l.borrow_mut().push((id, list.clone())));
        Ok(StatusList { id, list })
    }

    /// The list's URI (vouchers name it in `status.status_list.uri`).
    #[wasm_bindgen(getter)]
    pub fn uri(&self) -> String {
        self.list.uri.clone()
    }

    /// Issued at, seconds since the epoch.
    #[wasm_bindgen(getter)]
    pub fn iat(&self) -> f64 {
        self.list.iat as f64
    }

    /// Expiry, seconds since the epoch, if the list has one.
    #[wasm_bindgen(getter)]
    pub fn exp(&self) -> Option<f64> {
        self.list.exp.map(|e| e as f64)
    }

    /// Suggested seconds before fetching again, if given.
    #[wasm_bindgen(getter)]
    pub fn ttl(&self) -> Option<f64> {
        self.list.ttl.map(|t| t as f64)
    }

    /// Number of entries.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.list.list.len() as u32
    }

    /// The status at `idx` (0 valid, 1 revoked, …), or undefined past the end.
    pub fn get(&self, idx: u32) -> Option<u8> {
        self.list.list.get(u64::from(idx))
    }

    /// Registry id (internal: lets `verify` use the list without consuming it).
    #[wasm_bindgen(getter, js_name = "__vouchsafeListId")]
    pub fn registry_id(&self) -> u32 {
        self.id
    }
}

impl Drop for StatusList {
    fn drop(&mut self) {
        let _ = LISTS.try_with(|l| l.borrow_mut().retain(|(id, _)| *id != self.id));
    }
}

/// The status lists an options object names (`statusList`: one `StatusList` or an array).
fn status_lists(opts: &Option<Object>) -> Result<Vec<Rc<VerifiedStatusList>>, JsValue> {
    let v = opt(opts, "statusList")?;
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    let items: Vec<JsValue> = if Array::is_array(&v) { Array::from(&v).iter().collect() } else { vec![v] };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = Reflect::get(&item, &JsValue::from_str("__vouchsafeListId"))?
            .as_f64()
            .ok_or_else(|| invalid("statusList must be a StatusList (StatusList.fromToken) or an array of them"))?;
        let list = LISTS
            .with(|l| l.borrow().iter().find(|(i, _)| f64::from(*i) == id).map(|(_, list)| list.clone()))
            .ok_or_else(|| invalid("this StatusList has been freed"))?;
        out.push(list);
    }
    Ok(out)
}

/// Verifies vouchers offline: ES256 only, key by `kid` from the given JWKS only, header exactly
/// `alg`/`typ`/`kid` with `typ` `voucher+jwt`, `exp` required, `iss` and `aud` checked when
/// configured, leeway at most 600 s.
#[wasm_bindgen]
pub struct VoucherVerifier {
    jwks: Jwks,
    validator: VoucherValidator,
    /// Keys imported into WebCrypto by `verifyAsync`, by kid (the JWKS is fixed per verifier).
    subtle_keys: Rc<RefCell<Vec<(String, JsValue)>>>,
    /// `{name: "ECDSA", hash: "SHA-256"}`, made once.
    subtle_alg: JsValue,
}

#[wasm_bindgen]
impl VoucherVerifier {
    /// `opts`: `issuer`, `audience` (a string or an array), `leewaySeconds` (0–600, default 0).
    #[wasm_bindgen(constructor)]
    pub fn new(jwks: JsValue, opts: Option<Object>) -> Result<VoucherVerifier, JsValue> {
        let keys = jwks_from(&jwks)?;
        let mut validator = VoucherValidator::new();
        if let Some(i) = opt_string(&opts, "issuer")? {
            validator = validator.with_issuer(i);
        }
        let aud = opt(&opts, "audience")?;
        if Array::is_array(&aud) {
            for a in Array::from(&aud).iter() {
                validator = validator.with_audience(a.as_string().ok_or_else(|| invalid("audience must be strings"))?);
            }
        } else if let Some(a) = aud.as_string() {
            validator = validator.with_audience(a);
        } else if !aud.is_undefined() && !aud.is_null() {
            return Err(invalid("audience must be a string or an array of strings"));
        }
        let leeway = opt(&opts, "leewaySeconds")?;
        if !leeway.is_undefined() && !leeway.is_null() {
            let s = leeway.as_f64().filter(|s| s.is_finite() && *s >= 0.0 && s.fract() == 0.0);
            let s = s.ok_or_else(|| invalid("leewaySeconds is a whole number of seconds"))?;
            validator = validator.with_leeway(s as u64).map_err(core_error)?;
        }
        let subtle_alg = object(&[("name", "ECDSA".into()), ("hash", "SHA-256".into())])?;
        Ok(VoucherVerifier { jwks: keys, validator, subtle_keys: Rc::default(), subtle_alg })
    }

    /// Verifies `token` at `opts.now` (seconds or a Date; default now) and, when
    /// `opts.statusList` is given, its revocation status; returns the claims.
    pub fn verify(&self, token: &str, opts: Option<Object>) -> Result<JsValue, JsValue> {
        let now = opt_now(&opts)?;
        let lists = status_lists(&opts)?;
        let verified = UncheckedJws::parse(token, &self.jwks).and_then(UncheckedJws::verify).map_err(core_error)?;
        checked_claims(&self.validator, verified, now, &lists)
    }

    /// [`verify`](Self::verify) with the ES256 signature checked by WebCrypto where
    /// `crypto.subtle` exists, synchronously elsewhere (a non-secure origin). Every other rule,
    /// and every error code, is the same as `verify`'s.
    #[wasm_bindgen(js_name = verifyAsync)]
    pub fn verify_async(&self, token: &str, opts: Option<Object>) -> Promise {
        let Some(subtle) = subtle() else {
            return settle(self.verify(token, opts));
        };
        let prepared = (|| {
            let now = opt_now(&opts)?;
            let lists = status_lists(&opts)?;
            let unchecked = UncheckedJws::parse(token, &self.jwks).map_err(core_error)?;
            Ok::<_, JsValue>((now, lists, unchecked))
        })();
        let (now, lists, unchecked) = match prepared {
            Ok(p) => p,
            Err(e) => return Promise::reject(&e),
        };
        let validator = self.validator.clone();
        let keys = self.subtle_keys.clone();
        let alg = self.subtle_alg.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let kid = unchecked.key().kid().unwrap_or_default().to_owned();
            let cached = keys.borrow().iter().find(|(k, _)| *k == kid).map(|(_, key)| key.clone());
            let key = match cached {
                Some(k) => k,
                None => {
                    let jwk = parse_json(&unchecked.key().to_json())?;
                    let alg = object(&[("name", "ECDSA".into()), ("namedCurve", "P-256".into())])?;
                    let usages = Array::of1(&"verify".into());
                    let k =
                        subtle_call(&subtle, "importKey", &[&"jwk".into(), &jwk, &alg, &false.into(), &usages]).await?;
                    keys.borrow_mut().push((kid, k.clone()));
                    k
                }
            };
            let sig = Uint8Array::from(unchecked.signature());
            let data = Uint8Array::from(unchecked.signing_input());
            let valid = subtle_call(&subtle, "verify", &[&alg, &key, &sig, &data]).await?.as_bool() == Some(true);
            let verified = unchecked.with_signature_checked(valid).map_err(core_error)?;
            checked_claims(&validator, verified, now, &lists)
        })
    }
}

/// Every voucher rule on a JWS whose signature was checked; the claims as a JS object, parsed
/// from the payload itself (core has checked it is one JSON object of valid claims).
fn checked_claims(
    validator: &VoucherValidator,
    verified: vouchsafe_core::jws::VerifiedJws,
    now: i64,
    lists: &[Rc<VerifiedStatusList>],
) -> Result<JsValue, JsValue> {
    let payload = verified.payload.clone();
    validator.check_verified_with_status(verified, now, lists.iter().map(|l| &**l)).map_err(core_error)?;
    let text = std::str::from_utf8(&payload).map_err(|_| error("malformed", "payload is not UTF-8"))?;
    parse_json(text)
}

/// A client of the vouchsafe key server over the global `fetch` (pages, workers, Node ≥ 20).
#[wasm_bindgen]
pub struct KeyServerClient {
    base: String,
    token: Option<String>,
}

#[wasm_bindgen]
impl KeyServerClient {
    /// `url`: the server's base URL; `opts.token`: a bearer token.
    #[wasm_bindgen(constructor)]
    pub fn new(url: &str, opts: Option<Object>) -> Result<KeyServerClient, JsValue> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("url must start with http:// or https://"));
        }
        Ok(KeyServerClient { base: url.trim_end_matches('/').to_string(), token: opt_string(&opts, "token")? })
    }

    /// `POST /v1/keys/{name}/datakey` → a [`DataKey`].
    #[wasm_bindgen(js_name = dataKey)]
    pub fn data_key(&self, name: &str) -> Promise {
        let (url, token) = (format!("{}/v1/keys/{}/datakey", self.base, encode(name)), self.token.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let text = request("POST", &url, token.as_deref(), Some("{}")).await?;
            DataKey::from_response(JsValue::from_str(&text)).map(JsValue::from)
        })
    }

    /// `GET /.well-known/jwks.json` → the key set (an object; cache it for offline use).
    pub fn jwks(&self) -> Promise {
        let url = format!("{}/.well-known/jwks.json", self.base);
        wasm_bindgen_futures::future_to_promise(async move { parse_json(&request("GET", &url, None, None).await?) })
    }

    /// `GET /v1/keys/{name}/public` → the current public JWK of an EC key.
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self, name: &str) -> Promise {
        let url = format!("{}/v1/keys/{}/public", self.base, encode(name));
        wasm_bindgen_futures::future_to_promise(async move { parse_json(&request("GET", &url, None, None).await?) })
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    js_sys::encode_uri_component(segment).into()
}

/// One HTTP request through the global `fetch`; a non-2xx answer becomes a `VouchsafeError` with
/// the server's `code`.
async fn request(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> Result<String, JsValue> {
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &JsValue::from_str("fetch"))?
        .dyn_into()
        .map_err(|_| error("network_error", "no fetch in this environment"))?;
    let init = Object::new();
    Reflect::set(&init, &"method".into(), &method.into())?;
    let headers = Object::new();
    if let Some(t) = token {
        Reflect::set(&headers, &"authorization".into(), &format!("Bearer {t}").into())?;
    }
    if let Some(b) = body {
        Reflect::set(&headers, &"content-type".into(), &"application/json".into())?;
        Reflect::set(&init, &"body".into(), &b.into())?;
    }
    Reflect::set(&init, &"headers".into(), &headers)?;
    let promise: Promise = fetch
        .call2(&global, &url.into(), &init)?
        .dyn_into()
        .map_err(|_| error("network_error", "fetch did not return a promise"))?;
    let response = JsFuture::from(promise)
        .await
        .map_err(|e| error("network_error", format!("cannot reach {url}: {}", describe(&e))))?;
    let status = Reflect::get(&response, &"status".into())?.as_f64().unwrap_or(0.0) as u16;
    let text_fn: Function = Reflect::get(&response, &"text".into())?.dyn_into()?;
    let text_promise: Promise = text_fn.call0(&response)?.dyn_into()?;
    let text = JsFuture::from(text_promise).await?.as_string().unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(text);
    }
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = parsed["error"]["code"].as_str().unwrap_or("server_error");
    let message = parsed["error"]["message"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned);
    Err(error(code, message))
}

fn describe(e: &JsValue) -> String {
    Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_else(|| "network error".into())
}
