#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use getrandom::SysRng;
use vouchsafe_core::rand_core::UnwrapErr;

pub fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
