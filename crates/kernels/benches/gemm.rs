//! tb-kernels GEMM at the training shapes, against the `gemm` crate.
//!
//! Shapes are `m × k × n` with B the transposed view of a row-major `[n, k]` (`[out, in]`)
//! weight, i.e. `y = x·Wᵀ`: SmolLM2-135M's projections over 1024 tokens (576 → 1536,
//! 1536 → 576, the 576 → 49152 LM head) and a Turkcell-7B-sized MLP projection over 2048 tokens
//! (4096 → 14336). Throughput is reported in "elements" = FLOP (`2·m·n·k` per call), so
//! criterion's `elem/s` reads directly as FLOP/s (`Gelem/s` = GFLOP/s).
//!
//! Paths (suffixed with the ISA): `ours_f32_*` and `ours_bf16_*` (B packed once with
//! [`PackedB`], on [`Isa::active`] — `TB_GEMM_ISA` selects another — plus `ours_bf16_avx512bf16`,
//! the `vdpbf16ps` kernel, where the CPU has it but it is not the default),
//! `ours_f32_unpacked_*` (B packed per call; not for the 7B shape) and `gemm_crate_f32`
//! (`gemm` 0.19, `Parallelism::Rayon(2)`, same strided operands).
//!
//! Run alone (2 cores: anything else running skews it): `cargo bench -p tb-kernels --bench gemm`.

use std::cell::{OnceCell, RefCell, RefMut};
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_kernels::{gemm, gemm_packed, Isa, MatMut, MatRef, PackedB, Precision};

/// `(name, m, k, n)`.
const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("smollm2_up_1024x576x1536", 1024, 576, 1536),
    ("smollm2_down_1024x1536x576", 1024, 1536, 576),
    ("smollm2_head_1024x576x49152", 1024, 576, 49152),
    ("turkcell_mlp_2048x4096x14336", 2048, 4096, 14336),
];

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The `gemm` crate's `C = A·Wᵀ` on the same row-major A and `[n, k]` W.
fn gemm_crate(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(a.len() >= m * k && w.len() >= n * k && c.len() >= m * n);
    // SAFETY: A is m×k row-major (rs k, cs 1), B = Wᵀ is k×n with (rs 1, cs k) inside W's n·k
    // values, C is m×n row-major; all three lengths were checked above and C is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(2),
        );
    }
}

/// A shape's operands, generated on first use (criterion only runs the closures its filter
/// selects, so a filtered run skips the 7B-sized setup).
struct Operands {
    a: Vec<f32>,
    w: Vec<f32>,
    c: Vec<f32>,
}

fn bench(cr: &mut Criterion) {
    let isa = Isa::active().expect("TB_GEMM_ISA names an ISA this CPU has");
    for (name, m, k, n) in SHAPES {
        let big = m * n * k > 1 << 34;
        let ops = OnceCell::new();
        let ops = || -> RefMut<'_, Operands> {
            ops.get_or_init(|| {
                RefCell::new(Operands {
                    a: values(m * k, 1),
                    w: values(n * k, 2),
                    c: vec![0.0f32; m * n],
                })
            })
            .borrow_mut()
        };
        let mut g = cr.benchmark_group(format!("gemm/{name}"));
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.sample_size(10);
        if big {
            g.sampling_mode(SamplingMode::Flat);
            g.warm_up_time(Duration::from_secs(2));
            g.measurement_time(Duration::from_secs(15));
        } else {
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(4));
        }
        let mut paths = vec![("f32", Precision::F32, isa), ("bf16", Precision::Bf16, isa)];
        if isa != Isa::Avx512Bf16 && Isa::Avx512Bf16.is_available() {
            paths.push(("bf16", Precision::Bf16, Isa::Avx512Bf16));
        }
        for (label, precision, isa) in paths {
            g.bench_function(format!("ours_{label}_{isa}"), |bch| {
                let mut o = ops();
                let Operands { a, w, c } = &mut *o;
                let av = MatRef::row_major(a, m, k).unwrap();
                let pb = PackedB::with_isa(isa, MatRef::row_major(w, n, k).unwrap().t(), precision)
                    .unwrap();
                bch.iter(|| {
                    let cv = MatMut::row_major(c, m, n).unwrap();
                    gemm_packed(black_box(av), &pb, cv, 1.0, false).unwrap();
                })
            });
        }
        if !big {
            g.bench_function(format!("ours_f32_unpacked_{isa}"), |bch| {
                let mut o = ops();
                let Operands { a, w, c } = &mut *o;
                let av = MatRef::row_major(a, m, k).unwrap();
                let bv = MatRef::row_major(w, n, k).unwrap().t();
                bch.iter(|| {
                    let cv = MatMut::row_major(c, m, n).unwrap();
                    gemm(black_box(av), bv, cv, 1.0, false, Precision::F32).unwrap();
                })
            });
        }
        g.bench_function("gemm_crate_f32", |bch| {
            let mut o = ops();
            let Operands { a, w, c } = &mut *o;
            bch.iter(|| gemm_crate(black_box(a), w, c, m, k, n))
        });
        g.finish();
    }
}

/// Criterion's generated entry points (kept in a private module: they need no docs).
mod entry {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(entry::benches);
