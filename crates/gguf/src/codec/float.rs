//! Plain float "blocks" of one element: F32, F16 (IEEE half) and BF16.
//!
//! F16 uses `ggml_fp32_to_fp16_row` rounding and BF16 `ggml_fp32_to_bf16_row_ref`, which is
//! what `ggml_quantize_chunk` calls for these types.

use bytemuck::{Pod, Zeroable};

use super::fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use super::BlockCodec;
use crate::types::GgmlType;

/// One little-endian f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockF32 {
    /// The value's little-endian bytes.
    pub v: [u8; 4],
}
const _: () = assert!(std::mem::size_of::<BlockF32>() == 4);

/// One IEEE half.
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockF16 {
    /// The half's little-endian bytes.
    pub v: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockF16>() == 2);

/// One bfloat16 (the upper 16 bits of an f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockBF16 {
    /// The bf16's little-endian bytes.
    pub v: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockBF16>() == 2);

impl BlockCodec for BlockF32 {
    const TYPE: GgmlType = GgmlType::F32;
    const BLOCK_SIZE: usize = 1;

    fn quantize_block(x: &[f32]) -> Self {
        BlockF32 {
            v: x[0].to_le_bytes(),
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        y[0] = f32::from_le_bytes(self.v);
    }
}

impl BlockCodec for BlockF16 {
    const TYPE: GgmlType = GgmlType::F16;
    const BLOCK_SIZE: usize = 1;

    fn quantize_block(x: &[f32]) -> Self {
        BlockF16 {
            v: f32_to_f16(x[0]).to_le_bytes(),
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        y[0] = f16_to_f32(u16::from_le_bytes(self.v));
    }
}

impl BlockCodec for BlockBF16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const BLOCK_SIZE: usize = 1;

    fn quantize_block(x: &[f32]) -> Self {
        BlockBF16 {
            v: f32_to_bf16(x[0]).to_le_bytes(),
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        y[0] = bf16_to_f32(u16::from_le_bytes(self.v));
    }
}
