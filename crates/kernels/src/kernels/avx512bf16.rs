//! AVX-512 BF16 micro-kernel: a 14×32 f32 tile from bf16 pairs with `vdpbf16ps`. Each 32-bit
//! lane `j` of a B vector holds `(B(p, j), B(p+1, j))`; each A broadcast is the adjacent pair
//! `(A(i, p), A(i, p+1))` of a row-major A panel; one instruction adds both exact products to lane `j` of row `i`'s
//! f32 accumulator, so a k step of two covers 2·14·32 multiply-adds with 2 loads and 28
//! instructions. Like every `vdpbf16ps` user (oneDNN, PyTorch) it inherits the instruction's
//! flush of bf16 subnormal inputs and f32 subnormal results to zero.

use std::arch::x86_64::*;

use super::avx512::tile_rows;
use super::{Blocking, Tile};

const MR: usize = 14;
const NV: usize = 2;
const NR: usize = NV * 16;
/// Row stride of the packed A micro-panel in bf16s (the kernel's KC).
const KS: usize = 512;

/// Tile and cache blocking of this kernel (see the crate docs).
pub(super) const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: KS,
    mc: 336,
    nc: 4096,
};

/// bf16-pair 14×32 tile over `kp` pairs of k (safe wrapper: checks, then the AVX-512 BF16 code).
pub(crate) fn kernel_14x32(kp: usize, a: &[u16], b: &[u16], tile: &mut Tile<'_, '_>) {
    tile.check(MR, NR);
    assert!(
        2 * kp <= KS && a.len() >= MR * KS && b.len() >= 2 * kp * NR,
        "invariant: packed panels hold kp pairs"
    );
    debug_assert!(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"));
    // SAFETY: this kernel is only selected for `Isa::Avx512Bf16`, which the entry points check
    // is available (CPUID: avx512f and avx512bf16) before packing; the panels hold `MR` rows
    // of `KS ≥ 2·kp` and `2·kp·NR` bf16s (asserted above), and `tile.check` asserted every
    // written row holds `col0 + nr` columns.
    unsafe { tile_bf16(kp, a.as_ptr(), b.as_ptr(), tile) }
}

/// The 14×32 register tile over `kp` k pairs, then the shared AVX-512 store. A is 14 rows `KS`
/// bf16s apart, so a row's pair `(p, p+1)` is one 32-bit broadcast.
///
/// # Safety
/// AVX-512F and AVX512_BF16 available; `a` readable for 14 rows of `KS ≥ 2·kp` and `b` for
/// `2·kp·32` u16s; `tile` checked for 14×32.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_bf16(kp: usize, a: *const u16, b: *const u16, tile: &mut Tile<'_, '_>) {
    super::prefetch_c(tile);
    let (mut ap, mut bp) = (a, b);
    let acc = tile_rows!(
        [r0 0, r1 1, r2 2, r3 3, r4 4, r5 5, r6 6, r7 7, r8 8, r9 9, r10 10, r11 11, r12 12, r13 13],
        kp,
        [_mm512_setzero_ps(); NV],
        // SAFETY: within the `2·kp·32` values of the B panel (caller's contract); any 64 bytes
        // are a valid `__m512bh`.
        |bv| unsafe {
            [
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.cast())),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(32).cast())),
            ]
        },
        |acc, i| {
            // SAFETY: row `i`, pair `< kp` (`2·kp ≤ KS`): inside the A panel (caller's
            // contract); unaligned 4-byte read; any 64 bytes are a valid `__m512bh`.
            let ai = unsafe {
                let pair = ap.add(i * KS).cast::<i32>().read_unaligned();
                std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair))
            };
            [
                _mm512_dpbf16_ps(acc[0], ai, bv[0]),
                _mm512_dpbf16_ps(acc[1], ai, bv[1]),
            ]
        },
        {
            // SAFETY: steps to the next pair inside (or one past) the panels.
            unsafe {
                ap = ap.add(2);
                bp = bp.add(2 * NR);
            }
        }
    );
    // SAFETY: same tile contract as ours; AVX-512F is enabled here.
    unsafe { super::avx512::store::<MR, NV>(&acc, tile) }
}
