//! SIMD block transposes for packing B when its columns are contiguous along k (`B = Wᵀ` of a
//! row-major `[out, in]` weight, the forward of every projection): each packed panel row takes
//! one value from each of `NR` weight rows, which a scalar loop gathers one element at a time.
//! Here whole `16 × 16` (AVX-512F) or `8 × 8` (AVX2) blocks of 32-bit lanes are loaded as rows,
//! transposed in registers and stored as panel rows.
//!
//! A lane is an f32, a bf16 pair along k (the `vdpbf16ps` layout: two adjacent bf16 values of a
//! weight row are the pair), or a bf16 widened to f32 while loaded. The safe entry point
//! [`transpose_lanes`] does the full blocks and returns how far it got; the caller packs the
//! edges with its scalar loop, which is also the reference the tests compare against.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::Kernel;

/// Where the lanes come from: `lane(j, p)` is at lane offset `j·stride + p` of the slice (`pub`
/// for the sealed [`crate::Element`] trait; unreachable outside the crate).
#[derive(Clone, Copy)]
pub enum SrcLanes<'a> {
    /// f32 values, one per lane.
    F32(&'a [f32]),
    /// bf16 bits, two per lane (a k pair); `stride` and the offsets count u16 values, so
    /// `lane(j, p)` starts at u16 `j·stride + 2p`.
    Pairs(&'a [u16]),
    /// bf16 bits widened to one f32 lane each.
    Widen(&'a [u16]),
}

/// Where the lanes go: `lane(p, j)` at lane offset `p·ld + j` (u16 pairs: at u16 `2(p·ld + j)`).
pub(crate) enum DstLanes<'a> {
    /// f32 lanes.
    F32(&'a mut [f32]),
    /// bf16 pairs, two u16 per lane.
    Pairs(&'a mut [u16]),
}

/// Transposes the largest block of whole SIMD tiles of a `steps × cols` lane block:
/// `dst lane(p, j) = src lane(j, p)` for `p < steps'`, `j < cols'`, and returns
/// `(steps', cols')` (multiples of the tile size; `(0, 0)` where the kernel's ISA has no SIMD
/// transpose or the source/destination kinds do not match: F32→F32, Pairs→Pairs,
/// Widen→F32). The caller fills the rest.
pub(crate) fn transpose_lanes(
    kernel: Kernel,
    src: SrcLanes<'_>,
    stride: usize,
    dst: DstLanes<'_>,
    ld: usize,
    steps: usize,
    cols: usize,
) -> (usize, usize) {
    let tile = match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Avx512Bf16Dot => 16,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => 8,
        _ => return (0, 0),
    };
    let (steps, cols) = (steps / tile * tile, cols / tile * tile);
    if steps == 0 || cols == 0 {
        return (0, 0);
    }
    // Last lane read and written, in the units of each slice.
    let src_last = (cols - 1) * stride + steps - 1;
    let dst_last = (steps - 1) * ld + cols - 1;
    let (src_ptr, mode, src_unit) = match (src, &dst) {
        (SrcLanes::F32(s), DstLanes::F32(_)) if src_last < s.len() => {
            (s.as_ptr().cast::<u8>(), Mode::Lanes32, 4)
        }
        (SrcLanes::Pairs(s), DstLanes::Pairs(_))
            if (cols - 1) * stride + 2 * steps - 1 < s.len() =>
        {
            (s.as_ptr().cast::<u8>(), Mode::Lanes32, 2)
        }
        (SrcLanes::Widen(s), DstLanes::F32(_)) if src_last < s.len() => {
            (s.as_ptr().cast::<u8>(), Mode::Widen16, 2)
        }
        _ => return (0, 0),
    };
    let dst_ptr = match dst {
        DstLanes::F32(d) if dst_last < d.len() => d.as_mut_ptr().cast::<u8>(),
        DstLanes::Pairs(d) if 2 * dst_last + 1 < d.len() => d.as_mut_ptr().cast::<u8>(),
        _ => return (0, 0),
    };
    let geometry = Geometry {
        src_row: stride * src_unit,
        src_lane: if matches!(mode, Mode::Widen16) { 2 } else { 4 },
        dst_row: ld * 4,
        steps,
        cols,
    };
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the kernel was selected for an ISA the entry points checked is available
        // (AVX-512F for the 16-lane tiles, AVX2 for the 8-lane ones); every lane read lies at
        // or before `src_last` (checked against the source's length above, in its units) and
        // every lane written at or before `dst_last` (checked against the destination's length).
        unsafe {
            if tile == 16 {
                transpose_16(src_ptr, mode, dst_ptr, &geometry);
            } else {
                transpose_8(src_ptr, mode, dst_ptr, &geometry);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src_ptr, mode, dst_ptr, geometry);
    (steps, cols)
}

/// How a lane is loaded.
#[derive(Clone, Copy)]
enum Mode {
    /// 32 bits as they are (f32, or a bf16 pair).
    Lanes32,
    /// 16 bits of bf16, widened to f32.
    Widen16,
}

/// Byte strides and the lane block of one transpose.
struct Geometry {
    /// Bytes between source rows (`j` to `j + 1`).
    src_row: usize,
    /// Bytes per source lane.
    src_lane: usize,
    /// Bytes between destination rows (`p` to `p + 1`).
    dst_row: usize,
    /// Lanes along k (a multiple of the tile).
    steps: usize,
    /// Lanes along n (a multiple of the tile).
    cols: usize,
}

/// 16 × 16 tiles with AVX-512F.
///
/// # Safety
/// AVX-512F available; every source lane `(j, p)` for `j < cols`, `p < steps` readable at
/// `src + j·src_row + p·src_lane`, every destination lane writable at `dst + p·dst_row + 4j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_16(src: *const u8, mode: Mode, dst: *mut u8, g: &Geometry) {
    let zero = _mm512_setzero_ps();
    for j0 in (0..g.cols).step_by(16) {
        for p0 in (0..g.steps).step_by(16) {
            let mut r = [zero; 16];
            for (i, row) in r.iter_mut().enumerate() {
                let at = src.add((j0 + i) * g.src_row + p0 * g.src_lane);
                *row = match mode {
                    Mode::Lanes32 => _mm512_loadu_ps(at.cast()),
                    Mode::Widen16 => {
                        let bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(at.cast()));
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
                    }
                };
            }
            // Pairs of rows interleaved inside each 128-bit lane.
            let mut t = [zero; 16];
            for k in 0..8 {
                t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
                t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
            }
            // u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+4.
            let mut u = [zero; 16];
            for grp in 0..4 {
                let (a, b, c, d) = (t[4 * grp], t[4 * grp + 1], t[4 * grp + 2], t[4 * grp + 3]);
                u[4 * grp] = _mm512_shuffle_ps::<0x44>(a, c);
                u[4 * grp + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
                u[4 * grp + 2] = _mm512_shuffle_ps::<0x44>(b, d);
                u[4 * grp + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
            }
            // Column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
            for c in 0..4 {
                let p0v = _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]);
                let p1v = _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]);
                let q0v = _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]);
                let q1v = _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]);
                let cols = [
                    _mm512_shuffle_f32x4::<0x88>(p0v, q0v),
                    _mm512_shuffle_f32x4::<0xDD>(p0v, q0v),
                    _mm512_shuffle_f32x4::<0x88>(p1v, q1v),
                    _mm512_shuffle_f32x4::<0xDD>(p1v, q1v),
                ];
                for (lane, v) in cols.into_iter().enumerate() {
                    let p = p0 + 4 * lane + c;
                    _mm512_storeu_ps(dst.add(p * g.dst_row + j0 * 4).cast(), v);
                }
            }
        }
    }
}

/// 8 × 8 tiles with AVX2.
///
/// # Safety
/// AVX2 available; the same bounds as [`transpose_16`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8(src: *const u8, mode: Mode, dst: *mut u8, g: &Geometry) {
    let zero = _mm256_setzero_ps();
    for j0 in (0..g.cols).step_by(8) {
        for p0 in (0..g.steps).step_by(8) {
            let mut r = [zero; 8];
            for (i, row) in r.iter_mut().enumerate() {
                let at = src.add((j0 + i) * g.src_row + p0 * g.src_lane);
                *row = match mode {
                    Mode::Lanes32 => _mm256_loadu_ps(at.cast()),
                    Mode::Widen16 => {
                        let bits = _mm256_cvtepu16_epi32(_mm_loadu_si128(at.cast()));
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(bits))
                    }
                };
            }
            let mut t = [zero; 8];
            for k in 0..4 {
                t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
                t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
            }
            // u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+4.
            let mut u = [zero; 8];
            for grp in 0..2 {
                let (a, b, c, d) = (t[4 * grp], t[4 * grp + 1], t[4 * grp + 2], t[4 * grp + 3]);
                u[4 * grp] = _mm256_shuffle_ps::<0x44>(a, c);
                u[4 * grp + 1] = _mm256_shuffle_ps::<0xEE>(a, c);
                u[4 * grp + 2] = _mm256_shuffle_ps::<0x44>(b, d);
                u[4 * grp + 3] = _mm256_shuffle_ps::<0xEE>(b, d);
            }
            for c in 0..4 {
                let lo = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
                let hi = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
                _mm256_storeu_ps(dst.add((p0 + c) * g.dst_row + j0 * 4).cast(), lo);
                _mm256_storeu_ps(dst.add((p0 + 4 + c) * g.dst_row + j0 * 4).cast(), hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isa;

    /// Every SIMD kernel this CPU has, against the plain definition, for each lane kind, on a
    /// block with edges the tiles do not cover.
    #[test]
    fn transposes_match_the_definition() {
        let (steps, cols, stride, ld) = (37, 21, 45, 24);
        for isa in Isa::available() {
            let kernel = Kernel::select(isa, crate::Precision::F32);
            let src: Vec<f32> = (0..cols * stride).map(|i| i as f32).collect();
            let mut dst = vec![-1.0f32; steps * ld];
            let (s, c) = transpose_lanes(
                kernel,
                SrcLanes::F32(&src),
                stride,
                DstLanes::F32(&mut dst),
                ld,
                steps,
                cols,
            );
            check_block(isa, s, c, |p, j| dst[p * ld + j] == src[j * stride + p]);
            for (p, row) in dst.chunks(ld).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let inside = p < s && j < c;
                    assert_eq!(*v == -1.0, !inside, "{isa}: wrote outside the block");
                }
            }

            let bits: Vec<u16> = (0..cols * stride).map(|i| i as u16 ^ 0x5a5a).collect();
            let mut pairs = vec![0u16; 2 * steps * ld];
            let (s, c) = transpose_lanes(
                kernel,
                SrcLanes::Pairs(&bits),
                stride,
                DstLanes::Pairs(&mut pairs),
                ld,
                steps / 2,
                cols,
            );
            check_block(isa, s, c, |p, j| {
                let at = 2 * (p * ld + j);
                pairs[at..at + 2] == bits[j * stride + 2 * p..j * stride + 2 * p + 2]
            });

            let mut wide = vec![0.0f32; steps * ld];
            let (s, c) = transpose_lanes(
                kernel,
                SrcLanes::Widen(&bits),
                stride,
                DstLanes::F32(&mut wide),
                ld,
                steps,
                cols,
            );
            check_block(isa, s, c, |p, j| {
                wide[p * ld + j].to_bits() == u32::from(bits[j * stride + p]) << 16
            });
        }
    }

    /// The block is all whole tiles for the SIMD kernels, empty for the others, and `ok` holds
    /// everywhere inside it.
    fn check_block(isa: Isa, s: usize, c: usize, ok: impl Fn(usize, usize) -> bool) {
        match isa {
            Isa::Scalar => assert_eq!((s, c), (0, 0)),
            _ => assert!(s > 0 && c > 0, "{isa}: no SIMD block"),
        }
        for p in 0..s {
            for j in 0..c {
                assert!(ok(p, j), "{isa}: lane ({p}, {j})");
            }
        }
    }
}
