//! NF4 (4-bit NormalFloat, QLoRA §3) blocks as bitsandbytes stores them for
//! `load_in_4bit=True, bnb_4bit_quant_type="nf4"`: 64 values per block, one f32 `absmax` per
//! block, each value the index of the nearest of 16 fixed codes after dividing by `absmax`.
//!
//! What matches bitsandbytes (`quantize_4bit`/`dequantize_4bit`, blocksize 64):
//! - the 16-entry codebook ([`NF4_CODEBOOK`], bnb's `get_4bit_type("nf4")`);
//! - the rounding: the code is chosen by comparing `x · (1/absmax)` against the 15 midpoints
//!   between adjacent codes, strictly greater going up, so a value exactly on a midpoint takes
//!   the lower code ([`NF4_MIDPOINTS`], the thresholds of bnb's `dQuantizeNF4`);
//! - the packing: two codes per byte, the first value of a pair in the **high** nibble;
//! - dequantisation `codebook[q] · absmax` in f32.
//!
//! What differs, on purpose:
//! - no double quantisation (`bnb_4bit_use_double_quant=False`): `absmax` stays f32;
//! - blocks run along one row of `[d_out, d_in]`, never across rows. When `d_in` is a multiple
//!   of 64 (every Llama/Mistral projection) the blocks are exactly bnb's blocks over the
//!   flattened weight. Otherwise the row's last block is padded with zeros: they take code 7
//!   (0.0), do not change `absmax`, and are never read back (see [`BlockNf4::dequantize`]);
//! - an all-zero block stores code 7 (0.0) everywhere; bnb's `x · (1/0)` gives NaN and code 0
//!   (-1.0). Both dequantise to zero.

/// Values per NF4 block (bitsandbytes' default `blocksize` for 4-bit).
pub const NF4_BLOCK: usize = 64;

/// The 16 NF4 codes, in code order (`0b0000` = -1.0 … `0b0111` = 0.0 … `0b1111` = 1.0).
#[expect(
    clippy::excessive_precision,
    reason = "bitsandbytes' literals, kept as written"
)]
pub const NF4_CODEBOOK: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// The rounding thresholds: `NF4_MIDPOINTS[i]` separates code `i` from code `i + 1` (the
/// midpoint of the two codes, as bitsandbytes' `dQuantizeNF4` compares them).
#[expect(
    clippy::excessive_precision,
    reason = "bitsandbytes' literals, kept as written"
)]
pub const NF4_MIDPOINTS: [f32; 15] = [
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
];

/// The code of the zero value.
const ZERO_CODE: u8 = 7;

/// One NF4 block: the scale, then 64 codes packed two per byte (value `2i` in the high nibble
/// of `qs[i]`, value `2i + 1` in the low nibble).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockNf4 {
    /// Largest `|x|` of the block's values (0 for an all-zero block).
    pub absmax: f32,
    /// Packed 4-bit codes.
    pub qs: [u8; NF4_BLOCK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockNf4>() == 36);

/// The NF4 code nearest to `x` (already divided by the block's `absmax`), with bitsandbytes'
/// tie rule; NaN takes code 0 like bnb's comparison tree (callers reject NaN earlier).
pub fn nf4_code(x: f32) -> u8 {
    // Codes are ordered, so the code is the number of midpoints strictly below `x`.
    NF4_MIDPOINTS.iter().filter(|&&m| x > m).count() as u8
}

impl BlockNf4 {
    /// Quantises up to 64 finite values; a shorter slice is the padded last block of a row
    /// (the missing values count as zeros).
    ///
    /// # Panics
    /// Never for `x.len() <= 64`; longer slices are an internal error (debug assertion).
    pub fn quantize(x: &[f32]) -> Self {
        debug_assert!(
            x.len() <= NF4_BLOCK,
            "invariant: at most one block of values"
        );
        let absmax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let mut codes = [ZERO_CODE; NF4_BLOCK];
        if absmax > 0.0 {
            // bnb multiplies by the reciprocal rather than dividing.
            let inv = 1.0 / absmax;
            for (c, &v) in codes.iter_mut().zip(x) {
                *c = nf4_code(v * inv);
            }
        }
        let mut qs = [0u8; NF4_BLOCK / 2];
        for (q, pair) in qs.iter_mut().zip(codes.chunks_exact(2)) {
            *q = (pair[0] << 4) | pair[1];
        }
        Self { absmax, qs }
    }

    /// The code of value `i` (`0..64`).
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        let byte = self.qs[i / 2];
        if i.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0x0F
        }
    }

    /// Dequantises the first `y.len()` values (`<= 64`; the valid part of a padded block):
    /// `y[i] = NF4_CODEBOOK[code(i)] · absmax`. This is the scalar reference.
    pub fn dequantize(&self, y: &mut [f32]) {
        for (i, out) in y.iter_mut().enumerate().take(NF4_BLOCK) {
            *out = NF4_CODEBOOK[self.code(i) as usize] * self.absmax;
        }
    }

    /// Same values as [`Self::dequantize`], a byte (two values) at a time: the path the tiled
    /// matmuls use.
    #[inline]
    pub fn dequantize_fast(&self, y: &mut [f32]) {
        let n = y.len().min(NF4_BLOCK);
        let (pairs, tail) = y[..n].split_at_mut(n - n % 2);
        for (out, &byte) in pairs.chunks_exact_mut(2).zip(&self.qs) {
            out[0] = NF4_CODEBOOK[(byte >> 4) as usize] * self.absmax;
            out[1] = NF4_CODEBOOK[(byte & 0x0F) as usize] * self.absmax;
        }
        if let Some(last) = tail.first_mut() {
            *last = NF4_CODEBOOK[(self.qs[n / 2] >> 4) as usize] * self.absmax;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midpoints_lie_between_their_codes() {
        for (i, m) in NF4_MIDPOINTS.iter().enumerate() {
            let (lo, hi) = (NF4_CODEBOOK[i], NF4_CODEBOOK[i + 1]);
            assert!(lo < *m && *m < hi, "{i}");
            assert!((m - (lo + hi) / 2.0).abs() < 1e-6, "{i}: not the midpoint");
        }
    }

    #[test]
    fn codes_round_trip_and_ties_go_down() {
        for (i, c) in NF4_CODEBOOK.iter().enumerate() {
            assert_eq!(nf4_code(*c) as usize, i);
        }
        for (i, m) in NF4_MIDPOINTS.iter().enumerate() {
            assert_eq!(
                nf4_code(*m) as usize,
                i,
                "a value on a midpoint takes the lower code"
            );
        }
    }

    #[test]
    fn fast_and_reference_dequantisers_agree() {
        let x: Vec<f32> = (0..NF4_BLOCK).map(|i| (i as f32 * 0.37).sin()).collect();
        let b = BlockNf4::quantize(&x);
        for n in [NF4_BLOCK, 63, 1] {
            let (mut r, mut f) = (vec![0.0; n], vec![0.0; n]);
            b.dequantize(&mut r);
            b.dequantize_fast(&mut f);
            assert_eq!(r, f, "{n}");
        }
    }
}
