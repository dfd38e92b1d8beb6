//! Q4_K: 256-element super-blocks of eight 32-element sub-blocks, 4-bit codes,
//! `x ≈ d·sc_j·q − dmin·m_j` with 6-bit `sc_j`, `m_j`.
//!
//! Port of `quantize_row_q4_K_ref` / `dequantize_row_q4_K` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::{get_scale_min_k4, k_requantize, k_superblock_scales, Qkx2Params, K_SCALE_SIZE, QK_K};
use crate::codec::fp::F16Bits;
use crate::codec::BlockCodec;
use crate::types::GgmlType;

/// `block_q4_K`: `d`, `dmin`, packed 6-bit scales/mins, then for each 64-element chunk `c`,
/// 32 bytes whose low nibbles are sub-block `2c` and high nibbles sub-block `2c+1`.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: F16Bits,
    /// Super-block scale of the mins.
    pub dmin: F16Bits,
    /// 6-bit scales and mins, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit codes.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

const PARAMS: Qkx2Params = Qkx2Params {
    nmax: 15,
    rmin: -1.0,
    rdelta: 0.1,
    nstep: 20,
};

impl BlockQ4K {
    /// The effective scale and min of each 32-value sub-block, `(d·sc_j, dmin·m_j)`, computed
    /// in f32 exactly as [`BlockCodec::dequantize_block`] does, so that value `i` of sub-block
    /// `j` is `scale_j · code(32j + i) − min_j`, bit for bit.
    pub fn sub_block_scales(&self) -> [(f32, f32); QK_K / 32] {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        std::array::from_fn(|j| {
            let (sc, m) = get_scale_min_k4(j, &self.scales);
            (d * sc as f32, min * m as f32)
        })
    }

    /// The 4-bit code of value `i` (`0..256`) in natural order (undoing the nibble layout:
    /// the low nibbles of a 32-byte run hold one sub-block, the high nibbles the next).
    ///
    /// # Panics
    /// When `i >= 256`.
    pub fn code(&self, i: usize) -> u8 {
        assert!(i < QK_K, "value {i} of a {QK_K}-value super-block");
        let (chunk, within) = (i / 64, i % 64);
        let byte = self.qs[32 * chunk + within % 32];
        if within < 32 {
            byte & 0x0F
        } else {
            byte >> 4
        }
    }
}

impl BlockCodec for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const BLOCK_SIZE: usize = QK_K;

    fn quantize_block(x: &[f32]) -> Self {
        let x = &x[..QK_K];
        let mut l = [0u8; QK_K];
        let (d, dmin, scales) = k_superblock_scales(&PARAMS, x, &mut l);
        k_requantize(x, d, dmin, &scales, PARAMS.nmax, &mut l);
        let mut qs = [0u8; QK_K / 2];
        for c in 0..QK_K / 64 {
            for i in 0..32 {
                qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
        BlockQ4K {
            d,
            dmin,
            scales,
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        for c in 0..QK_K / 64 {
            let (sc1, m1) = get_scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let q = &self.qs[32 * c..32 * c + 32];
            let out = &mut y[64 * c..64 * c + 64];
            for i in 0..32 {
                out[i] = d1 * (q[i] & 0xF) as f32 - m1;
            }
            for i in 0..32 {
                out[32 + i] = d2 * (q[i] >> 4) as f32 - m2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sub_block_scales` and `code` rebuild `dequantize_block`'s values bit for bit.
    #[test]
    fn scales_and_codes_rebuild_the_dequantised_block() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for block in 0..16 {
            let x: Vec<f32> = (0..QK_K)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1.0 + block as f32)
                })
                .collect();
            let b = BlockQ4K::quantize_block(&x);
            let mut want = [0.0f32; QK_K];
            b.dequantize_block(&mut want);
            let scales = b.sub_block_scales();
            for (i, w) in want.iter().enumerate() {
                let (d, m) = scales[i / 32];
                let got = d * b.code(i) as f32 - m;
                assert_eq!(got.to_bits(), w.to_bits(), "block {block} value {i}");
            }
        }
    }
}
