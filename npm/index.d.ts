// Types of the npm package `vouchsafe` (CONTRACT §4). Hand-written to stay precise: no `any`.

/** Stable error codes (`VouchsafeError.code`). Server errors pass their own `code` through. */
export type VouchsafeErrorCode =
  | "bad_signature"
  | "expired"
  | "not_yet_valid"
  | "unknown_kid"
  | "wrong_audience"
  | "wrong_issuer"
  | "bad_type"
  | "unsupported_alg"
  | "unsupported_header"
  | "malformed"
  | "too_large"
  | "invalid_key"
  | "decrypt_failed"
  | "context_mismatch"
  | "revoked"
  | "missing_claim"
  | "invalid_claim"
  | "invalid_argument"
  | "disposed"
  | "network_error"
  | "server_error"
  | (string & {});

/** The error every vouchsafe function throws. */
export class VouchsafeError extends Error {
  constructor(code: string, message: string);
  readonly name: "VouchsafeError";
  readonly code: VouchsafeErrorCode;
}

/** Loads the WebAssembly module in browsers and workers (a no-op in Node). Call once, await it. */
export function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;

/** A P-256 public key as JWK (RFC 7517). */
export interface PublicJwk {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
  kid?: string;
  use?: "sig" | "enc";
  alg?: "ES256" | "ECDH-ES+A256KW";
}

/** A JWK set, as `GET /.well-known/jwks.json` returns it. */
export interface Jwks {
  keys: PublicJwk[];
}

/** The header of a data key's wrapped DEK. */
export interface WrapHeader {
  alg: "A256GCMKW";
  enc: "A256GCM";
  kid: string;
  iv: string;
  tag: string;
}

/** A `POST /v1/keys/{name}/datakey` response with the plaintext DEK. */
export interface DataKeyResponse {
  kid: string;
  plaintext: string;
  header: WrapHeader;
  encrypted_key: string;
}

export interface SealOptions {
  /** Context bound into the authenticated header, e.g. `registrant/123/phone`. */
  ctx?: string;
}

export interface OpenOptions {
  /** When given, the sealed context must be exactly this. */
  ctx?: string;
}

/** A data encryption key from the key server: seals and opens locally and synchronously. */
export class DataKey {
  private constructor();
  /** From a datakey response (object or JSON text) that includes `plaintext`. */
  static fromResponse(response: DataKeyResponse | string): DataKey;
  /** The wrapping key version, e.g. `pii.v3`. */
  readonly kid: string;
  /** Whether `dispose()` was called. */
  readonly disposed: boolean;
  /** A compact JWE (`A256GCMKW`, `A256GCM`). Strings are marked as text and open as strings. */
  seal(data: string | Uint8Array, options?: SealOptions): string;
  /**
   * `seal` with the content encrypted by WebCrypto (`crypto.subtle`) where it exists — faster
   * for large inputs — and by the synchronous path on a non-secure origin. Same format; opens
   * with `open`. Rejects with `VouchsafeError` like `seal` throws.
   */
  sealAsync(data: string | Uint8Array, options?: SealOptions): Promise<string>;
  /** The plaintext: a string if a string was sealed, else bytes. */
  open(jwe: string, options?: OpenOptions): string | Uint8Array;
  /** Wipes the key. Later calls throw `VouchsafeError` `disposed`. */
  dispose(): void;
  /** Frees the WebAssembly object (also wipes the key). */
  free(): void;
}

/** `dataKey.open(jwe, options)` as a function. */
export function openWithDataKey(dataKey: DataKey, jwe: string, options?: OpenOptions): string | Uint8Array;

/**
 * Seals to the current sealing (`enc`) key named `name` in a JWKS, or to one JWK, with
 * `ECDH-ES+A256KW`/`A256GCM` — offline, no server round trip.
 */
export function sealToPublicKey(
  keys: Jwks | PublicJwk | string,
  name: string,
  data: string | Uint8Array,
  options?: SealOptions,
): string;

/** Seconds since the epoch, or a Date. */
export type Instant = number | Date;

export interface StatusListOptions {
  /** The list's URI (`sub`) must be this. */
  uri?: string;
  /** Check expiry at this time (default now). */
  now?: Instant;
}

/** A revocation list (IETF Token Status List) whose signature verified. */
export class StatusList {
  private constructor();
  /** Verifies a `statuslist+jwt` against the JWKS (ES256, key by `kid`). */
  static fromToken(jwt: string, jwks: Jwks | string, options?: StatusListOptions): StatusList;
  readonly uri: string;
  readonly iat: number;
  readonly exp: number | undefined;
  readonly ttl: number | undefined;
  readonly size: number;
  /** Status at `idx`: 0 valid, 1 revoked; undefined past the end. */
  get(idx: number): number | undefined;
  free(): void;
}

export interface VoucherVerifierOptions {
  /** Required `iss`. */
  issuer?: string;
  /** Accepted `aud` (programme) values. */
  audience?: string | string[];
  /** Clock leeway, 0–600 seconds (default 0). */
  leewaySeconds?: number;
}

export interface VerifyOptions {
  /** Verify as of this time (default now): offline devices, tests. */
  now?: Instant;
  /** Revocation lists to consult; a voucher whose list is not given passes this check. */
  statusList?: StatusList | StatusList[];
}

/** The claims of a verified voucher (CONTRACT §1.2) plus any extra claims. */
export interface VoucherClaims {
  iss: string;
  sub: string;
  aud: string;
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  /** Decimal string, e.g. `"1500.00"`. */
  amount: string;
  /** ISO 4217, e.g. `"KES"`. */
  currency: string;
  status?: { status_list: { idx: number; uri: string } };
  [extra: string]: unknown;
}

/** Verifies ES256 vouchers offline, strictly, with keys only from the given JWKS. */
export class VoucherVerifier {
  constructor(jwks: Jwks | string, options?: VoucherVerifierOptions);
  /** The claims, or throws `VouchsafeError` (`expired`, `bad_signature`, `revoked`, …). */
  verify(token: string, options?: VerifyOptions): VoucherClaims;
  /**
   * `verify` with the ES256 signature checked by WebCrypto where `crypto.subtle` exists (the
   * synchronous path elsewhere). Same rules, same claims, same error codes.
   */
  verifyAsync(token: string, options?: VerifyOptions): Promise<VoucherClaims>;
  free(): void;
}

export interface KeyServerClientOptions {
  /** Bearer token (static API token or OIDC access token). */
  token?: string;
}

/** The key server's HTTP API, over the global `fetch`. */
export class KeyServerClient {
  constructor(url: string, options?: KeyServerClientOptions);
  /** `POST /v1/keys/{name}/datakey`. */
  dataKey(name: string): Promise<DataKey>;
  /** `GET /.well-known/jwks.json` — cache it for offline use. */
  jwks(): Promise<Jwks>;
  /** `GET /v1/keys/{name}/public`. */
  publicKey(name: string): Promise<PublicJwk>;
  free(): void;
}
