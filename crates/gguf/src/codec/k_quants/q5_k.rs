//! Q5_K: like Q4_K with 5-bit codes; the fifth bits live in `qh`.
//!
//! Port of `quantize_row_q5_K_ref` / `dequantize_row_q5_K` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::{get_scale_min_k4, k_requantize, k_superblock_scales, Qkx2Params, K_SCALE_SIZE, QK_K};
use crate::codec::fp::F16Bits;
use crate::codec::BlockCodec;
use crate::types::GgmlType;

/// `block_q5_K`: `d`, `dmin`, packed scales/mins, `qh[32]` (bit `2c` of `qh[i]` is the high
/// bit of element `64c+i`, bit `2c+1` that of `64c+32+i`), `qs[128]` (low nibbles as Q4_K).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: F16Bits,
    /// Super-block scale of the mins.
    pub dmin: F16Bits,
    /// 6-bit scales and mins, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// High bits.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

const PARAMS: Qkx2Params = Qkx2Params {
    nmax: 31,
    rmin: -0.5,
    rdelta: 0.1,
    nstep: 15,
};

impl BlockCodec for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const BLOCK_SIZE: usize = QK_K;

    fn quantize_block(x: &[f32]) -> Self {
        let x = &x[..QK_K];
        let mut l = [0u8; QK_K];
        let (d, dmin, scales) = k_superblock_scales(&PARAMS, x, &mut l);
        k_requantize(x, d, dmin, &scales, PARAMS.nmax, &mut l);
        let mut qh = [0u8; QK_K / 8];
        let mut qs = [0u8; QK_K / 2];
        let (mut m1, mut m2) = (1u8, 2u8);
        for c in 0..QK_K / 64 {
            for j in 0..32 {
                let mut l1 = l[64 * c + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[64 * c + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                qs[32 * c + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        BlockQ5K {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let min = self.dmin.to_f32();
        let (mut u1, mut u2) = (1u8, 2u8);
        for c in 0..QK_K / 64 {
            let (sc1, m1) = get_scale_min_k4(2 * c, &self.scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, &self.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let ql = &self.qs[32 * c..32 * c + 32];
            let out = &mut y[64 * c..64 * c + 64];
            for i in 0..32 {
                let hi = if self.qh[i] & u1 != 0 { 16 } else { 0 };
                out[i] = d1 * ((ql[i] & 0xF) as i32 + hi) as f32 - m1;
            }
            for i in 0..32 {
                let hi = if self.qh[i] & u2 != 0 { 16 } else { 0 };
                out[32 + i] = d2 * ((ql[i] >> 4) as i32 + hi) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}
