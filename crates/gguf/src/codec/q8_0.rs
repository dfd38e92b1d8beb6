//! Q8_0: 32 values, one fp16 scale, int8 codes with `x ≈ d·q`.
//!
//! Port of `quantize_row_q8_0_ref` / `dequantize_row_q8_0` (ggml `src/ggml-quants.c`).

use bytemuck::{Pod, Zeroable};

use super::fp::{c_float_to_int, F16Bits};
use super::BlockCodec;
use crate::types::GgmlType;

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;

/// `block_q8_0`: `d`, then 32 signed bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16Bits,
    /// Codes.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockCodec for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLOCK_SIZE: usize = QK8_0;

    fn quantize_block(x: &[f32]) -> Self {
        let mut amax = 0.0f32;
        for &v in &x[..QK8_0] {
            // C: MAX(amax, fabsf(v)) = (amax > |v|) ? amax : |v|
            let a = v.abs();
            amax = if amax > a { amax } else { a };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK8_0];
        for (q, &v) in qs.iter_mut().zip(&x[..QK8_0]) {
            // roundf: half away from zero
            *q = c_float_to_int((v * id).round()) as i8;
        }
        BlockQ8_0 {
            d: F16Bits::from_f32(d),
            qs,
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&self.qs) {
            *y = q as f32 * d;
        }
    }
}
