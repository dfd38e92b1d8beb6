//! AVX2+FMA f32 micro-kernel: a 6×16 tile in 12 ymm accumulators (the classic Haswell/Zen
//! shape: 2 B loads, 6 broadcasts and 12 FMAs per k step, 15 of the 16 ymm registers).

use std::arch::x86_64::*;

use super::{Blocking, Tile};
use crate::mat::MatRef;
use crate::pack::{self, ABlock, PackElem};

const MR: usize = 6;
const NV: usize = 2;
const NR: usize = NV * 8;
/// Row stride of the packed A micro-panel (the kernel's KC).
const KS: usize = 256;

/// Tile and cache blocking of this kernel (see the crate docs).
pub(super) const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: KS,
    mc: 120,
    nc: 4096,
};

/// f32 6×16 tile (safe wrapper: checks the panels and the tile, then runs the AVX2 code).
pub(crate) fn kernel_6x16(kc: usize, a: &[f32], b: &[f32], tile: &mut Tile<'_, '_>) {
    tile.check(MR, NR);
    assert!(
        kc <= KS && a.len() >= MR * KS && b.len() >= kc * NR,
        "invariant: packed panels hold kc steps"
    );
    debug_assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    // SAFETY: this kernel is only selected for `Isa::Avx2`, which the entry points check is
    // available (CPUID: avx2 and fma) before packing; the panels hold `MR` rows of `KS ≥ kc`
    // and `kc·NR` values (asserted above), and `tile.check` asserted every written row holds
    // `col0 + nr` columns.
    unsafe { tile_f32::<MR, NV, KS>(kc, a.as_ptr(), b.as_ptr(), tile) }
}

/// The `M × 8V` register tile over `kc` steps, then the store. A is `M` rows `S` apart.
///
/// # Safety
/// AVX2 and FMA available; `a` readable for `M` rows of `S ≥ kc` and `b` for `kc·8V` f32s;
/// `tile` checked for `M × 8V`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_f32<const M: usize, const V: usize, const S: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    tile: &mut Tile<'_, '_>,
) {
    super::prefetch_c(tile);
    let mut acc = [[_mm256_setzero_ps(); V]; M];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm256_setzero_ps(); V];
        for (v, bvv) in bv.iter_mut().enumerate() {
            // SAFETY: within the `kc·8V` values of the B panel (caller's contract).
            *bvv = unsafe { _mm256_loadu_ps(bp.add(8 * v)) };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: row `i`, step `< kc ≤ S`: inside the A panel (caller's contract).
            let ai = _mm256_set1_ps(unsafe { *ap.add(i * S) });
            for (c, bvv) in row.iter_mut().zip(&bv) {
                *c = _mm256_fmadd_ps(ai, *bvv, *c);
            }
        }
        // SAFETY: steps to the next k inside (or one past) the panels.
        unsafe {
            ap = ap.add(1);
            bp = bp.add(8 * V);
        }
    }
    if tile.is_full(M, 8 * V) {
        let alpha = _mm256_set1_ps(tile.alpha);
        let (col0, accumulate) = (tile.col0, tile.accumulate);
        for (row, acc_row) in tile.rows.iter_mut().zip(&acc) {
            let p = row[col0..col0 + 8 * V].as_mut_ptr();
            for (v, &x) in acc_row.iter().enumerate() {
                // SAFETY: `p..p + 8V` is the slice just taken from this row.
                unsafe {
                    let out = if accumulate {
                        _mm256_fmadd_ps(alpha, x, _mm256_loadu_ps(p.add(8 * v)))
                    } else {
                        _mm256_mul_ps(alpha, x)
                    };
                    _mm256_storeu_ps(p.add(8 * v), out);
                }
            }
        }
    } else {
        // Every row in turn (a constant index once unrolled, so `acc` stays in registers),
        // skipping the rows past the matrix edge.
        for (i, arow) in acc.iter().enumerate() {
            if i >= tile.mr {
                continue;
            }
            let mut buf = [[0.0f32; 8]; V];
            for (bv, &x) in buf.iter_mut().zip(arow) {
                // SAFETY: `bv` is 8 writable f32s.
                unsafe { _mm256_storeu_ps(bv.as_mut_ptr(), x) };
            }
            tile.store_row(i, buf.as_flattened());
        }
    }
}

/// [`pack::pack_a`] compiled with AVX2+FMA (only reached for kernels of an ISA that has it).
pub(crate) fn pack_a<P: PackElem>(a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
    debug_assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    // SAFETY: the caller's kernel was selected for an ISA with AVX2+FMA, checked available
    // (CPUID) by the entry points; the function is otherwise safe, bounds-checked code.
    unsafe { pack_a_isa(a, block, dst) }
}

/// [`pack::pack_a`] with AVX2+FMA enabled.
#[target_feature(enable = "avx2,fma")]
fn pack_a_isa<P: PackElem>(a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
    pack::pack_a(a, block, dst)
}

/// [`pack::widen_pairs`] for f32 panels in AVX2+FMA: each 32-bit lane of a pair row holds
/// `(B(p, j), B(p+1, j))`; shifting it left by 16 gives `B(p, j)` as f32, masking off the low
/// half gives `B(p+1, j)` — two instructions per 8 values, no shuffles.
pub(crate) fn widen(src: &[u16], kc: usize, nr: usize, dst: &mut [f32]) {
    assert!(
        nr.is_multiple_of(8) && src.len() >= kc.div_ceil(2) * 2 * nr && dst.len() >= kc * nr,
        "invariant: widened panels fit"
    );
    debug_assert!(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"));
    // SAFETY: only reached for kernels of an ISA with AVX2+FMA, checked available (CPUID) by the
    // entry points; the lengths are asserted above.
    unsafe { widen_isa(src.as_ptr(), kc, nr, dst.as_mut_ptr()) }
}

/// The loop of [`widen`].
///
/// # Safety
/// AVX2+FMA available; `src` readable for `⌈kc/2⌉·2·nr` u16s, `dst` writable for `kc·nr` f32s,
/// `nr` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn widen_isa(src: *const u16, kc: usize, nr: usize, dst: *mut f32) {
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    for pp in 0..kc.div_ceil(2) {
        let has_odd = 2 * pp + 1 < kc;
        for v in (0..nr).step_by(8) {
            // SAFETY: pair row `pp < ⌈kc/2⌉`, lanes `v..v + 8 ≤ nr`: inside `src`; rows
            // `2pp` and (if `< kc`) `2pp + 1` of `dst` (caller's contract).
            unsafe {
                let x = _mm256_loadu_si256(src.add(pp * 2 * nr + 2 * v).cast());
                let even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x));
                _mm256_storeu_ps(dst.add(2 * pp * nr + v), even);
                if has_odd {
                    let odd = _mm256_castsi256_ps(_mm256_and_si256(x, high));
                    _mm256_storeu_ps(dst.add((2 * pp + 1) * nr + v), odd);
                }
            }
        }
    }
}
