//! The Concat KDF of NIST SP 800-56A §5.8.1 as profiled by RFC 7518 §4.6.2.
//!
//! Written here because RustCrypto's `concat-kdf` crate has no release for `digest` 0.11; it is a
//! dozen lines and is pinned by the RFC 7518 Appendix C known-answer test.

use alloc::vec::Vec;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Derives `keydatalen_bits / 8` bytes from the shared secret `z` with
/// `OtherInfo = len‖alg ‖ len‖apu ‖ len‖apv ‖ keydatalen` (32-bit big-endian lengths).
pub fn concat_kdf_sha256(z: &[u8], keydatalen_bits: u32, alg: &[u8], apu: &[u8], apv: &[u8]) -> Zeroizing<Vec<u8>> {
    let out_len = (keydatalen_bits / 8) as usize;
    let mut out = Zeroizing::new(Vec::with_capacity(out_len + 32));
    let mut counter: u32 = 1;
    while out.len() < out_len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        for field in [alg, apu, apv] {
            h.update((field.len() as u32).to_be_bytes());
            h.update(field);
        }
        h.update(keydatalen_bits.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(out_len);
    out
}
