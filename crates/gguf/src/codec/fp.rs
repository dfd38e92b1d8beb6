//! ggml's scalar fp16 and bf16 conversions, bit for bit.
//!
//! `f32_to_f16` is `ggml_compute_fp32_to_fp16` from ggml `src/ggml-impl.h` (round to nearest
//! even; every NaN becomes `0x7e00` with the input's sign). `f16_to_f32` is
//! `ggml_compute_fp16_to_fp32`. These are the functions llama.cpp's reference quantizers use for
//! block scales, so our blocks match byte for byte. bf16 follows `ggml_compute_fp32_to_bf16`:
//! round to nearest even, NaN forced quiet.

use bytemuck::{Pod, Zeroable};

/// An IEEE half stored as two little-endian bytes (alignment 1, so blocks can be cast from any
/// byte slice).
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub struct F16Bits(pub [u8; 2]);

impl F16Bits {
    /// Rounds `v` to half (ggml's rounding).
    #[inline]
    pub fn from_f32(v: f32) -> Self {
        F16Bits(f32_to_f16(v).to_le_bytes())
    }

    /// The value as f32 (exact).
    #[inline]
    pub fn to_f32(self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.0))
    }

    /// The raw bits.
    #[inline]
    pub fn bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

impl std::fmt::Debug for F16Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_f32())
    }
}

/// fp32 → fp16 bits, exactly as `ggml_compute_fp32_to_fp16`.
#[inline]
pub fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;

    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xFF00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    let low = if shl1_w > 0xFF00_0000 {
        0x7E00
    } else {
        nonsign
    };
    ((sign >> 16) | low) as u16
}

/// fp16 bits → fp32, exactly as `ggml_compute_fp16_to_fp32`.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);

    let exp_offset = 0xE0u32 << 23;
    let exp_scale = f32::from_bits(0x0780_0000); // 2^-112
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * exp_scale;

    let magic_mask = 126u32 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;

    let cutoff = 1u32 << 27;
    let result = sign
        | if two_w < cutoff {
            denormalized.to_bits()
        } else {
            normalized.to_bits()
        };
    f32::from_bits(result)
}

/// fp32 → bf16 bits, exactly as `ggml_compute_fp32_to_bf16`.
#[inline]
pub fn f32_to_bf16(s: f32) -> u16 {
    let u = s.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → fp32 (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// C's conversion of a float to an integer as llama.cpp's x86-64 builds perform it
/// (`cvttss2si`): truncation toward zero, and `INT32_MIN` for NaN and values outside the `i32`
/// range. The reference quantizers convert `x · (1/d)` this way; when `d` is subnormal, `1/d`
/// is infinite and every code becomes the low bits of `INT32_MIN`, i.e. 0. Rust's saturating
/// `as` would give `i32::MAX` (low byte `0xFF`) instead.
#[inline]
pub fn c_float_to_int(v: f32) -> i32 {
    if v.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_half_crate_on_all_finite_inputs_sampled() {
        // round-to-nearest-even, same as IEEE conversion (half crate), except NaN payloads
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            if f.is_nan() {
                assert_eq!(f32_to_f16(f) & 0x7fff, 0x7e00);
                continue;
            }
            assert_eq!(f32_to_f16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
        for h in 0..=u16::MAX {
            let a = f16_to_f32(h);
            let b = half::f16::from_bits(h).to_f32();
            if b.is_nan() {
                assert!(a.is_nan());
            } else {
                assert_eq!(a.to_bits(), b.to_bits(), "{h:#x}");
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80); // tie to even
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::NAN) & 0x7fc0, 0x7fc0);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn c_float_to_int_truncates_and_gives_int_min_outside_the_range() {
        assert_eq!(c_float_to_int(1.9), 1);
        assert_eq!(c_float_to_int(-1.9), -1);
        assert_eq!(c_float_to_int(200.0) as i8, -56);
        for v in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 3e9, -3e9] {
            assert_eq!(c_float_to_int(v), i32::MIN, "{v}");
            assert_eq!(c_float_to_int(v) as i8, 0, "{v}");
        }
        assert_eq!(c_float_to_int(-2_147_483_648.0), i32::MIN);
    }
}
