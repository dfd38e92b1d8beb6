//! [`FusedBackend`] for Flex: Rust kernels over the tensors' contiguous f32 data, parallel with
//! rayon. Other float dtypes (f16, bf16) are converted to f32 on the way in and the outputs are
//! converted back to the dtype of the op's main input.

mod attention;
mod attention_blocks;
mod cross_entropy;
mod packed_matmul;
mod rms_norm;
mod rope;
mod strided_gemm;
mod swiglu;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData, TensorMetadata};

use crate::backend::{AttentionSaved, FusedBackend};
use crate::packed_base::PackedWeight;

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

/// Converts a kernel's f32 output back to `dtype`.
fn restore(t: FlexTensor, dtype: DType) -> FlexTensor {
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::from(dtype))
    }
}

impl FusedBackend for Flex {
    fn rms_norm_fwd(x: FlexTensor, weight: FlexTensor, eps: f32) -> (FlexTensor, FlexTensor) {
        let dt = x.dtype();
        let (y, inv_rms) = rms_norm::forward(x, weight, eps);
        (restore(y, dt), restore(inv_rms, dt))
    }

    fn rms_norm_bwd(
        dy: FlexTensor,
        x: FlexTensor,
        weight: FlexTensor,
        inv_rms: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (dt, wdt) = (x.dtype(), weight.dtype());
        let (dx, dw) = rms_norm::backward(dy, x, weight, inv_rms);
        (restore(dx, dt), restore(dw, wdt))
    }

    fn rope_fwd(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
        let dt = x.dtype();
        restore(rope::forward(x, cos, sin, inverse), dt)
    }

    fn swiglu_fwd(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let dt = gate.dtype();
        restore(swiglu::forward(gate, up), dt)
    }

    fn swiglu_bwd(dh: FlexTensor, gate: FlexTensor, up: FlexTensor) -> (FlexTensor, FlexTensor) {
        let dt = gate.dtype();
        let (dg, du) = swiglu::backward(dh, gate, up);
        (restore(dg, dt), restore(du, dt))
    }

    fn cross_entropy_fwd(logits: FlexTensor, targets: FlexTensor) -> (FlexTensor, FlexTensor) {
        let dt = logits.dtype();
        let (lse, nll) = cross_entropy::forward(logits, targets);
        (restore(lse, dt), restore(nll, dt))
    }

    fn cross_entropy_bwd(
        logits: FlexTensor,
        lse: FlexTensor,
        targets: FlexTensor,
        scale: FlexTensor,
    ) -> FlexTensor {
        let dt = logits.dtype();
        restore(cross_entropy::backward(logits, lse, targets, scale), dt)
    }

    fn packed_linear_fwd(x: FlexTensor, w: &PackedWeight) -> FlexTensor {
        let dt = x.dtype();
        let x = F32View::new(x);
        let [tokens, _] = x.dims::<2>();
        let y = packed_matmul::forward(x.slice(), tokens, w);
        restore(output(y, [tokens, w.d_out()]), dt)
    }

    fn packed_linear_bwd(dy: FlexTensor, w: &PackedWeight) -> FlexTensor {
        let dt = dy.dtype();
        let dy = F32View::new(dy);
        let [tokens, _] = dy.dims::<2>();
        let dx = packed_matmul::backward(dy.slice(), tokens, w);
        restore(output(dx, [tokens, w.d_in()]), dt)
    }

    fn attention_fwd(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        segments: FlexTensor,
        scale: f32,
    ) -> (FlexTensor, FlexTensor) {
        let dt = q.dtype();
        let (out, lse) = attention::forward(q, k, v, segments, scale);
        (restore(out, dt), restore(lse, dt))
    }

    fn attention_bwd(
        dout: FlexTensor,
        saved: AttentionSaved<Self>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dt = saved.q.dtype();
        let (dq, dk, dv) = attention::backward(dout, saved);
        (restore(dq, dt), restore(dk, dt), restore(dv, dt))
    }
}
