//! JWE compact serialisation (RFC 7516) with `enc` `A256GCM` and two key-management modes:
//! `A256GCMKW` (a DEK issued and wrapped by the key server) and `ECDH-ES+A256KW` (sealed to a
//! P-256 public key, for offline devices).
//!
//! Opening is split into steps so the key operation can happen elsewhere (an HSM, another thread,
//! an HTTP call): [`Jwe::parse`] → [`Jwe::check_context`] → unwrap or key agreement → [`Jwe::decrypt`].

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aes_kw::KwAes256;
use alloc::string::String;
use alloc::vec::Vec;
use p256::PublicKey;
use p256::elliptic_curve::Generate;
use rand_core::CryptoRng;
use serde_json::{Map, Value};

use crate::Error;
use crate::encoding::{StrictObject, b64d, b64d_fixed, b64e};
use crate::jwk::PublicJwk;
use crate::kdf::concat_kdf_sha256;
use crate::keys::{Dek, KeyAgreement, SharedSecret};

/// Largest plaintext (and ciphertext) accepted: 1 MiB.
pub const MAX_PLAINTEXT: usize = 1 << 20;
/// Largest compact JWE accepted: a 1 MiB ciphertext in base64url plus 16 KiB for the rest.
pub const MAX_JWE_LEN: usize = MAX_PLAINTEXT.div_ceil(3) * 4 + 16 * 1024;
/// Longest `ctx` accepted when sealing.
pub const MAX_CTX_LEN: usize = 1024;

/// `alg` of the online mode.
pub const ALG_A256GCMKW: &str = "A256GCMKW";
/// `alg` of the offline mode.
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// The only `enc`.
pub const ENC_A256GCM: &str = "A256GCM";
/// `cty` of sealed text: openers may hand the plaintext back as a string.
pub const CTY_TEXT: &str = "text/plain;charset=utf-8";

/// Header members never accepted: compression, critical extensions, and every way for a message
/// to name its own key.
const FORBIDDEN_HEADERS: [&str; 6] = ["zip", "crit", "jku", "jwk", "x5u", "x5c"];

/// A DEK wrapped by a key-server KEK with AES-256-GCM (RFC 7518 §4.7): the `A256GCMKW`
/// recipient of a JWE, and the `{header, encrypted_key}` of a `datakey` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDek {
    /// The KEK version, e.g. `pii.v3`.
    pub kid: String,
    /// The 96-bit IV of the key wrap.
    pub iv: [u8; 12],
    /// The 128-bit tag of the key wrap.
    pub tag: [u8; 16],
    /// The wrapped DEK.
    pub encrypted_key: [u8; 32],
}

impl WrappedDek {
    /// The wrap header `{"alg","enc","kid","iv","tag"}` that a sealed JWE's protected header
    /// starts from.
    pub fn header(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("alg".into(), ALG_A256GCMKW.into());
        m.insert("enc".into(), ENC_A256GCM.into());
        m.insert("kid".into(), self.kid.clone().into());
        m.insert("iv".into(), b64e(&self.iv).into());
        m.insert("tag".into(), b64e(&self.tag).into());
        m
    }

    /// The wrapped key, base64url.
    pub fn encrypted_key_b64(&self) -> String {
        b64e(&self.encrypted_key)
    }

    /// Reads a wrap header (as returned by `datakey` or taken by `unwrap`) and its encrypted key.
    pub fn from_header(header: &Value, encrypted_key_b64: &str) -> Result<Self, Error> {
        let Value::Object(m) = header else {
            return Err(Error::Malformed("header"));
        };
        let obj = StrictObject(m.clone().into_iter().collect());
        let parsed = JweHeader::from_object(&obj)?;
        match parsed.mode {
            Mode::AesGcmKw { iv, tag } => Ok(WrappedDek {
                kid: parsed.kid.ok_or(Error::Malformed("kid"))?,
                iv,
                tag,
                encrypted_key: b64d_fixed(encrypted_key_b64, "encrypted_key")?,
            }),
            Mode::EcdhEs { .. } => Err(Error::UnsupportedAlg),
        }
    }
}

/// Wraps `dek` under `kek` with AES-256-GCM and the given IV (empty AAD, RFC 7518 §4.7). Used by
/// the in-memory keystore; an HSM does the same with `C_Encrypt` and `CKM_AES_GCM`.
pub fn gcmkw_wrap(kek: &[u8; 32], kid: &str, iv: [u8; 12], dek: &Dek) -> WrappedDek {
    let mut encrypted_key = *dek.expose_secret();
    let tag = gcm_seal(kek, &iv, &[], &mut encrypted_key);
    WrappedDek { kid: kid.into(), iv, tag, encrypted_key }
}

/// Unwraps a DEK wrapped by [`gcmkw_wrap`] (or any RFC 7518 `A256GCMKW` implementation).
pub fn gcmkw_unwrap(kek: &[u8; 32], wrapped: &WrappedDek) -> Result<Dek, Error> {
    let mut buf = wrapped.encrypted_key;
    gcm_open(kek, &wrapped.iv, &[], &mut buf, &wrapped.tag)?;
    let dek = Dek::from_array(buf);
    zeroize::Zeroize::zeroize(&mut buf);
    Ok(dek)
}

/// AES-256-GCM in place; returns the tag.
pub fn gcm_seal(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    let cipher = Aes256Gcm::new(key.into());
    // Only fails past GCM's 64 GiB message limit; inputs here are capped at 1 MiB.
    let tag = cipher.encrypt_inout_detached(&Nonce::from(*iv), aad, buf.into()).unwrap_or_default();
    tag.into()
}

/// AES-256-GCM decryption in place; any failure is the opaque [`Error::DecryptFailed`].
pub fn gcm_open(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<(), Error> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_inout_detached(&Nonce::from(*iv), aad, buf.into(), &Tag::from(*tag))
        .map_err(|_| Error::DecryptFailed)
}

/// AES-256 Key Wrap (RFC 3394) of a 256-bit key: the `A256KW` step of `ECDH-ES+A256KW`.
pub fn kw_wrap(kek: &[u8; 32], cek: &Dek) -> [u8; 40] {
    let mut out = [0u8; 40];
    // A 32-byte key into a 40-byte buffer is the one size AES-KW always accepts.
    let _ = KwAes256::new(kek.into()).wrap_key(cek.expose_secret(), &mut out);
    out
}

/// AES-256 Key Unwrap (RFC 3394) of a 256-bit key; integrity failure is [`Error::DecryptFailed`].
pub fn kw_unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Result<Dek, Error> {
    if wrapped.len() != 40 {
        return Err(Error::DecryptFailed);
    }
    let mut cek = [0u8; 32];
    let res = KwAes256::new(kek.into()).unwrap_key(wrapped, &mut cek).map(|_| ());
    let dek = Dek::from_array(cek);
    zeroize::Zeroize::zeroize(&mut cek);
    res.map_err(|_| Error::DecryptFailed)?;
    Ok(dek)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    AesGcmKw { iv: [u8; 12], tag: [u8; 16] },
    EcdhEs { epk: PublicKey, apu: Vec<u8>, apv: Vec<u8> },
}

/// The checked protected header of a JWE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JweHeader {
    kid: Option<String>,
    ctx: Option<String>,
    cty: Option<String>,
    mode: Mode,
}

impl JweHeader {
    fn from_object(obj: &StrictObject) -> Result<Self, Error> {
        let alg = obj.opt_str("alg")?.ok_or(Error::Malformed("alg"))?;
        let enc = obj.opt_str("enc")?.ok_or(Error::Malformed("enc"))?;
        if enc != ENC_A256GCM || (alg != ALG_A256GCMKW && alg != ALG_ECDH_ES_A256KW) {
            return Err(Error::UnsupportedAlg);
        }
        if let Some(h) = FORBIDDEN_HEADERS.iter().find(|h| obj.has(h)) {
            return Err(Error::UnsupportedHeader(h));
        }
        let kid = obj.opt_str("kid")?.map(String::from);
        let ctx = obj.opt_str("ctx")?.map(String::from);
        let cty = obj.opt_str("cty")?.map(String::from);
        let mode = if alg == ALG_A256GCMKW {
            Mode::AesGcmKw {
                iv: b64d_fixed(obj.opt_str("iv")?.ok_or(Error::Malformed("iv"))?, "iv")?,
                tag: b64d_fixed(obj.opt_str("tag")?.ok_or(Error::Malformed("tag"))?, "tag")?,
            }
        } else {
            let epk = obj.0.get("epk").ok_or(Error::Malformed("epk"))?;
            let epk = PublicJwk::from_value(epk)?;
            let party = |name: &'static str| -> Result<Vec<u8>, Error> {
                match obj.opt_str(name)? {
                    None => Ok(Vec::new()),
                    Some(s) if s.len() <= 512 => b64d(s, name),
                    Some(_) => Err(Error::Malformed(name)),
                }
            };
            Mode::EcdhEs { epk: *epk.public_key(), apu: party("apu")?, apv: party("apv")? }
        };
        Ok(JweHeader { kid, ctx, cty, mode })
    }

    /// `alg`: [`ALG_A256GCMKW`] or [`ALG_ECDH_ES_A256KW`].
    pub fn alg(&self) -> &'static str {
        match self.mode {
            Mode::AesGcmKw { .. } => ALG_A256GCMKW,
            Mode::EcdhEs { .. } => ALG_ECDH_ES_A256KW,
        }
    }

    /// `kid` of the key that can open it, if present.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The authenticated context, if present (authenticated only once [`Jwe::decrypt`] succeeds).
    pub fn ctx(&self) -> Option<&str> {
        self.ctx.as_deref()
    }

    /// `cty`, the plaintext's media type, if present.
    pub fn cty(&self) -> Option<&str> {
        self.cty.as_deref()
    }

    /// Whether `cty` says the plaintext is text (`text/plain`, any parameters).
    pub fn is_text(&self) -> bool {
        self.cty.as_deref().is_some_and(|c| {
            let base = c.split(';').next().unwrap_or("").trim();
            base.eq_ignore_ascii_case("text/plain")
        })
    }

    /// The ephemeral public key of an `ECDH-ES+A256KW` JWE.
    pub fn epk(&self) -> Option<&PublicKey> {
        match &self.mode {
            Mode::EcdhEs { epk, .. } => Some(epk),
            Mode::AesGcmKw { .. } => None,
        }
    }
}

/// A parsed compact JWE.
#[derive(Clone, Debug)]
pub struct Jwe {
    header_b64: String,
    header: JweHeader,
    encrypted_key: Vec<u8>,
    iv: [u8; 12],
    ciphertext: Vec<u8>,
    tag: [u8; 16],
}

impl Jwe {
    /// Parses and checks a compact JWE: five parts, a header within vouchsafe's profile, a 96-bit
    /// IV, a 128-bit tag, at most 1 MiB of ciphertext.
    pub fn parse(compact: &str) -> Result<Self, Error> {
        if compact.len() > MAX_JWE_LEN {
            return Err(Error::TooLarge);
        }
        let parts: Vec<&str> = compact.split('.').collect();
        let [h64, ek64, iv64, ct64, tag64] = parts[..] else {
            return Err(Error::Malformed("a compact JWE has five parts"));
        };
        let header = StrictObject::parse(&b64d(h64, "header")?, "header")?;
        let header = JweHeader::from_object(&header)?;
        let ciphertext = b64d(ct64, "ciphertext")?;
        if ciphertext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge);
        }
        Ok(Jwe {
            header_b64: h64.into(),
            header,
            encrypted_key: b64d(ek64, "encrypted_key")?,
            iv: b64d_fixed(iv64, "iv")?,
            ciphertext,
            tag: b64d_fixed(tag64, "tag")?,
        })
    }

    /// The checked protected header.
    pub fn header(&self) -> &JweHeader {
        &self.header
    }

    /// Fails with [`Error::ContextMismatch`] unless the JWE's `ctx` equals `expected`; passes
    /// when `expected` is `None`.
    pub fn check_context(&self, expected: Option<&str>) -> Result<(), Error> {
        match expected {
            None => Ok(()),
            Some(e) if self.header.ctx.as_deref() == Some(e) => Ok(()),
            Some(_) => Err(Error::ContextMismatch),
        }
    }

    /// The wrapped DEK of an `A256GCMKW` JWE (what the key server's `unwrap` takes).
    pub fn wrapped_dek(&self) -> Option<WrappedDek> {
        match self.header.mode {
            Mode::AesGcmKw { iv, tag } => Some(WrappedDek {
                kid: self.header.kid.clone()?,
                iv,
                tag,
                encrypted_key: self.encrypted_key.as_slice().try_into().ok()?,
            }),
            Mode::EcdhEs { .. } => None,
        }
    }

    /// Derives the key-wrapping key from `z` and unwraps the CEK of an `ECDH-ES+A256KW` JWE.
    pub fn cek_from_shared_secret(&self, z: &SharedSecret) -> Result<Dek, Error> {
        let Mode::EcdhEs { apu, apv, .. } = &self.header.mode else {
            return Err(Error::InvalidArgument("this JWE was not sealed to a public key"));
        };
        let kek = concat_kdf_sha256(z.expose_secret(), 256, ALG_ECDH_ES_A256KW.as_bytes(), apu, apv);
        let kek: &[u8; 32] = kek[..].try_into().map_err(|_| Error::DecryptFailed)?;
        kw_unwrap(kek, &self.encrypted_key)
    }

    /// Decrypts the content with the CEK. The protected header is the AAD, so success also
    /// authenticates `kid`, `ctx` and everything else in it.
    /// Consumes the JWE and decrypts its ciphertext in place (no copy of up to 1 MiB).
    pub fn decrypt(self, cek: &Dek) -> Result<Vec<u8>, Error> {
        let mut buf = self.ciphertext;
        gcm_open(cek.expose_secret(), &self.iv, self.header_b64.as_bytes(), &mut buf, &self.tag)?;
        Ok(buf)
    }

    /// Checks the context and decrypts with a DEK the caller holds.
    pub fn open_with_dek(self, dek: &Dek, ctx: Option<&str>) -> Result<Vec<u8>, Error> {
        self.check_context(ctx)?;
        self.decrypt(dek)
    }

    /// Checks the context, unwraps the DEK through `unwrap` (a keystore, an HTTP call) and decrypts.
    pub fn open_with_unwrap<E: From<Error>>(
        self,
        ctx: Option<&str>,
        unwrap: impl FnOnce(&WrappedDek) -> Result<Dek, E>,
    ) -> Result<Vec<u8>, E> {
        self.check_context(ctx)?;
        let wrapped = self.wrapped_dek().ok_or(Error::InvalidArgument("this JWE was not sealed with a data key"))?;
        let dek = unwrap(&wrapped)?;
        Ok(self.decrypt(&dek)?)
    }

    /// Checks the context, runs ECDH with the recipient key through `agreement` and decrypts.
    pub fn open_with_agreement<K: KeyAgreement + ?Sized>(
        self,
        agreement: &K,
        ctx: Option<&str>,
    ) -> Result<Vec<u8>, K::Error> {
        self.check_context(ctx)?;
        let epk = self.header.epk().ok_or(Error::InvalidArgument("this JWE was not sealed to a public key"))?;
        let z = agreement.agree(self.header.kid(), epk)?;
        let cek = self.cek_from_shared_secret(&z)?;
        Ok(self.decrypt(&cek)?)
    }
}

/// A DEK together with its wrapped form: what a `datakey` response gives a client.
#[derive(Clone, Debug)]
pub struct DataKey {
    dek: Dek,
    wrapped: WrappedDek,
}

impl DataKey {
    /// Pairs a DEK with its wrapped form.
    pub fn new(dek: Dek, wrapped: WrappedDek) -> Self {
        DataKey { dek, wrapped }
    }

    /// Reads a `datakey` response `{"kid","plaintext","header","encrypted_key"}`.
    pub fn from_response_json(json: &str) -> Result<Self, Error> {
        let obj = StrictObject::parse(json.as_bytes(), "datakey response")?;
        let plaintext = obj.opt_str("plaintext")?.ok_or(Error::Malformed("plaintext"))?;
        let dek = Dek::from_array(b64d_fixed(plaintext, "plaintext")?);
        let header = obj.0.get("header").ok_or(Error::Malformed("header"))?;
        let ek = obj.opt_str("encrypted_key")?.ok_or(Error::Malformed("encrypted_key"))?;
        Ok(DataKey { dek, wrapped: WrappedDek::from_header(header, ek)? })
    }

    /// The DEK.
    pub fn dek(&self) -> &Dek {
        &self.dek
    }

    /// The wrapped form.
    pub fn wrapped(&self) -> &WrappedDek {
        &self.wrapped
    }

    /// Seals `plaintext` (online mode) with a fresh random IV.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        ctx: Option<&str>,
        rng: &mut R,
    ) -> Result<String, Error> {
        self.prepare_seal(plaintext.len(), ctx, false, rng)?.seal(&self.dek, plaintext)
    }

    /// Seals text, marking it `cty` [`CTY_TEXT`] so openers can return a string.
    pub fn seal_text<R: CryptoRng + ?Sized>(
        &self,
        text: &str,
        ctx: Option<&str>,
        rng: &mut R,
    ) -> Result<String, Error> {
        self.prepare_seal(text.len(), ctx, true, rng)?.seal(&self.dek, text.as_bytes())
    }

    /// Prepares a seal of `len` bytes (text when `text`) whose content another AES-GCM
    /// implementation encrypts with [`dek`](Self::dek); see [`PreparedSeal`].
    pub fn prepare_seal<R: CryptoRng + ?Sized>(
        &self,
        len: usize,
        ctx: Option<&str>,
        text: bool,
        rng: &mut R,
    ) -> Result<PreparedSeal, Error> {
        let mut iv = [0u8; 12];
        rng.fill_bytes(&mut iv);
        let header = with_extras(self.wrapped.header(), ctx, text.then_some(CTY_TEXT))?;
        PreparedSeal::new(header, &self.wrapped.encrypted_key, iv, len)
    }

    /// Opens a JWE sealed under this data key.
    pub fn open(&self, compact: &str, ctx: Option<&str>) -> Result<Vec<u8>, Error> {
        Jwe::parse(compact)?.open_with_dek(&self.dek, ctx)
    }
}

/// Seals `plaintext` to a P-256 public key (offline mode, `ECDH-ES+A256KW`); the header carries
/// the key's `kid` when it has one.
pub fn seal_to_public_key<R: CryptoRng + ?Sized>(
    recipient: &PublicJwk,
    plaintext: &[u8],
    ctx: Option<&str>,
    rng: &mut R,
) -> Result<String, Error> {
    seal_to_public_key_typed(recipient, plaintext, ctx, None, rng)
}

/// [`seal_to_public_key`] for text, marked `cty` [`CTY_TEXT`].
pub fn seal_text_to_public_key<R: CryptoRng + ?Sized>(
    recipient: &PublicJwk,
    text: &str,
    ctx: Option<&str>,
    rng: &mut R,
) -> Result<String, Error> {
    seal_to_public_key_typed(recipient, text.as_bytes(), ctx, Some(CTY_TEXT), rng)
}

fn seal_to_public_key_typed<R: CryptoRng + ?Sized>(
    recipient: &PublicJwk,
    plaintext: &[u8],
    ctx: Option<&str>,
    cty: Option<&str>,
    rng: &mut R,
) -> Result<String, Error> {
    let ephemeral = p256::SecretKey::generate_from_rng(rng);
    let mut cek_bytes = [0u8; 32];
    rng.fill_bytes(&mut cek_bytes);
    let cek = Dek::from_array(cek_bytes);
    zeroize::Zeroize::zeroize(&mut cek_bytes);
    let mut iv = [0u8; 12];
    rng.fill_bytes(&mut iv);
    seal_with_key(recipient, &ephemeral, &cek, iv, plaintext, ctx, cty)
}

/// [`seal_to_public_key`] with the ephemeral key, CEK and IV given: for known-answer tests only.
#[doc(hidden)]
pub fn seal_to_public_key_with(
    recipient: &PublicJwk,
    ephemeral: &p256::SecretKey,
    cek: &Dek,
    iv: [u8; 12],
    plaintext: &[u8],
    ctx: Option<&str>,
) -> Result<String, Error> {
    seal_with_key(recipient, ephemeral, cek, iv, plaintext, ctx, None)
}

fn seal_with_key(
    recipient: &PublicJwk,
    ephemeral: &p256::SecretKey,
    cek: &Dek,
    iv: [u8; 12],
    plaintext: &[u8],
    ctx: Option<&str>,
    cty: Option<&str>,
) -> Result<String, Error> {
    let z = ephemeral.agree(None, recipient.public_key())?;
    let kek = concat_kdf_sha256(z.expose_secret(), 256, ALG_ECDH_ES_A256KW.as_bytes(), &[], &[]);
    let kek: &[u8; 32] = kek[..].try_into().map_err(|_| Error::KeyOperation)?;
    let encrypted_key = kw_wrap(kek, cek);
    let mut header = Map::new();
    header.insert("alg".into(), ALG_ECDH_ES_A256KW.into());
    header.insert("enc".into(), ENC_A256GCM.into());
    if let Some(kid) = recipient.kid() {
        header.insert("kid".into(), kid.into());
    }
    let epk = PublicJwk::new(ephemeral.public_key());
    header.insert("epk".into(), serde_json::to_value(&epk).map_err(|_| Error::KeyOperation)?);
    let header = with_extras(header, ctx, cty)?;
    assemble(header, &encrypted_key, cek, iv, plaintext)
}

fn with_extras(
    mut header: Map<String, Value>,
    ctx: Option<&str>,
    cty: Option<&str>,
) -> Result<Map<String, Value>, Error> {
    if let Some(cty) = cty {
        header.insert("cty".into(), cty.into());
    }
    if let Some(ctx) = ctx {
        if ctx.len() > MAX_CTX_LEN {
            return Err(Error::InvalidArgument("ctx is longer than 1024 bytes"));
        }
        header.insert("ctx".into(), ctx.into());
    }
    Ok(header)
}

fn assemble(
    header: Map<String, Value>,
    encrypted_key: &[u8],
    cek: &Dek,
    iv: [u8; 12],
    plaintext: &[u8],
) -> Result<String, Error> {
    PreparedSeal::new(header, encrypted_key, iv, plaintext.len())?.seal(cek, plaintext)
}

/// A JWE with its protected header, encrypted key and IV fixed, whose content is to be
/// encrypted by another AES-256-GCM implementation (WebCrypto, in the npm package's
/// `sealAsync`): encrypt with the DEK, [`iv`](Self::iv) and [`aad`](Self::aad), then hand
/// the ciphertext and 16-byte tag to [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct PreparedSeal {
    header_b64: String,
    encrypted_key: Vec<u8>,
    iv: [u8; 12],
    len: usize,
}

impl PreparedSeal {
    fn new(header: Map<String, Value>, encrypted_key: &[u8], iv: [u8; 12], len: usize) -> Result<Self, Error> {
        if len > MAX_PLAINTEXT {
            return Err(Error::TooLarge);
        }
        let header_json = serde_json::to_vec(&Value::Object(header)).map_err(|_| Error::KeyOperation)?;
        Ok(PreparedSeal { header_b64: b64e(&header_json), encrypted_key: encrypted_key.to_vec(), iv, len })
    }

    /// The additional authenticated data: the ASCII of the encoded protected header.
    pub fn aad(&self) -> &[u8] {
        self.header_b64.as_bytes()
    }

    /// The fresh random 96-bit IV.
    pub fn iv(&self) -> &[u8; 12] {
        &self.iv
    }

    /// Encrypts here (AES-256-GCM with `cek`) and returns the compact JWE.
    fn seal(self, cek: &Dek, plaintext: &[u8]) -> Result<String, Error> {
        let mut buf = plaintext.to_vec();
        let tag = gcm_seal(cek.expose_secret(), &self.iv, self.aad(), &mut buf);
        Ok(self.finish(&buf, &tag))
    }

    /// The compact JWE around `ciphertext` (as long as the plaintext this was prepared for)
    /// and `tag`.
    pub fn finish(self, ciphertext: &[u8], tag: &[u8; 16]) -> String {
        debug_assert_eq!(ciphertext.len(), self.len);
        let ct64 = b64e(ciphertext);
        let mut out = String::with_capacity(self.header_b64.len() + ct64.len() + 128);
        for (i, part) in
            [self.header_b64, b64e(&self.encrypted_key), b64e(&self.iv), ct64, b64e(tag)].iter().enumerate()
        {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }
}
