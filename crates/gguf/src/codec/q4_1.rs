//! Q4_1: 32 values, fp16 scale and minimum, 4-bit codes with `x ≈ d·q + m`.
//!
//! Port of `quantize_row_q4_1_ref` / `dequantize_row_q4_1` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::fp::{c_float_to_int, F16Bits};
use super::BlockCodec;
use crate::types::GgmlType;

/// Elements per Q4_1 block.
pub const QK4_1: usize = 32;

/// `block_q4_1`: `d`, `m`, then nibbles packed as in Q4_0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16Bits,
    /// Minimum.
    pub m: F16Bits,
    /// Packed nibbles.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

impl BlockCodec for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLOCK_SIZE: usize = QK4_1;

    fn quantize_block(x: &[f32]) -> Self {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in &x[..QK4_1] {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK4_1 / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK4_1 / 2 + j] - min) * id;
            let xi0 = (c_float_to_int(x0 + 0.5) as i8).min(15) as u8;
            let xi1 = (c_float_to_int(x1 + 0.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        BlockQ4_1 {
            d: F16Bits::from_f32(d),
            m: F16Bits::from_f32(min),
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let m = self.m.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = (q & 0x0F) as f32 * d + m;
            y[j + QK4_1 / 2] = (q >> 4) as f32 * d + m;
        }
    }
}
