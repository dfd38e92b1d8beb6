//! Register-blocked micro-kernels, one family per ISA, all behind the same packed interface.
//!
//! A micro-kernel computes one `MR × NR` tile of C from a packed A micro-panel (`kc` steps of
//! `MR` values: `a[p·MR + i] = A(i, p)`) and a packed B micro-panel (`kc` steps of `NR` values:
//! `b[p·NR + j] = B(p, j)`), both zero-padded past the matrix edge, then writes
//! `C = alpha·AB (+ C)` into the valid `mr × nr` corner of the tile. The bf16-dot kernel uses
//! pairs along k instead: `a[(p/2)·2MR + 2i + p%2]`, `b[(p/2)·2NR + 2j + p%2]` (bf16 bits), the
//! operand layout of `vdpbf16ps`, with an odd `kc` padded by a zero pair half.
//!
//! Everything `unsafe` in the crate lives in this module's ISA files (`avx2_vector` holds the
//! SIMD code of [`crate::vector`]); the functions here are the safe wrappers' shared checks
//! ([`Tile::check`]) and the edge-tile store.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2_vector;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512bf16;
mod scalar;
pub(crate) mod transpose;

#[cfg(target_arch = "x86_64")]
use std::hint::black_box;
use std::sync::OnceLock;
#[cfg(target_arch = "x86_64")]
use std::time::{Duration, Instant};

use crate::mat::MatRef;
use crate::pack::{self, ABlock, PackElem};
use crate::{Isa, Precision};

/// The destination of one micro-kernel call: rows `rows[0..mr]`, columns `col0..col0 + nr` of
/// each, updated as `C = alpha·acc` (or `C += alpha·acc` when `accumulate`).
pub(crate) struct Tile<'t, 'c> {
    /// The C rows this tile covers (at least `mr` of them).
    pub rows: &'t mut [&'c mut [f32]],
    /// First column of the tile inside each row slice.
    pub col0: usize,
    /// Valid rows (≤ MR).
    pub mr: usize,
    /// Valid columns (≤ NR).
    pub nr: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
}

impl Tile<'_, '_> {
    /// Panics unless the tile fits `MR × NR` and every row holds `col0 + nr` columns — the
    /// bounds the unsafe stores rely on (the driver always satisfies them; a failure is a bug in
    /// this crate, not bad input).
    #[inline]
    pub(crate) fn check(&self, mr_max: usize, nr_max: usize) {
        assert!(
            self.mr >= 1 && self.mr <= mr_max && self.nr >= 1 && self.nr <= nr_max,
            "invariant: tile {}×{} within {mr_max}×{nr_max}",
            self.mr,
            self.nr
        );
        assert!(self.rows.len() >= self.mr, "invariant: tile rows present");
        let end = self.col0 + self.nr;
        for row in &self.rows[..self.mr] {
            assert!(row.len() >= end, "invariant: tile columns inside the row");
        }
    }

    /// Whether the full `mr_max × nr_max` tile is valid (direct vector stores).
    #[inline]
    pub(crate) fn is_full(&self, mr_max: usize, nr_max: usize) -> bool {
        self.mr == mr_max && self.nr == nr_max
    }

    /// Writes the first `nr` values of `acc` into valid row `i` of the tile (`alpha·acc`, plus C
    /// when accumulating): the edge-tile path, in safe code.
    #[inline]
    pub(crate) fn store_row(&mut self, i: usize, acc: &[f32]) {
        let (alpha, col0, nr) = (self.alpha, self.col0, self.nr);
        let dst = &mut self.rows[i][col0..col0 + nr];
        if self.accumulate {
            dst.iter_mut().zip(acc).for_each(|(c, v)| *c += alpha * v);
        } else {
            dst.iter_mut().zip(acc).for_each(|(c, v)| *c = alpha * v);
        }
    }
}

/// Minimum ratio of the bf16-dot to the f32 micro-kernel's multiply-add throughput for
/// [`Isa::detected`] to pick [`Isa::Avx512Bf16`]. Zen 4/5 issue `vdpbf16ps` (32 multiply-adds)
/// at the FMA's rate (16), a ratio near 2; Sapphire Rapids without AMX measured about 0.45
/// (the instruction issues at a quarter of the FMA rate), so there the widened-f32 path wins.
const DOT_MIN_SPEEDUP: f64 = 1.25;

/// Whether this CPU's bf16-dot micro-kernel clearly out-runs its AVX-512 f32 one; always false
/// without AVX-512F + AVX512_BF16. Measured once per process with the real kernels on
/// L1-resident panels (under a millisecond: the best of 9 alternating runs of 8 calls each,
/// so frequency ramps and a busy sibling thread affect both sides alike; the margin around
/// [`DOT_MIN_SPEEDUP`] is wide on every CPU measured). The choice only moves speed: both
/// kernels multiply the same bf16 values exactly and sum in f32.
pub(crate) fn bf16_dot_beats_fma() -> bool {
    static FAST: OnceLock<bool> = OnceLock::new();
    *FAST.get_or_init(|| Isa::Avx512Bf16.is_available() && dot_speedup() >= DOT_MIN_SPEEDUP)
}

/// Time of the f32 14×32 kernel ÷ time of the bf16-dot 14×32 kernel for the same
/// multiply-adds (AVX-512F + AVX512_BF16 checked by the caller).
#[cfg(target_arch = "x86_64")]
fn dot_speedup() -> f64 {
    const KC: usize = 256;
    let (a32, b32) = (vec![0.5f32; 14 * KC], vec![0.25f32; KC * 32]);
    let (a16, b16) = (vec![0x3f00u16; 14 * 2 * KC], vec![0x3e80u16; KC * 32]);
    let mut c = vec![0.0f32; 14 * 32];
    let mut rows: Vec<&mut [f32]> = c.chunks_mut(32).collect();
    let mut tile = Tile {
        rows: &mut rows,
        col0: 0,
        mr: 14,
        nr: 32,
        alpha: 1.0,
        accumulate: true,
    };
    let (mut fma, mut dot) = (Duration::MAX, Duration::MAX);
    for _ in 0..9 {
        let t = Instant::now();
        for _ in 0..8 {
            avx512::kernel_14x32(KC, black_box(&a32), &b32, &mut tile);
        }
        fma = fma.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..8 {
            avx512bf16::kernel_14x32(KC / 2, black_box(&a16), &b16, &mut tile);
        }
        dot = dot.min(t.elapsed());
    }
    black_box(&rows);
    fma.as_secs_f64() / dot.as_secs_f64().max(1e-9)
}

/// Without x86-64 there is no bf16-dot kernel.
#[cfg(not(target_arch = "x86_64"))]
fn dot_speedup() -> f64 {
    0.0
}

/// Starts loading the tile's rows of C into L1 (one prefetch per 16 floats of each valid row),
/// so the read-modify-write at the end of a long k loop does not wait on L2/L3 misses.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_c(tile: &Tile<'_, '_>) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for row in &tile.rows[..tile.mr] {
        for line in row[tile.col0..tile.col0 + tile.nr].chunks(16) {
            // SAFETY: a prefetch is a hint that never faults (SSE, baseline x86-64); the address
            // is inside the row anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
}

/// An f32 micro-kernel: `(kc, packed A micro-panel, packed B micro-panel, tile)`.
pub(crate) type F32Kernel = fn(usize, &[f32], &[f32], &mut Tile<'_, '_>);
/// A bf16-pair micro-kernel: `(k pairs, packed A micro-panel, packed B micro-panel, tile)`.
pub(crate) type Bf16Kernel = fn(usize, &[u16], &[u16], &mut Tile<'_, '_>);

/// Widens a bf16-pair B panel (`kc` k values, `nr` lanes) into an f32 `kc × nr` panel.
pub(crate) type WidenFn = fn(&[u16], usize, usize, &mut [f32]);

/// Register tile and cache blocking of one micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocking {
    /// Rows of the register tile (A micro-panel height).
    pub mr: usize,
    /// Columns of the register tile (B micro-panel width).
    pub nr: usize,
    /// Depth of a k block: a `kc × nr` B micro-panel stays in L1 while the A micro-panels of a
    /// block stream past it from L2 (even, for the bf16 pairs).
    pub kc: usize,
    /// Rows of an A block (`mc × kc` packed, kept in L2); a multiple of `mr`.
    pub mc: usize,
    /// Columns of C swept per A block (`kc × nc` of packed B, kept in L2/L3); a multiple of `nr`.
    pub nc: usize,
}

/// Which micro-kernel a (ISA, precision) pair runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Portable f32 4×16.
    Scalar,
    /// AVX2+FMA f32 6×16.
    Avx2,
    /// AVX-512F f32 14×32.
    Avx512,
    /// AVX-512 BF16 `vdpbf16ps` 14×32 on bf16 pairs.
    Avx512Bf16Dot,
}

impl Kernel {
    /// The kernel for `isa` at `precision`. The caller has checked `isa.is_available()`, which
    /// is what makes the ISA kernels' target features sound to use.
    pub(crate) fn select(isa: Isa, precision: Precision) -> Kernel {
        if cfg!(not(target_arch = "x86_64")) {
            return Kernel::Scalar;
        }
        match (isa, precision) {
            (Isa::Scalar, _) => Kernel::Scalar,
            (Isa::Avx2, _) => Kernel::Avx2,
            (Isa::Avx512, _) | (Isa::Avx512Bf16, Precision::F32) => Kernel::Avx512,
            (Isa::Avx512Bf16, Precision::Bf16) => Kernel::Avx512Bf16Dot,
        }
    }

    /// Tile and block sizes (measured on a 2-core Sapphire Rapids VM: 48 KiB L1d, 2 MiB L2).
    pub(crate) fn blocking(self) -> Blocking {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::BLOCKING,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::BLOCKING,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16Dot => avx512bf16::BLOCKING,
            _ => scalar::BLOCKING,
        }
    }

    /// Packs an A block for this kernel (see [`pack::pack_a`]), compiled with the kernel's
    /// ISA so the copy and the bf16 rounding use its vector width.
    pub(crate) fn pack_a<P: PackElem>(self, a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::pack_a(a, block, dst),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 | Kernel::Avx512Bf16Dot => avx512::pack_a(a, block, dst),
            _ => pack::pack_a(a, block, dst),
        }
    }

    /// The function that widens a bf16-pair B panel for this (f32) kernel (see
    /// [`pack::widen_pairs`]): explicit SIMD on the x86 kernels, the portable loop otherwise.
    pub(crate) fn widen_fn(self) -> WidenFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::widen,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 | Kernel::Avx512Bf16Dot => avx512::widen,
            _ => pack::widen_pairs::<f32>,
        }
    }

    /// The f32 micro-kernel, or `None` for the bf16-dot kernel.
    pub(crate) fn f32_kernel(self) -> Option<F32Kernel> {
        match self {
            Kernel::Scalar => Some(scalar::kernel_4x16),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some(avx2::kernel_6x16),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Some(avx512::kernel_14x32),
            _ => None,
        }
    }

    /// The bf16-pair micro-kernel, or `None` for the f32 kernels.
    pub(crate) fn bf16_kernel(self) -> Option<Bf16Kernel> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16Dot => Some(avx512bf16::kernel_14x32),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calibration runs and says what it found (the decision itself is CPU-dependent).
    #[test]
    #[allow(clippy::print_stderr)]
    fn dot_calibration_measures_both_kernels() {
        if !Isa::Avx512Bf16.is_available() {
            eprintln!("tb-kernels: no AVX512_BF16 here; bf16-dot calibration not run");
            assert!(!bf16_dot_beats_fma());
            return;
        }
        let ratios: Vec<f64> = (0..3).map(|_| dot_speedup()).collect();
        eprintln!(
            "tb-kernels: bf16-dot ÷ f32 kernel speed {ratios:.2?} (threshold {DOT_MIN_SPEEDUP}); \
             dot kernel is the default: {}",
            bf16_dot_beats_fma()
        );
        assert!(ratios.iter().all(|r| r.is_finite() && *r > 0.0));
    }
}
