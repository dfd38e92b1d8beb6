//! Shared helpers of the tb-kernels tests: seeded operands, the relative-error measure, and the
//! list of ISA paths this CPU can run (saying which it cannot).

#![allow(dead_code, clippy::print_stderr)]

use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_kernels::Isa;

/// Relative tolerance of every comparison: max |got − ref| ÷ max |ref|.
pub const TOL: f32 = 1e-5;

/// `len` uniform values in [-1, 1) from `seed`.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The values rounded to bf16 (as f32).
pub fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| tb_kernels::round_bf16(x)).collect()
}

/// The values as bf16.
pub fn to_bf16(v: &[f32]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f32(x)).collect()
}

/// max |got − want| ÷ max |want| (÷ 1 when `want` is all zeros); NaN anywhere gives infinity.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "compared buffers differ in length");
    let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let mut worst = 0.0f32;
    for (g, w) in got.iter().zip(want) {
        let e = (g - w).abs();
        if e.is_nan() {
            return f32::INFINITY;
        }
        worst = worst.max(e);
    }
    worst / scale
}

/// The ISA paths to test: every one this CPU has. Says on stderr which were not run.
pub fn isas() -> Vec<Isa> {
    let available = Isa::available();
    for isa in Isa::ALL {
        if !available.contains(&isa) {
            eprintln!("tb-kernels tests: ISA path `{isa}` NOT run: this CPU lacks it");
        }
    }
    eprintln!(
        "tb-kernels tests: running ISA paths {:?}",
        available.iter().map(|i| i.name()).collect::<Vec<_>>()
    );
    eprintln!(
        "tb-kernels tests: the default (detected) ISA here is `{}`",
        Isa::detected()
    );
    available
}
