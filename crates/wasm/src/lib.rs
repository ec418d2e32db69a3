//! WebAssembly facade of `vouchsafe-core` for the npm package `vouchsafe`.
//!
//! Every format and every check is vouchsafe-core's; this crate only converts between JS values
//! and core types and turns core errors into `VouchsafeError`s with the same stable codes.
//! Everything here is synchronous. What awaits (the key-server client over `fetch`, and the
//! WebCrypto halves of `sealAsync` and `verifyAsync`) is the package's JavaScript (`npm/src`),
//! which calls the internal `__prepareSeal` / `SealJob` and `__prepareVerify` / `VerifyJob`
//! below: Rust futures and their executor would cost ~30 KB of the browser build.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, JSON, Object, Reflect, Uint8Array};
use vouchsafe_core::jws::UncheckedJws;
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{Jwe, Jwks, KeyUse, PublicJwk, VerifiedStatusList, VoucherValidator};
use wasm_bindgen::prelude::*;
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
}

#[wasm_bindgen]
impl DataKey {
    /// From a datakey response (object or JSON text) that includes `plaintext`.
    #[wasm_bindgen(js_name = fromResponse)]
    pub fn from_response(response: JsValue) -> Result<DataKey, JsValue> {
        let text = json_text(&response, "response")?;
        let inner = vouchsafe_core::DataKey::from_response_json(&text).map_err(core_error)?;
        Ok(DataKey { inner: Some(inner) })
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

    /// The first half of `sealAsync` (the package's JS): header, key and IV fixed, the content
    /// left for WebCrypto's AES-GCM. Internal.
    #[wasm_bindgen(js_name = __prepareSeal)]
    pub fn prepare_seal(&self, data: JsValue, opts: Option<Object>) -> Result<SealJob, JsValue> {
        let key = self.key()?;
        let ctx = opt_string(&opts, "ctx")?;
        let (data, text) = data_bytes(&data)?;
        let prepared = key.prepare_seal(data.len(), ctx.as_deref(), text, &mut rng()).map_err(core_error)?;
        Ok(SealJob { prepared: Some(prepared), data: Zeroizing::new(data) })
    }

    /// A copy of the DEK for WebCrypto's `importKey` (non-extractable there); the package's JS
    /// wipes this copy once imported. Internal.
    #[wasm_bindgen(js_name = __rawKey)]
    pub fn raw_key(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(&self.key()?.dek().expose_secret()[..]))
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
        // Dropping the core DataKey zeroizes its DEK; the package's JS drops WebCrypto's copy.
        self.inner = None;
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
    let is_set = JSON::parse(&text)
        .ok()
        .and_then(|v| v.dyn_into::<Object>().ok())
        .is_some_and(|o| Reflect::has(&o, &"keys".into()).unwrap_or(false));
    let jwk = if is_set {
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
        Ok(VoucherVerifier { jwks: keys, validator })
    }

    /// Verifies `token` at `opts.now` (seconds or a Date; default now) and, when
    /// `opts.statusList` is given, its revocation status; returns the claims.
    pub fn verify(&self, token: &str, opts: Option<Object>) -> Result<JsValue, JsValue> {
        let now = opt_now(&opts)?;
        let lists = status_lists(&opts)?;
        let verified = UncheckedJws::parse(token, &self.jwks).and_then(UncheckedJws::verify).map_err(core_error)?;
        checked_claims(&self.validator, verified, now, &lists)
    }

    /// The first half of `verifyAsync` (the package's JS): the token parsed and its header
    /// checked, `now` and the status lists fixed; the ES256 signature is left for WebCrypto.
    /// Internal.
    #[wasm_bindgen(js_name = __prepareVerify)]
    pub fn prepare_verify(&self, token: &str, opts: Option<Object>) -> Result<VerifyJob, JsValue> {
        let now = opt_now(&opts)?;
        let lists = status_lists(&opts)?;
        let unchecked = UncheckedJws::parse(token, &self.jwks).map_err(core_error)?;
        Ok(VerifyJob { unchecked: Some(unchecked), validator: self.validator.clone(), now, lists })
    }
}

/// A seal whose content encryption is done by WebCrypto (`DataKey.sealAsync`). Internal.
#[wasm_bindgen]
pub struct SealJob {
    prepared: Option<vouchsafe_core::jwe::PreparedSeal>,
    data: Zeroizing<Vec<u8>>,
}

#[wasm_bindgen]
impl SealJob {
    fn prepared(&self) -> Result<&vouchsafe_core::jwe::PreparedSeal, JsValue> {
        self.prepared.as_ref().ok_or_else(|| invalid("this seal has been finished"))
    }

    /// The 96-bit IV for AES-GCM.
    #[wasm_bindgen(getter)]
    pub fn iv(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(&self.prepared()?.iv()[..]))
    }

    /// The additional authenticated data (the protected header, base64url, as ASCII).
    #[wasm_bindgen(getter)]
    pub fn aad(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(self.prepared()?.aad()))
    }

    /// The plaintext bytes (UTF-8 for text).
    #[wasm_bindgen(getter)]
    pub fn data(&self) -> Uint8Array {
        Uint8Array::from(self.data.as_slice())
    }

    /// The compact JWE from AES-GCM's output (ciphertext followed by the 16-byte tag).
    pub fn finish(&mut self, sealed: &[u8]) -> Result<String, JsValue> {
        let (ct, tag) = sealed.split_at(sealed.len().saturating_sub(16));
        let tag: &[u8; 16] = tag.try_into().map_err(|_| error("key_operation_failed", "WebCrypto gave no tag"))?;
        if ct.len() != self.data.len() {
            return Err(error("key_operation_failed", "WebCrypto gave a ciphertext of the wrong length"));
        }
        let prepared = self.prepared.take().ok_or_else(|| invalid("this seal has been finished"))?;
        Ok(prepared.finish(ct, tag))
    }
}

/// A voucher whose ES256 signature is checked by WebCrypto (`VoucherVerifier.verifyAsync`).
/// Internal.
#[wasm_bindgen]
pub struct VerifyJob {
    unchecked: Option<UncheckedJws>,
    validator: VoucherValidator,
    now: i64,
    lists: Vec<Rc<VerifiedStatusList>>,
}

#[wasm_bindgen]
impl VerifyJob {
    fn unchecked(&self) -> Result<&UncheckedJws, JsValue> {
        self.unchecked.as_ref().ok_or_else(|| invalid("this verification has been finished"))
    }

    /// The signing key's `kid`.
    #[wasm_bindgen(getter)]
    pub fn kid(&self) -> Result<String, JsValue> {
        Ok(self.unchecked()?.key().kid().unwrap_or_default().to_owned())
    }

    /// The signing key as a public JWK (JSON text), for `importKey("jwk", …)`.
    #[wasm_bindgen(getter)]
    pub fn jwk(&self) -> Result<String, JsValue> {
        Ok(self.unchecked()?.key().to_json())
    }

    /// The 64-byte `r‖s` signature.
    #[wasm_bindgen(getter)]
    pub fn signature(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(self.unchecked()?.signature()))
    }

    /// The JWS signing input (`header.payload`, ASCII).
    #[wasm_bindgen(getter, js_name = signingInput)]
    pub fn signing_input(&self) -> Result<Uint8Array, JsValue> {
        Ok(Uint8Array::from(self.unchecked()?.signing_input()))
    }

    /// Every other rule, given WebCrypto's verdict on the signature; the claims.
    pub fn finish(&mut self, valid: bool) -> Result<JsValue, JsValue> {
        let unchecked = self.unchecked.take().ok_or_else(|| invalid("this verification has been finished"))?;
        let verified = unchecked.with_signature_checked(valid).map_err(core_error)?;
        checked_claims(&self.validator, verified, self.now, &self.lists)
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
