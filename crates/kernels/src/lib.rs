//! tunebench's own CPU GEMM for the frozen-base matmuls of LoRA training:
//! `C (m×n) = alpha·A (m×k)·B (k×n) (+ C)`, f32 accumulation.
//!
//! # Why
//! A LoRA step multiplies activations by the same frozen weights over and over (`y = x·Wᵀ`
//! forward, `dx = dy·W` backward). Packing W into the micro-kernel's layout once ([`PackedB`])
//! removes the per-call repacking a general GEMM pays, and the bf16 precision keeps the packed
//! weights at half the memory.
//!
//! # Operands
//! A ([`MatRef<f32>`]) and B ([`MatRef<f32>`] or [`MatRef<half::bf16>`]) are strided views:
//! element `(i, j)` at `data[i·row_stride + j·col_stride]`, so `Wᵀ` of a row-major `[out, in]`
//! weight is `MatRef::row_major(w, out, in)?.t()` and `W` itself is the plain view — both
//! products are expressible without copies. C ([`MatMut`]) is row-major with a row stride.
//! Every entry point checks shapes, strides and lengths and returns [`Error`] instead of
//! panicking.
//!
//! # Precision
//! [`Precision::F32`]: f32 products (a bf16 B is widened exactly). [`Precision::Bf16`]: A and B
//! rounded to bf16 (nearest-even) and multiplied exactly, summed in f32 — PyTorch's bf16
//! autocast numerics. B is then packed as bf16 pairs along k; the [`Isa::Avx512Bf16`] kernel
//! feeds them to `vdpbf16ps`, every other ISA widens each B micro-panel to f32 (exact) once per
//! A block and runs its f32 kernel on the same bf16-rounded values, so the two differ only in
//! summation order (and `vdpbf16ps`'s flushing of subnormals).
//!
//! # Packing and blocking (BLIS-style)
//! B is packed into `KC × NR` micro-panels (k blocks one after another, panels contiguous,
//! zero-padded). A is packed per call, per `MC × KC` block, into `MR × KC` micro-panels that
//! are row-major (a contiguous, vectorised copy of A's rows, rounded to bf16 for the bf16
//! precision; the kernels read the `MR` rows at compile-time offsets). Loop nest (in `driver`):
//! `NC` columns › `KC` depth › `MC` rows (pack A) › `NR` panels › `MR` panels › micro-kernel,
//! which prefetches its C tile and overwrites it on the first k block (unless accumulating).
//! Threads: rayon over disjoint blocks of C — over m when every thread gets a few micro-panels,
//! else over n (short, wide outputs) — each task owning its rows' `&mut` slices;
//! [`gemm_serial`] and [`gemm_serial_with_isa`] keep a product on the calling thread (callers
//! that already run many small products in parallel, such as per-head attention). The unpacked
//! entry points ([`gemm`], [`gemm_with_isa`]) pack B per call into a reused thread-local
//! buffer, a block of at most 4 Mi values at a time (so a big B such as an LM head
//! never has a whole packed copy); no allocation happens per micro-kernel call.
//!
//! # Micro-kernels and dispatch
//! | [`Isa`] | f32 precision | bf16 precision | MR×NR, KC, MC, NC |
//! |---|---|---|---|
//! | `Avx512Bf16` | AVX-512F FMA | `vdpbf16ps` on bf16 pairs | 14×32, 256 (512 bf16), 336, 4096 |
//! | `Avx512` | AVX-512F FMA | f32 FMA on widened bf16 | 14×32, 256, 336, 4096 |
//! | `Avx2` | AVX2 + FMA | f32 FMA on widened bf16 | 6×16, 256, 120, 4096 |
//! | `Scalar` | portable Rust | f32 on widened bf16 | 4×16, 256, 128, 4096 |
//!
//! 14×32 keeps 28 of the 32 zmm registers as accumulators (2 B loads and 14 broadcasts per 28
//! FMAs); `KC = 256` keeps a 32 KiB B micro-panel in a 48 KiB L1d; an `MC × KC` A block
//! (336 KiB) sits in a 2 MiB L2; `NC` is large because B is pre-packed and streams well, and
//! each NC block re-packs A. [`Isa::detected`] picks the ISA once: the most specialised one the
//! CPU has (CPUID), except that `Avx512Bf16` is chosen only where the `vdpbf16ps` kernel
//! measures clearly faster than the f32 one (Zen 4/5: yes; Sapphire Rapids without AMX: no —
//! `vdpbf16ps` issues at a quarter of the FMA rate there, so bf16 runs as widened f32).
//! `TB_GEMM_ISA=scalar|avx2|avx512|avx512bf16` forces a path ([`Isa::active`]; an ISA the CPU
//! lacks is an [`Error::IsaUnavailable`], not a silent fallback), and the `*_with_isa` entry
//! points take one explicitly so tests and benches can run every path.
//!
//! `unsafe` is confined to the x86 kernel files (`kernels/avx*.rs`, the SIMD block transposes of
//! B packing in `kernels/transpose.rs`, and a C prefetch in
//! `kernels/mod.rs`), behind safe wrappers that check their panels and tile.
//!
//! # Vector primitives
//! [`vector`] holds the f32 `dot` and `axpy` of the CPU attention kernels and the embedded GGUF
//! engine: a scalar reference and AVX2+FMA code chosen at run time.

mod driver;
mod error;
mod isa;
mod kernels;
mod mat;
mod naive;
mod pack;
mod tiled;
pub mod vector;

pub use error::{Error, Result};
pub use isa::{Isa, Precision, ISA_ENV};
pub use mat::{round_bf16, Element, MatMut, MatRef};
pub use naive::gemm_naive;
pub use pack::PackedB;
pub use tiled::{gemm_by_weight_tiles, transpose};

use driver::{BSource, Plan};
use kernels::Kernel;
use pack::{layout_for, pack_b, BLayout, PackElem, PackedData};

/// `C = alpha·A·B` (or `C += alpha·A·B` when `accumulate`), on [`Isa::active`], packing B for
/// this call only (into a reused thread-local buffer). Use [`PackedB`] + [`gemm_packed`] when B
/// is reused.
pub fn gemm<T: Element>(
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
    precision: Precision,
) -> Result<()> {
    gemm_with_isa(Isa::active()?, a, b, c, alpha, accumulate, precision)
}

/// [`gemm`] on an explicit ISA (an error if this CPU lacks it).
pub fn gemm_with_isa<T: Element>(
    isa: Isa,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
    precision: Precision,
) -> Result<()> {
    let call = Call {
        alpha,
        accumulate,
        threads: Threads::Pool,
    };
    checked_gemm(isa, a, b, c, call, precision)
}

/// [`gemm_with_isa`] on the calling thread only, for callers that already run many independent
/// small products in parallel (per-head attention): no task split, no rayon join per call.
pub fn gemm_serial_with_isa<T: Element>(
    isa: Isa,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
    precision: Precision,
) -> Result<()> {
    let call = Call {
        alpha,
        accumulate,
        threads: Threads::Caller,
    };
    checked_gemm(isa, a, b, c, call, precision)
}

/// The per-call products after their checks (ISA present, shapes agreeing).
fn checked_gemm<T: Element>(
    isa: Isa,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    call: Call,
    precision: Precision,
) -> Result<()> {
    let isa = isa.require()?;
    check_shapes(&a, b.rows(), b.cols(), &c)?;
    gemm_blocks(isa, a, b, c, call, precision, PER_CALL_B_MAX);
    Ok(())
}

/// [`gemm_serial_with_isa`] on [`Isa::active`].
pub fn gemm_serial<T: Element>(
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
    precision: Precision,
) -> Result<()> {
    gemm_serial_with_isa(Isa::active()?, a, b, c, alpha, accumulate, precision)
}

/// Who runs a product's tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// Split over rayon's pool when the product is big enough.
    Pool,
    /// The calling thread alone.
    Caller,
}

/// How C is updated and by whom: `C = alpha·A·B`, or `C += alpha·A·B` when `accumulate`.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub alpha: f32,
    pub accumulate: bool,
    pub threads: Threads,
}

/// Most B values a per-call product packs at once (16 MiB of f32). A bigger B is packed and
/// multiplied one block at a time, so the thread-local packing buffer stays this small: an LM
/// head `[d, vocab]` would otherwise keep a packed copy of the whole weight alive.
const PER_CALL_B_MAX: usize = 1 << 22;

/// [`gemm_with_isa`] after its checks, with B cut into blocks of at most `max_values` values
/// (at least one `KC × NR` micro-panel) packed and multiplied in turn: over k first (whole `KC`
/// blocks, every block after the first accumulating into C), so that A is packed no more often
/// than in one product, then over columns (whole `NC` blocks where they fit, else panels) when
/// even one `KC`-deep slab of all columns is too big. Every element of C sees the same k blocks
/// in the same order, so the result does not depend on the cut.
fn gemm_blocks<T: Element>(
    isa: Isa,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    mut c: MatMut<'_>,
    call: Call,
    precision: Precision,
    max_values: usize,
) {
    let kernel = Kernel::select(isa, precision);
    let (m, k, n) = (a.rows(), b.rows(), b.cols());
    if m == 0 || k.saturating_mul(n) <= max_values {
        gemm_unblocked(kernel, a, b, c, call, precision);
        return;
    }
    let blk = kernel.blocking();
    let width = if n.saturating_mul(blk.kc) <= max_values {
        n
    } else if max_values / blk.kc >= blk.nc {
        max_values / blk.kc / blk.nc * blk.nc
    } else {
        (max_values / blk.kc / blk.nr).max(1) * blk.nr
    };
    let depth = (max_values / width / blk.kc).max(1) * blk.kc;
    for j0 in (0..n).step_by(width) {
        let cols = j0..(j0 + width).min(n);
        for p0 in (0..k).step_by(depth) {
            let ks = p0..(p0 + depth).min(k);
            gemm_unblocked(
                kernel,
                a.col_range(ks.clone()),
                b.row_range(ks).col_range(cols.clone()),
                c.cols_mut(cols.clone()),
                Call {
                    accumulate: call.accumulate || p0 > 0,
                    ..call
                },
                precision,
            );
        }
    }
}

/// One product with all of B packed into this thread's scratch buffer.
fn gemm_unblocked<T: Element>(
    kernel: Kernel,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    call: Call,
    precision: Precision,
) {
    let layout = layout_for(kernel, precision, b.rows(), b.cols());
    match precision {
        Precision::Bf16 => u16::with_scratch(true, |buf| {
            let packed = buf.ensure(layout.len());
            pack_b(kernel, &b, &layout, true, packed);
            run_with(kernel, layout, BData::Bf16(packed), &a, c, call);
        }),
        Precision::F32 => f32::with_scratch(true, |buf| {
            let packed = buf.ensure(layout.len());
            pack_b(kernel, &b, &layout, false, packed);
            run_with(kernel, layout, BData::F32(packed), &a, c, call);
        }),
    }
}

/// `C = alpha·A·B (+ C)` with a B packed once by [`PackedB::new`]/[`PackedB::with_isa`], on the
/// ISA and precision it was packed for.
pub fn gemm_packed(
    a: MatRef<'_, f32>,
    b: &PackedB,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    check_shapes(&a, b.k(), b.n(), &c)?;
    let data = match &b.data {
        PackedData::F32(buf) => BData::F32(buf.as_slice()),
        PackedData::Bf16(buf) => BData::Bf16(buf.as_slice()),
    };
    let call = Call {
        alpha,
        accumulate,
        threads: Threads::Pool,
    };
    run_with(b.kernel, b.layout, data, &a, c, call);
    Ok(())
}

/// Packed B as the driver receives it.
enum BData<'a> {
    /// f32 panels ([`Precision::F32`]).
    F32(&'a [f32]),
    /// bf16 pair panels ([`Precision::Bf16`]; A is rounded to bf16 while packed).
    Bf16(&'a [u16]),
}

/// Runs the loop nest of `kernel` on packed B: f32 panels through an f32 kernel, bf16 pairs
/// through the `vdpbf16ps` kernel or widened per micro-panel for an f32 kernel.
fn run_with(
    kernel: Kernel,
    layout: BLayout,
    data: BData<'_>,
    a: &MatRef<'_, f32>,
    c: MatMut<'_>,
    call: Call,
) {
    match (data, kernel.f32_kernel(), kernel.bf16_kernel()) {
        (BData::F32(b), Some(f), _) => {
            let b = BSource::Packed(b);
            let plan = Plan {
                kind: kernel,
                kernel: f,
                round_a: false,
                b,
                layout,
            };
            driver::run(&plan, a, c, call);
        }
        (BData::Bf16(b), _, Some(f)) => {
            let b = BSource::Packed(b);
            let plan = Plan {
                kind: kernel,
                kernel: f,
                round_a: true,
                b,
                layout,
            };
            driver::run(&plan, a, c, call);
        }
        (BData::Bf16(b), Some(f), _) => {
            let b = BSource::Bf16Pairs(b, kernel.widen_fn());
            let plan = Plan {
                kind: kernel,
                kernel: f,
                round_a: true,
                b,
                layout,
            };
            driver::run(&plan, a, c, call);
        }
        (_, None, _) => unreachable!("invariant: every kernel but the bf16-dot one is f32"),
    }
}

/// Checks `a` (`m × k`), B (`k × n`) and `c` (`m × n`) agree.
pub(crate) fn check_shapes(
    a: &MatRef<'_, f32>,
    bk: usize,
    bn: usize,
    c: &MatMut<'_>,
) -> Result<()> {
    if a.cols() != bk {
        return Err(Error::ShapeMismatch {
            what: "A's columns vs B's rows",
            expected: (a.cols(), a.cols()),
            got: (bk, bk),
        });
    }
    if (c.rows(), c.cols()) != (a.rows(), bn) {
        return Err(Error::ShapeMismatch {
            what: "C vs A's rows × B's columns",
            expected: (a.rows(), bn),
            got: (c.rows(), c.cols()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` deterministic values in about [-1, 1).
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13) ^ seed;
                (h % 20_001) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    /// Blocked per-call products equal the unblocked ones bit for bit (and the naive product
    /// within rounding) on every path this CPU has, for B as `Wᵀ` and as a plain view: blocks of
    /// one micro-panel, k cut into several `KC` blocks (odd k, bf16 pairs), column blocks with
    /// a sliver at the end.
    #[test]
    #[allow(clippy::print_stderr)] // says which ISA paths this CPU could not run
    fn blocked_products_match_the_whole_b_bit_for_bit() {
        for isa in Isa::available() {
            for precision in [Precision::F32, Precision::Bf16] {
                for &(m, k, n) in &[
                    (1, 7, 70),
                    (33, 300, 97),
                    (7, 1, 65),
                    (15, 64, 200),
                    (9, 1201, 45),
                    (0, 1201, 45),
                ] {
                    let a = values(m * k, 1);
                    let w = values(n * k, 2);
                    let init = values(m * n, 3);
                    let av = MatRef::row_major(&a, m, k).unwrap();
                    let wt = MatRef::row_major(&w, n, k).unwrap().t();
                    let plain = MatRef::row_major(&w, k, n).unwrap();
                    for b in [wt, plain] {
                        for accumulate in [false, true] {
                            let run_on = |max_values: usize, threads: Threads| {
                                let mut c = init.clone();
                                let out = MatMut::row_major(&mut c, m, n).unwrap();
                                let call = Call {
                                    alpha: 0.5,
                                    accumulate,
                                    threads,
                                };
                                gemm_blocks(isa, av, b, out, call, precision, max_values);
                                c
                            };
                            let run = |max_values: usize| run_on(max_values, Threads::Pool);
                            let whole = run(usize::MAX);
                            let what =
                                format!("{isa:?} {precision:?} {m}x{k}x{n} acc {accumulate}");
                            for max_values in [1, 40 * k, 64 * k + 5, 600 * 45] {
                                assert_eq!(run(max_values), whole, "{what}, {max_values} values");
                            }
                            // The caller-thread products split nothing and sum alike.
                            assert_eq!(
                                run_on(usize::MAX, Threads::Caller),
                                whole,
                                "{what}, serial"
                            );
                            let mut want = if accumulate {
                                init.clone()
                            } else {
                                vec![0.0; m * n]
                            };
                            let round = |x: f32| match precision {
                                Precision::F32 => x,
                                Precision::Bf16 => round_bf16(x),
                            };
                            for i in 0..m {
                                for j in 0..n {
                                    let dot: f64 = (0..k)
                                        .map(|p| {
                                            round(av.at(i, p)) as f64 * round(b.at(p, j)) as f64
                                        })
                                        .sum();
                                    want[i * n + j] += 0.5 * dot as f32;
                                }
                            }
                            let worst = whole
                                .iter()
                                .zip(&want)
                                .map(|(g, w)| (g - w).abs())
                                .fold(0.0f32, f32::max);
                            assert!(worst < 1e-4 * k as f32, "{what}: off by {worst}");
                        }
                    }
                }
            }
        }
        eprintln!(
            "blocking tested on {:?}; not on this CPU: {:?}",
            Isa::available(),
            Isa::ALL
                .iter()
                .filter(|i| !i.is_available())
                .collect::<Vec<_>>()
        );
    }

    /// A row-major B and the transposed view of its transposed copy pack through different
    /// paths (row copies / pair interleaving vs block transposes) into the same panels: the
    /// products agree bit for bit on every path and precision, odd k included.
    #[test]
    fn row_major_and_transposed_b_pack_alike() {
        for isa in Isa::available() {
            for precision in [Precision::F32, Precision::Bf16] {
                for &(m, k, n) in &[(5, 7, 70), (17, 301, 97), (3, 1, 33), (30, 64, 200)] {
                    let a = values(m * k, 4);
                    let w = values(k * n, 5);
                    let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
                    let av = MatRef::row_major(&a, m, k).unwrap();
                    let run = |b: MatRef<'_, f32>| {
                        let mut c = vec![0.0; m * n];
                        let out = MatMut::row_major(&mut c, m, n).unwrap();
                        gemm_with_isa(isa, av, b, out, 1.0, false, precision).unwrap();
                        c
                    };
                    let plain = run(MatRef::row_major(&w, k, n).unwrap());
                    let transposed = run(MatRef::row_major(&wt, n, k).unwrap().t());
                    assert_eq!(plain, transposed, "{isa:?} {precision:?} {m}x{k}x{n}");
                    // Columns further apart than k (a head's keys inside [tokens, heads·d]).
                    let ld = k + 3;
                    let spaced: Vec<f32> = (0..n * ld)
                        .map(|i| {
                            if i % ld < k {
                                wt[i / ld * k + i % ld]
                            } else {
                                f32::NAN
                            }
                        })
                        .collect();
                    let strided = run(MatRef::new(&spaced, n, k, ld, 1).unwrap().t());
                    assert_eq!(plain, strided, "{isa:?} {precision:?} {m}x{k}x{n} spaced");
                }
            }
        }
    }
}
