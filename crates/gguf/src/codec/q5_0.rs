//! Q5_0: 32 values, one fp16 scale, 5-bit codes with `x ≈ d·(q − 16)`.
//!
//! Port of `quantize_row_q5_0_ref` / `dequantize_row_q5_0` (ggml `src/ggml-quants.c`). The
//! low 4 bits are packed as in Q4_0; bit `j` of the little-endian u32 `qh` is the fifth bit of
//! element `j`. llama-quantize falls back to Q5_0 when a Q4_K tensor's rows are not a
//! multiple of 256.

use bytemuck::{Pod, Zeroable};

use super::fp::{c_float_to_int, F16Bits};
use super::BlockCodec;
use crate::types::GgmlType;

/// Elements per Q5_0 block.
pub const QK5_0: usize = 32;

/// `block_q5_0`: `d`, `qh[4]` (fifth bits), `qs[16]` (low nibbles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: F16Bits,
    /// Fifth bits, little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

impl BlockCodec for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const BLOCK_SIZE: usize = QK5_0;

    fn quantize_block(x: &[f32]) -> Self {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[..QK5_0] {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qh = 0u32;
        let mut qs = [0u8; QK5_0 / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[QK5_0 / 2 + j] * id;
            let xi0 = (c_float_to_int(x0 + 16.5) as i8).min(31) as u8;
            let xi1 = (c_float_to_int(x1 + 16.5) as i8).min(31) as u8;
            *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) as u32) >> 4) << j;
            qh |= (((xi1 & 0x10) as u32) >> 4) << (j + QK5_0 / 2);
        }
        BlockQ5_0 {
            d: F16Bits::from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        for (j, &q) in self.qs.iter().enumerate() {
            let xh0 = (((qh >> j) << 4) & 0x10) as i32;
            let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
            let x0 = ((q & 0x0F) as i32 | xh0) - 16;
            let x1 = ((q >> 4) as i32 | xh1) - 16;
            y[j] = x0 as f32 * d;
            y[j + QK5_0 / 2] = x1 as f32 * d;
        }
    }
}
