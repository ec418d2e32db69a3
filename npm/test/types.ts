// Type-checked by readme.test.mjs (tsc --strict), never run: what the declarations accept, and —
// through @ts-expect-error — what they refuse.
import {
  init, DataKey, KeyServerClient, StatusList, VoucherVerifier, VouchsafeError, sealToPublicKey, openWithDataKey,
} from "vouchsafe";
import type { Jwks, PublicJwk, VoucherClaims, VouchsafeErrorCode } from "vouchsafe";

export async function usage(jwks: Jwks, token: string, listJwt: string): Promise<void> {
  await init();
  const client = new KeyServerClient("https://keys.example.org", { token: "t" });
  const dk: DataKey = await client.dataKey("pii");
  const sealed: string = dk.seal(new Uint8Array([1]), { ctx: "r/1" });
  const later: Promise<string> = dk.sealAsync("text");
  const opened: string | Uint8Array = openWithDataKey(dk, sealed);
  const key: PublicJwk = await client.publicKey("pii-seal");
  sealToPublicKey(key, "pii-seal", "x");
  const list = StatusList.fromToken(listJwt, jwks, { uri: "https://k/v1/status/1", now: new Date() });
  const status: number | undefined = list.get(3);
  const verifier = new VoucherVerifier(jwks, { issuer: "https://k", audience: ["a", "b"], leewaySeconds: 30 });
  const claims: VoucherClaims = verifier.verify(token, { now: 1_790_000_000, statusList: [list] });
  const amount: string = claims.amount;
  const idx: number | undefined = claims.status?.status_list.idx;
  const again: VoucherClaims = await verifier.verifyAsync(token);
  try {
    verifier.verify(token);
  } catch (e) {
    if (e instanceof VouchsafeError) {
      const code: VouchsafeErrorCode = e.code;
      void code;
    }
  }
  void [later, opened, status, amount, idx, again];

  // @ts-expect-error data is a string or bytes
  dk.seal(42);
  // @ts-expect-error ctx is a string
  dk.seal("x", { ctx: 5 });
  // @ts-expect-error DataKeys come from fromResponse or the client
  new DataKey();
  // @ts-expect-error the key set needs keys
  new VoucherVerifier({});
  // @ts-expect-error leeway is a number of seconds
  new VoucherVerifier(jwks, { leewaySeconds: "60" });
  // @ts-expect-error an amount is a string, not a number
  const n: number = claims.amount;
  // @ts-expect-error verify is synchronous
  verifier.verify(token).then(() => {});
  // @ts-expect-error jwks() resolves to a key set, not a string
  const s: string = await client.jwks();
  void [n, s];
}
