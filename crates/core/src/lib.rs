#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

extern crate alloc;

mod encoding;
mod error;
mod kdf;
mod keys;
mod voucher;

pub mod jwe;
pub mod jwk;
pub mod jws;
pub mod kid;
pub mod status;

pub use encoding::{StrictObject, b64d, b64e};
pub use error::Error;
pub use jwe::{DataKey, Jwe, JweHeader, PreparedSeal, WrappedDek, seal_text_to_public_key, seal_to_public_key};
pub use jwk::{Jwks, KeyUse, PublicJwk};
pub use kdf::concat_kdf_sha256;
pub use keys::{Dek, KeyAgreement, SharedSecret, Signer};
pub use status::{StatusList, VerifiedStatusList};
pub use voucher::{MAX_LEEWAY_SECONDS, REGISTERED_CLAIMS, StatusRef, VOUCHER_TYP, VoucherClaims, VoucherValidator};

/// Re-exported so callers name the same P-256 types vouchsafe-core uses.
pub use p256;
/// Re-exported so callers pass a compatible random number generator.
pub use rand_core;
