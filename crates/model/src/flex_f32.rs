//! Flex tensors as contiguous f32 for CPU kernels (tb-model's cross-entropy, softmax, SiLU and
//! frozen-linear ops, tb-unsloth's fused ops): other float dtypes are computed in f32 and
//! returned in their own dtype.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, Shape, TensorData};

/// The tensor as contiguous f32.
pub fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    t.to_contiguous()
}

/// The values of a contiguous f32 tensor.
pub fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("invariant: made contiguous f32 by contiguous_f32")
}

/// Row-major f32 values as a Flex tensor of `dtype`.
pub fn restore(values: Vec<f32>, shape: impl Into<Shape>, dtype: DType) -> FlexTensor {
    into_dtype(
        FlexTensor::from_data(TensorData::new(values, shape.into())),
        dtype,
    )
}

/// An f32 tensor in `dtype` (itself when that is f32).
pub fn into_dtype(t: FlexTensor, dtype: DType) -> FlexTensor {
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::from(dtype))
    }
}

/// Integer tensor values as `i64`.
pub fn ints(t: FlexTensor) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("invariant: converted to i64")
}
