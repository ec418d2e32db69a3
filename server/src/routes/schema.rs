//! The JSON shapes the API returns, typed so the OpenAPI description is generated from the
//! same code that produces the responses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error":{"code","message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a safe message.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case code, e.g. `context_mismatch`, `keystore_unavailable`.
    pub code: String,
    /// Human-readable; never contains key material, tokens or plaintext.
    pub message: String,
}

/// A key and all its versions.
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    /// Key name.
    pub name: String,
    /// `aes256-gcm`, `ecdh-p256` or `ecdsa-p256`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The version new encryptions and signatures use.
    pub current_version: u32,
    /// RFC 3339.
    pub created_at: String,
    /// Oldest first.
    pub versions: Vec<VersionView>,
}

/// One key version.
#[derive(Serialize, ToSchema)]
pub struct VersionView {
    /// 1, 2, …
    pub version: u32,
    /// `<name>.v<version>`.
    pub kid: String,
    /// `active`, `retired` or `disabled`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /v1/keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, by name.
    pub keys: Vec<KeyView>,
}

/// The wrap header: the start of an `A256GCMKW` JWE's protected header.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WrapHeader {
    /// Always `A256GCMKW`.
    pub alg: String,
    /// Always `A256GCM`.
    pub enc: String,
    /// KEK version.
    pub kid: String,
    /// Key-wrap IV, base64url.
    pub iv: String,
    /// Key-wrap tag, base64url.
    pub tag: String,
}

/// `POST /v1/keys/{name}/datakey`.
#[derive(Serialize, ToSchema)]
pub struct DataKeyResponse {
    /// KEK version that wrapped the DEK.
    pub kid: String,
    /// The DEK, base64url (absent with `"plaintext": false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    /// Wrap header.
    pub header: WrapHeader,
    /// The wrapped DEK, base64url.
    pub encrypted_key: String,
}

/// Decrypted (or unwrapped) bytes.
#[derive(Serialize, ToSchema)]
pub struct Plaintext {
    /// The bytes, base64url.
    pub plaintext: String,
    /// The same bytes as text, when they are UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One result of a batch: a value or an error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ItemResult<T> {
    /// Success.
    Ok(T),
    /// This item failed; the others are unaffected.
    Err(ErrorBody),
}

/// `decrypt`: one result, or `{"items": […]}` for a batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DecryptResponse {
    /// A single JWE.
    One(Plaintext),
    /// A batch.
    Many {
        /// In request order.
        items: Vec<ItemResult<Plaintext>>,
    },
}

/// A JWE sealed again under the current version.
#[derive(Serialize, ToSchema)]
pub struct Sealed {
    /// Compact JWE.
    pub jwe: String,
}

/// `rewrap`: one result, or `{"items": […]}` for a batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RewrapResponse {
    /// A single JWE.
    One(Sealed),
    /// A batch.
    Many {
        /// In request order.
        items: Vec<ItemResult<Sealed>>,
    },
}

/// One audit entry.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 with milliseconds.
    pub ts: String,
    /// Who.
    pub actor: String,
    /// What, e.g. `keys.decrypt`.
    pub action: String,
    /// On what.
    pub target: String,
    /// `ok`, `denied` or `error:<code>`.
    pub outcome: String,
    /// Extra facts (counts, kids, contexts); never secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this entry.
    pub hash: String,
}

/// `GET /v1/audit`.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries with `seq > after`, oldest first.
    pub entries: Vec<AuditEntryView>,
}
