//! Q4_0: 32 values, one fp16 scale, 4-bit codes `q` with `x ≈ d·(q − 8)`.
//!
//! Port of `quantize_row_q4_0_ref` / `dequantize_row_q4_0` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::fp::{c_float_to_int, F16Bits};
use super::BlockCodec;
use crate::types::GgmlType;

/// Elements per Q4_0 block.
pub const QK4_0: usize = 32;

/// `block_q4_0`: `d`, then 16 bytes holding element `j` in the low nibble of `qs[j]` and element
/// `j+16` in the high nibble.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: F16Bits,
    /// Packed nibbles.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockCodec for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLOCK_SIZE: usize = QK4_0;

    fn quantize_block(x: &[f32]) -> Self {
        // the signed value with the largest magnitude; the first one wins a tie
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[..QK4_0] {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        // the inverse comes from the f32 scale, not the rounded fp16 one
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; QK4_0 / 2];
        for (j, q) in qs.iter_mut().enumerate() {
            let x0 = x[j] * id;
            let x1 = x[QK4_0 / 2 + j] * id;
            // C: MIN(15, (int8_t)(x + 8.5f)): truncation toward zero, then the low byte
            let xi0 = (c_float_to_int(x0 + 8.5) as i8).min(15) as u8;
            let xi1 = (c_float_to_int(x1 + 8.5) as i8).min(15) as u8;
            *q = xi0 | (xi1 << 4);
        }
        BlockQ4_0 {
            d: F16Bits::from_f32(d),
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (j, &q) in self.qs.iter().enumerate() {
            let x0 = (q & 0x0F) as i32 - 8;
            let x1 = (q >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + QK4_0 / 2] = x1 as f32 * d;
        }
    }
}
