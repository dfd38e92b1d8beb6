//! ggml tensor types and llama.cpp file types.
//!
//! Ids follow `enum ggml_type` in ggml `include/ggml.h`; block sizes and bytes per block follow
//! `ggml-common.h` (mirrored by gguf-py `GGML_QUANT_SIZES`).

use std::fmt;

/// A ggml tensor element type, with its on-disk id.
///
/// Every type ggml defines is listed, so a reader can describe any file; only some of them have
/// codecs in this crate (see [`GgmlType::has_codec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
#[expect(non_camel_case_types, reason = "ggml's own type names (Q4_K, ...)")]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE float.
    F16 = 1,
    /// 4-bit, 32-element blocks, one fp16 scale.
    Q4_0 = 2,
    /// 4-bit, 32-element blocks, fp16 scale and minimum.
    Q4_1 = 3,
    /// 5-bit, 32-element blocks, one fp16 scale.
    Q5_0 = 6,
    /// 5-bit, 32-element blocks, fp16 scale and minimum.
    Q5_1 = 7,
    /// 8-bit, 32-element blocks, one fp16 scale.
    Q8_0 = 8,
    /// 8-bit, 32-element blocks with a sum (activation type).
    Q8_1 = 9,
    /// 2-bit k-quant.
    Q2_K = 10,
    /// 3-bit k-quant.
    Q3_K = 11,
    /// 4-bit k-quant, 256-element super-blocks of eight 32-element sub-blocks.
    Q4_K = 12,
    /// 5-bit k-quant.
    Q5_K = 13,
    /// 6-bit k-quant, sixteen 16-element sub-blocks.
    Q6_K = 14,
    /// 8-bit k-quant (activation type).
    Q8_K = 15,
    /// i-quant.
    IQ2_XXS = 16,
    /// i-quant.
    IQ2_XS = 17,
    /// i-quant.
    IQ3_XXS = 18,
    /// i-quant.
    IQ1_S = 19,
    /// i-quant.
    IQ4_NL = 20,
    /// i-quant.
    IQ3_S = 21,
    /// i-quant.
    IQ2_S = 22,
    /// i-quant.
    IQ4_XS = 23,
    /// 8-bit integer.
    I8 = 24,
    /// 16-bit integer.
    I16 = 25,
    /// 32-bit integer.
    I32 = 26,
    /// 64-bit integer.
    I64 = 27,
    /// 64-bit float.
    F64 = 28,
    /// i-quant.
    IQ1_M = 29,
    /// bfloat16 (upper half of an f32).
    BF16 = 30,
    /// ternary quant.
    TQ1_0 = 34,
    /// ternary quant.
    TQ2_0 = 35,
    /// OCP microscaling FP4.
    MXFP4 = 39,
    /// NVIDIA FP4.
    NVFP4 = 40,
    /// 1-bit.
    Q1_0 = 41,
    /// 2-bit.
    Q2_0 = 42,
}

/// `QK_K`: elements per k-quant super-block.
pub const QK_K: usize = 256;

impl GgmlType {
    /// All types, in id order.
    pub const ALL: [GgmlType; 35] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q8_1,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::Q8_K,
        Self::IQ2_XXS,
        Self::IQ2_XS,
        Self::IQ3_XXS,
        Self::IQ1_S,
        Self::IQ4_NL,
        Self::IQ3_S,
        Self::IQ2_S,
        Self::IQ4_XS,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F64,
        Self::IQ1_M,
        Self::BF16,
        Self::TQ1_0,
        Self::TQ2_0,
        Self::MXFP4,
        Self::NVFP4,
        Self::Q1_0,
        Self::Q2_0,
    ];

    /// The type with on-disk id `id`, or `None` for unknown or removed ids (4, 5, 31–33, 36–38, ≥ 43).
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.id() == id)
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's lower-case name (`"q4_K"`, `"f16"`, ...), as `ggml_type_name`.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q8_1 => "q8_1",
            Q2_K => "q2_K",
            Q3_K => "q3_K",
            Q4_K => "q4_K",
            Q5_K => "q5_K",
            Q6_K => "q6_K",
            Q8_K => "q8_K",
            IQ2_XXS => "iq2_xxs",
            IQ2_XS => "iq2_xs",
            IQ3_XXS => "iq3_xxs",
            IQ1_S => "iq1_s",
            IQ4_NL => "iq4_nl",
            IQ3_S => "iq3_s",
            IQ2_S => "iq2_s",
            IQ4_XS => "iq4_xs",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            F64 => "f64",
            IQ1_M => "iq1_m",
            BF16 => "bf16",
            TQ1_0 => "tq1_0",
            TQ2_0 => "tq2_0",
            MXFP4 => "mxfp4",
            NVFP4 => "nvfp4",
            Q1_0 => "q1_0",
            Q2_0 => "q2_0",
        }
    }

    /// Elements per block (1 for plain scalar types).
    pub fn block_size(self) -> usize {
        self.layout().0
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.layout().1
    }

    fn layout(self) -> (usize, usize) {
        use GgmlType::*;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (QK_K, 84),
            Q3_K => (QK_K, 110),
            Q4_K => (QK_K, 144),
            Q5_K => (QK_K, 176),
            Q6_K => (QK_K, 210),
            Q8_K => (QK_K, 292),
            IQ2_XXS => (QK_K, 66),
            IQ2_XS => (QK_K, 74),
            IQ3_XXS => (QK_K, 98),
            IQ1_S => (QK_K, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (QK_K, 110),
            IQ2_S => (QK_K, 82),
            IQ4_XS => (QK_K, 136),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            IQ1_M => (QK_K, 56),
            BF16 => (1, 2),
            TQ1_0 => (QK_K, 54),
            TQ2_0 => (QK_K, 66),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
            Q2_0 => (64, 18),
        }
    }

    /// Whether this is a block-quantized type (as `ggml_is_quantized`).
    pub fn is_quantized(self) -> bool {
        use GgmlType::*;
        !matches!(self, F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64)
    }

    /// Whether this crate can quantize to and dequantize from this type.
    pub fn has_codec(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Bytes of one row of `ne0` elements, or `None` if `ne0` is not a multiple of the block
    /// size or the size overflows.
    pub fn row_size(self, ne0: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !ne0.is_multiple_of(bs) {
            return None;
        }
        (ne0 / bs).checked_mul(self.type_size() as u64)
    }

    /// Bytes of a tensor with dims `ne` (ggml order), or `None` on a bad row length or overflow.
    pub fn tensor_size(self, ne: &[u64]) -> Option<u64> {
        let (first, rest) = match ne.split_first() {
            Some(s) => s,
            None => return Some(self.type_size() as u64),
        };
        let mut size = self.row_size(*first)?;
        for &d in rest {
            size = size.checked_mul(d)?;
        }
        Some(size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// llama.cpp's `llama_ftype` (stored as `general.file_type`, u32). Not the same numbering as
/// ggml's `GGML_FTYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[expect(non_camel_case_types, reason = "ggml's own type names (Q4_K, ...)")]
pub enum LlamaFileType {
    /// All tensors F32.
    AllF32 = 0,
    /// Mostly F16.
    MostlyF16 = 1,
    /// Mostly Q4_0.
    MostlyQ4_0 = 2,
    /// Mostly Q4_1.
    MostlyQ4_1 = 3,
    /// Mostly Q8_0.
    MostlyQ8_0 = 7,
    /// Mostly Q5_0.
    MostlyQ5_0 = 8,
    /// Mostly Q5_1.
    MostlyQ5_1 = 9,
    /// Q4_K_S mix.
    MostlyQ4_K_S = 14,
    /// Q4_K_M mix.
    MostlyQ4_K_M = 15,
    /// Q5_K_S mix.
    MostlyQ5_K_S = 16,
    /// Q5_K_M mix.
    MostlyQ5_K_M = 17,
    /// Q6_K.
    MostlyQ6_K = 18,
    /// Mostly BF16.
    MostlyBF16 = 32,
}

impl LlamaFileType {
    /// The u32 stored in `general.file_type`.
    pub fn id(self) -> u32 {
        self as u32
    }
}
