//! Seal/open in both JWE modes at 1 KiB, 64 KiB and 1 MiB; ES256 voucher sign and verify.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use getrandom::SysRng;
use std::hint::black_box;
use vouchsafe_core::jwe::gcmkw_wrap;
use vouchsafe_core::p256::ecdsa::SigningKey;
use vouchsafe_core::p256::{SecretKey, elliptic_curve::Generate};
use vouchsafe_core::rand_core::UnwrapErr;
use vouchsafe_core::{DataKey, Dek, Jwe, Jwks, KeyUse, PublicJwk, VoucherClaims, VoucherValidator, seal_to_public_key};

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn jwe_modes(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let dek = Dek::generate(&mut rng);
    let dk = DataKey::new(dek.clone(), gcmkw_wrap(&[7; 32], "pii.v1", [1; 12], &dek));
    let sk = SecretKey::generate_from_rng(&mut rng);
    let jwk = PublicJwk::new(sk.public_key()).with_kid("pii-seal.v1").with_use(KeyUse::Enc);

    let mut g = c.benchmark_group("jwe");
    for (size, label) in SIZES {
        let data = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal_A256GCMKW", label), &data, |b, d| {
            b.iter(|| dk.seal(black_box(d), Some("registrant/1/phone"), &mut rng).unwrap())
        });
        let sealed = dk.seal(&data, Some("registrant/1/phone"), &mut rng).unwrap();
        g.bench_with_input(BenchmarkId::new("open_A256GCMKW", label), &sealed, |b, s| {
            b.iter(|| dk.open(black_box(s), Some("registrant/1/phone")).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("seal_ECDH-ES+A256KW", label), &data, |b, d| {
            b.iter(|| seal_to_public_key(&jwk, black_box(d), None, &mut rng).unwrap())
        });
        let sealed = seal_to_public_key(&jwk, &data, None, &mut rng).unwrap();
        g.bench_with_input(BenchmarkId::new("open_ECDH-ES+A256KW", label), &sealed, |b, s| {
            b.iter(|| Jwe::parse(black_box(s)).unwrap().open_with_agreement(&sk, None).unwrap())
        });
    }
    g.finish();
}

fn es256(c: &mut Criterion) {
    let mut rng = UnwrapErr(SysRng);
    let key = SigningKey::generate_from_rng(&mut rng);
    let jwk = PublicJwk::new((*key.verifying_key()).into()).with_kid("vouchers.v1").with_use(KeyUse::Sig);
    let jwks = Jwks::new(vec![jwk]).unwrap();
    let claims = VoucherClaims {
        iss: "https://keys.example.org".into(),
        sub: "beneficiary-42".into(),
        aud: "food-2026".into(),
        jti: "01J9Z8-0001".into(),
        iat: 1_790_000_000,
        nbf: 1_790_000_000,
        exp: 1_790_086_400,
        amount: "1500.00".into(),
        currency: "KES".into(),
        status: None,
        extra: Default::default(),
    };
    let validator = VoucherValidator::new().with_issuer("https://keys.example.org").with_audience("food-2026");
    let token = claims.sign("vouchers.v1", &key).unwrap();
    let mut g = c.benchmark_group("es256");
    g.bench_function("voucher_sign", |b| b.iter(|| black_box(&claims).sign("vouchers.v1", &key).unwrap()));
    g.bench_function("voucher_verify", |b| {
        b.iter(|| validator.validate(black_box(&token), &jwks, 1_790_000_100).unwrap())
    });
    g.finish();
}

criterion_group!(benches, jwe_modes, es256);
criterion_main!(benches);
