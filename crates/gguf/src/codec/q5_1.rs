//! Q5_1: 32 values, fp16 scale and minimum, 5-bit codes with `x ≈ d·q + m`.
//!
//! Port of `quantize_row_q5_1_ref` / `dequantize_row_q5_1` (ggml `src/ggml-quants.c`); the
//! fallback llama-quantize uses for Q5_K when rows are not a multiple of 256.

use bytemuck::{Pod, Zeroable};

use super::fp::{c_float_to_int, F16Bits};
use super::BlockCodec;
use crate::types::GgmlType;

/// Elements per Q5_1 block.
pub const QK5_1: usize = 32;

/// `block_q5_1`: `d`, `m`, `qh[4]`, `qs[16]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: F16Bits,
    /// Minimum.
    pub m: F16Bits,
    /// Fifth bits, little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl BlockCodec for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLOCK_SIZE: usize = QK5_1;

    fn quantize_block(x: &[f32]) -> Self {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in &x[..QK5_1] {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qh = 0u32;
        let mut qs = [0u8; QK5_1 / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK5_1 / 2 + j] - min) * id;
            // C: (uint8_t)(x + 0.5f)
            let xi0 = c_float_to_int(x0 + 0.5) as u8;
            let xi1 = c_float_to_int(x1 + 0.5) as u8;
            *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) as u32) >> 4) << j;
            qh |= (((xi1 & 0x10) as u32) >> 4) << (j + QK5_1 / 2);
        }
        BlockQ5_1 {
            d: F16Bits::from_f32(d),
            m: F16Bits::from_f32(min),
            qh: qh.to_le_bytes(),
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = (q & 0x0F) as i32 | xh0;
            let x1 = (q >> 4) as i32 | xh1;
            y[j] = x0 as f32 * d + m;
            y[j + QK5_1 / 2] = x1 as f32 * d + m;
        }
    }
}
