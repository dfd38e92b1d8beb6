//! Q6_K: 256-element super-blocks of sixteen 16-element sub-blocks, 6-bit codes,
//! `x ≈ d·sc_j·(q − 32)` with int8 `sc_j`.
//!
//! Port of `quantize_row_q6_K_ref` / `dequantize_row_q6_K` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::{make_qx_quants, nearest_int, GROUP_MAX_EPS, QK_K};
use crate::codec::fp::F16Bits;
use crate::codec::BlockCodec;
use crate::types::GgmlType;

/// `block_q6_K`: `ql[128]` (low nibbles), `qh[64]` (high 2-bit pairs), `scales[16]` (int8),
/// and the fp16 `d` last.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits of the codes.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the codes.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: F16Bits,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

impl BlockCodec for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const BLOCK_SIZE: usize = QK_K;

    fn quantize_block(x: &[f32]) -> Self {
        let x = &x[..QK_K];
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let scale =
                make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = scale;
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            return BlockQ6K::zeroed();
        }

        let iscale = -128.0f32 / max_scale;
        let d = F16Bits::from_f32(1.0 / iscale);
        let mut sc = [0i8; QK_K / 16];
        for (s, &v) in sc.iter_mut().zip(&scales) {
            // C: int8_t = MIN(127, nearest_int(...))
            *s = nearest_int(iscale * v).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let dj = d.to_f32() * sc[j] as f32;
            if dj == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }

        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for h in 0..QK_K / 128 {
            let lb = &l[128 * h..128 * h + 128];
            let qlh = &mut ql[64 * h..64 * h + 64];
            let qhh = &mut qh[32 * h..32 * h + 32];
            for i in 0..32 {
                let q1 = lb[i] as u8 & 0xF;
                let q2 = lb[i + 32] as u8 & 0xF;
                let q3 = lb[i + 64] as u8 & 0xF;
                let q4 = lb[i + 96] as u8 & 0xF;
                qlh[i] = q1 | (q3 << 4);
                qlh[i + 32] = q2 | (q4 << 4);
                qhh[i] = (lb[i] as u8 >> 4)
                    | ((lb[i + 32] as u8 >> 4) << 2)
                    | ((lb[i + 64] as u8 >> 4) << 4)
                    | ((lb[i + 96] as u8 >> 4) << 6);
            }
        }
        BlockQ6K {
            ql,
            qh,
            scales: sc,
            d,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for h in 0..QK_K / 128 {
            let ql = &self.ql[64 * h..64 * h + 64];
            let qh = &self.qh[32 * h..32 * h + 32];
            let sc = &self.scales[8 * h..8 * h + 8];
            let out = &mut y[128 * h..128 * h + 128];
            for i in 0..32 {
                let is = i / 16;
                let q1 = ((ql[i] & 0xF) | ((qh[i] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[i + 32] & 0xF) | (((qh[i] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) as i8 - 32;
                out[i] = d * sc[is] as f32 * q1 as f32;
                out[i + 32] = d * sc[is + 2] as f32 * q2 as f32;
                out[i + 64] = d * sc[is + 4] as f32 * q3 as f32;
                out[i + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
