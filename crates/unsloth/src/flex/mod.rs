//! [`FusedBackend`] for Flex: Rust kernels over the tensors' contiguous f32 data, parallel with
//! rayon. Other float dtypes are converted to f32 on the way in; outputs are f32.

mod attention;
mod cross_entropy;
mod rms_norm;
mod rope;
mod swiglu;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData, TensorMetadata};

use crate::backend::{AttentionSaved, FusedBackend};

/// A contiguous f32 copy (or view) of a Flex tensor.
pub(crate) struct F32View(FlexTensor);

impl F32View {
    pub(crate) fn new(t: FlexTensor) -> Self {
        let t = if t.dtype() == DType::F32 {
            t
        } else {
            Flex::float_cast(t, FloatDType::F32)
        };
        Self(t.to_contiguous())
    }

    /// The values in row-major order.
    pub(crate) fn slice(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .expect("invariant: F32View holds a contiguous f32 tensor")
    }

    /// The dimensions, which must have rank `D`.
    pub(crate) fn dims<const D: usize>(&self) -> [usize; D] {
        self.0.shape().dims()
    }
}

/// Integer tensor values as `i64`.
pub(crate) fn ints(t: FlexTensor) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("invariant: converted to i64")
}

/// Wraps row-major f32 values as a Flex tensor.
pub(crate) fn output<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl FusedBackend for Flex {
    fn rms_norm_fwd(x: FlexTensor, weight: FlexTensor, eps: f32) -> (FlexTensor, FlexTensor) {
        rms_norm::forward(x, weight, eps)
    }

    fn rms_norm_bwd(
        dy: FlexTensor,
        x: FlexTensor,
        weight: FlexTensor,
        inv_rms: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        rms_norm::backward(dy, x, weight, inv_rms)
    }

    fn rope_fwd(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
        rope::forward(x, cos, sin, inverse)
    }

    fn swiglu_fwd(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu::forward(gate, up)
    }

    fn swiglu_bwd(dh: FlexTensor, gate: FlexTensor, up: FlexTensor) -> (FlexTensor, FlexTensor) {
        swiglu::backward(dh, gate, up)
    }

    fn cross_entropy_fwd(logits: FlexTensor, targets: FlexTensor) -> (FlexTensor, FlexTensor) {
        cross_entropy::forward(logits, targets)
    }

    fn cross_entropy_bwd(
        logits: FlexTensor,
        lse: FlexTensor,
        targets: FlexTensor,
        scale: FlexTensor,
    ) -> FlexTensor {
        cross_entropy::backward(logits, lse, targets, scale)
    }

    fn attention_fwd(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        segments: FlexTensor,
        scale: f32,
    ) -> (FlexTensor, FlexTensor) {
        attention::forward(q, k, v, segments, scale)
    }

    fn attention_bwd(
        dout: FlexTensor,
        saved: AttentionSaved<Self>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        attention::backward(dout, saved)
    }
}
