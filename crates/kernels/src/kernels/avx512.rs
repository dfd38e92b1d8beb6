//! AVX-512F f32 micro-kernel: a 14×32 tile in 28 zmm accumulators. Per k step it loads two
//! B vectors, broadcasts each of the 14 A values (from 14 rows of the A panel at compile-time
//! offsets) and issues 28 FMAs — enough independent chains to cover the FMA latency on two
//! ports, with 16 loads per 28 FMAs (the two load ports keep up).
//!
//! The register-tile loop macro and the tile store are shared with the bf16-dot kernel; the
//! SIMD A packing and B widening helpers live here too.

use std::arch::x86_64::*;

use super::{Blocking, Tile};
use crate::mat::MatRef;
use crate::pack::{self, ABlock, PackElem};

const MR: usize = 14;
const NV: usize = 2;
const NR: usize = NV * 16;
/// Row stride of the packed A micro-panel (the kernel's KC).
const KS: usize = 256;

/// Tile and cache blocking of this kernel (see the crate docs).
pub(super) const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: KS,
    mc: 336,
    nc: 4096,
};

/// f32 14×32 tile (safe wrapper: checks the panels and the tile, then runs the AVX-512 code).
pub(crate) fn kernel_14x32(kc: usize, a: &[f32], b: &[f32], tile: &mut Tile<'_, '_>) {
    tile.check(MR, NR);
    assert!(
        kc <= KS && a.len() >= MR * KS && b.len() >= kc * NR,
        "invariant: packed panels hold kc steps"
    );
    debug_assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: this kernel is only selected for `Isa::Avx512`/`Isa::Avx512Bf16`, which the entry
    // points check is available (CPUID) before packing; the panels hold `MR` rows of `KS ≥ kc`
    // and `kc·NR` values (asserted above), and `tile.check` asserted every written row holds
    // `col0 + nr` columns.
    unsafe { tile_f32(kc, a.as_ptr(), b.as_ptr(), tile) }
}

/// The k loop of a register tile with the row accumulators as named locals `[$r ...]` (an
/// array of accumulators updated in loops ended up memory-backed: zeroed with `memset` and
/// reloaded on every call; named locals stay in registers). Per step: `let bv = load_b`, then
/// for each row `$r` with index `$n` (a constant) `$r = row($r, $n)`, then `advance`.
/// Evaluates to the array of row accumulators.
macro_rules! tile_rows {
    (
        [$($r:ident $n:literal),*],
        $steps:expr,
        $zero:expr,
        |$bv:ident| $load_b:expr,
        |$acc:ident, $i:ident| $row:expr,
        $advance:block
    ) => {{
        $(let mut $r = $zero;)*
        for _ in 0..$steps {
            let $bv = $load_b;
            $(
                $r = {
                    let ($acc, $i): (_, usize) = ($r, $n);
                    $row
                };
            )*
            $advance
        }
        [$($r),*]
    }};
}
pub(super) use tile_rows;

/// The 14×32 register tile over `kc` steps, then [`store`]. A is 14 rows `KS` apart
/// (compile-time offsets).
///
/// # Safety
/// AVX-512F available; `a` readable for 14 rows of `KS ≥ kc` and `b` for `kc·32` f32s;
/// `tile` checked for 14×32.
#[target_feature(enable = "avx512f")]
unsafe fn tile_f32(kc: usize, a: *const f32, b: *const f32, tile: &mut Tile<'_, '_>) {
    super::prefetch_c(tile);
    let (mut ap, mut bp) = (a, b);
    let acc = tile_rows!(
        [r0 0, r1 1, r2 2, r3 3, r4 4, r5 5, r6 6, r7 7, r8 8, r9 9, r10 10, r11 11, r12 12, r13 13],
        kc,
        [_mm512_setzero_ps(); NV],
        // SAFETY: within the `kc·32` values of the B panel (caller's contract).
        |bv| unsafe { [_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16))] },
        |acc, i| {
            // SAFETY: row `i`, step `< kc ≤ KS`: inside the A panel (caller's contract).
            let ai = _mm512_set1_ps(unsafe { *ap.add(i * KS) });
            [
                _mm512_fmadd_ps(ai, bv[0], acc[0]),
                _mm512_fmadd_ps(ai, bv[1], acc[1]),
            ]
        },
        {
            // SAFETY: steps to the next k inside (or one past) the panels.
            unsafe {
                ap = ap.add(1);
                bp = bp.add(NR);
            }
        }
    );
    // SAFETY: same tile contract as ours; AVX-512F is enabled here.
    unsafe { store::<MR, NV>(&acc, tile) }
}

/// Writes `alpha·acc` (plus C when accumulating) into the tile: full tiles with vector loads
/// and stores, edge tiles row by row through a small stack buffer and [`Tile::store_row`].
///
/// Always inlined into the kernels (which enable AVX-512F) and without a target feature of its
/// own, so the accumulators stay in registers instead of being spilled for a call.
///
/// # Safety
/// Only called from functions with AVX-512F enabled (on a CPU that has it); `tile` checked for
/// `M × 16V` (every written row holds `col0 + nr`).
#[inline(always)]
pub(super) unsafe fn store<const M: usize, const V: usize>(
    acc: &[[__m512; V]; M],
    tile: &mut Tile<'_, '_>,
) {
    if tile.is_full(M, 16 * V) {
        let alpha = _mm512_set1_ps(tile.alpha);
        let (col0, accumulate) = (tile.col0, tile.accumulate);
        for (row, acc_row) in tile.rows.iter_mut().zip(acc) {
            let p = row[col0..col0 + 16 * V].as_mut_ptr();
            for (v, &x) in acc_row.iter().enumerate() {
                // SAFETY: `p..p + 16V` is the slice just taken from this row.
                unsafe {
                    let out = if accumulate {
                        _mm512_fmadd_ps(alpha, x, _mm512_loadu_ps(p.add(16 * v)))
                    } else {
                        _mm512_mul_ps(alpha, x)
                    };
                    _mm512_storeu_ps(p.add(16 * v), out);
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
            let mut buf = [[0.0f32; 16]; V];
            for (bv, &x) in buf.iter_mut().zip(arow) {
                // SAFETY: `bv` is 16 writable f32s.
                unsafe { _mm512_storeu_ps(bv.as_mut_ptr(), x) };
            }
            tile.store_row(i, buf.as_flattened());
        }
    }
}

/// [`pack::pack_a`] compiled with AVX-512F (only reached for kernels of an ISA that has it).
pub(crate) fn pack_a<P: PackElem>(a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
    debug_assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: the caller's kernel was selected for an ISA with AVX-512F, checked available
    // (CPUID) by the entry points; the function is otherwise safe, bounds-checked code.
    unsafe { pack_a_isa(a, block, dst) }
}

/// [`pack::pack_a`] with AVX-512F enabled.
#[target_feature(enable = "avx512f")]
fn pack_a_isa<P: PackElem>(a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
    pack::pack_a(a, block, dst)
}

/// [`pack::widen_pairs`] for f32 panels in AVX-512F: each 32-bit lane of a pair row holds
/// `(B(p, j), B(p+1, j))`; shifting it left by 16 gives `B(p, j)` as f32, masking off the low
/// half gives `B(p+1, j)` — two instructions per 16 values, no shuffles.
pub(crate) fn widen(src: &[u16], kc: usize, nr: usize, dst: &mut [f32]) {
    assert!(
        nr.is_multiple_of(16) && src.len() >= kc.div_ceil(2) * 2 * nr && dst.len() >= kc * nr,
        "invariant: widened panels fit"
    );
    debug_assert!(is_x86_feature_detected!("avx512f"));
    // SAFETY: only reached for kernels of an ISA with AVX-512F, checked available (CPUID) by the
    // entry points; the lengths are asserted above.
    unsafe { widen_isa(src.as_ptr(), kc, nr, dst.as_mut_ptr()) }
}

/// The loop of [`widen`].
///
/// # Safety
/// AVX-512F available; `src` readable for `⌈kc/2⌉·2·nr` u16s, `dst` writable for `kc·nr` f32s,
/// `nr` a multiple of 16.
#[target_feature(enable = "avx512f")]
unsafe fn widen_isa(src: *const u16, kc: usize, nr: usize, dst: *mut f32) {
    let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
    for pp in 0..kc.div_ceil(2) {
        let has_odd = 2 * pp + 1 < kc;
        for v in (0..nr).step_by(16) {
            // SAFETY: pair row `pp < ⌈kc/2⌉`, lanes `v..v + 16 ≤ nr`: inside `src`; rows
            // `2pp` and (if `< kc`) `2pp + 1` of `dst` (caller's contract).
            unsafe {
                let x = _mm512_loadu_si512(src.add(pp * 2 * nr + 2 * v).cast());
                let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(x));
                _mm512_storeu_ps(dst.add(2 * pp * nr + v), even);
                if has_odd {
                    let odd = _mm512_castsi512_ps(_mm512_and_si512(x, high));
                    _mm512_storeu_ps(dst.add((2 * pp + 1) * nr + v), odd);
                }
            }
        }
    }
}
