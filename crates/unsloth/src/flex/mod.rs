//! [`FusedBackend`] for Flex: Rust kernels over the tensors' contiguous f32 data, parallel with
//! rayon. Other float dtypes (f16, bf16) are converted to f32 on the way in and the outputs are
//! converted back to the dtype of the op's main input.

mod attention;
mod attention_blocks;
mod lora;
mod packed_matmul;
mod rms_norm;
mod rope;
mod strided_gemm;
mod swiglu;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{TensorData, TensorMetadata};

use tb_model::flex_f32::{self, into_dtype};

use crate::backend::{AttentionSaved, FusedBackend, LoraGrads, LoraWeights, Precision};
use crate::packed_base::PackedWeight;

/// A contiguous f32 copy (or view) of a Flex tensor.
pub(crate) struct F32View(FlexTensor);

impl F32View {
    pub(crate) fn new(t: FlexTensor) -> Self {
        Self(flex_f32::contiguous_f32(t))
    }

    /// The values in row-major order.
    pub(crate) fn slice(&self) -> &[f32] {
        flex_f32::f32s(&self.0)
    }

    /// The dimensions, which must have rank `D`.
    pub(crate) fn dims<const D: usize>(&self) -> [usize; D] {
        self.0.shape().dims()
    }
}

/// Wraps row-major f32 values as a Flex tensor.
pub(crate) fn output<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl FusedBackend for Flex {
    fn rms_norm_fwd(x: FlexTensor, weight: FlexTensor, eps: f32) -> (FlexTensor, FlexTensor) {
        let dt = x.dtype();
        let (y, inv_rms) = rms_norm::forward(x, weight, eps);
        (into_dtype(y, dt), into_dtype(inv_rms, dt))
    }

    fn rms_norm_bwd(
        dy: FlexTensor,
        x: FlexTensor,
        weight: FlexTensor,
        inv_rms: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let (dt, wdt) = (x.dtype(), weight.dtype());
        let (dx, dw) = rms_norm::backward(dy, x, weight, inv_rms);
        (into_dtype(dx, dt), into_dtype(dw, wdt))
    }

    fn rope_fwd(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, inverse: bool) -> FlexTensor {
        let dt = x.dtype();
        into_dtype(rope::forward(x, cos, sin, inverse), dt)
    }

    fn qkv_heads_rope(
        qkv: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
        dims: [usize; 3],
    ) -> [FlexTensor; 3] {
        let dt = qkv.dtype();
        rope::qkv_heads(qkv, cos, sin, dims).map(|t| into_dtype(t, dt))
    }

    fn qkv_heads_rope_bwd(
        dq: FlexTensor,
        dk: FlexTensor,
        dv: FlexTensor,
        cos: FlexTensor,
        sin: FlexTensor,
    ) -> FlexTensor {
        let dt = dq.dtype();
        into_dtype(rope::qkv_heads_bwd(dq, dk, dv, cos, sin), dt)
    }

    fn swiglu_fwd(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let dt = gate.dtype();
        into_dtype(swiglu::forward(gate, up), dt)
    }

    fn swiglu_bwd(dh: FlexTensor, gate: FlexTensor, up: FlexTensor) -> (FlexTensor, FlexTensor) {
        let dt = gate.dtype();
        let (dg, du) = swiglu::backward(dh, gate, up);
        (into_dtype(dg, dt), into_dtype(du, dt))
    }

    fn lora_linear_fwd(x: FlexTensor, lora: &LoraWeights<FlexTensor>) -> (FlexTensor, FlexTensor) {
        match lora::bf16_base(lora) {
            Some(w) => lora::forward(x, lora, w),
            None => crate::ops::lora_linear::forward_kernel::<Self>(x, lora),
        }
    }

    fn lora_linear_bwd(
        dy: FlexTensor,
        x: FlexTensor,
        xa: FlexTensor,
        lora: &LoraWeights<FlexTensor>,
        want_dw: bool,
    ) -> (FlexTensor, LoraGrads<FlexTensor>) {
        match (want_dw, lora::bf16_base(lora)) {
            (false, Some(w)) => lora::backward(dy, x, xa, lora, w),
            _ => crate::ops::lora_linear::backward_kernel::<Self>(dy, x, xa, lora, want_dw),
        }
    }

    fn packed_linear_fwd(x: FlexTensor, w: &PackedWeight) -> FlexTensor {
        let dt = x.dtype();
        let x = F32View::new(x);
        let [tokens, _] = x.dims::<2>();
        let y = packed_matmul::forward(x.slice(), tokens, w);
        into_dtype(output(y, [tokens, w.d_out()]), dt)
    }

    fn packed_linear_bwd(dy: FlexTensor, w: &PackedWeight) -> FlexTensor {
        let dt = dy.dtype();
        let dy = F32View::new(dy);
        let [tokens, _] = dy.dims::<2>();
        let dx = packed_matmul::backward(dy.slice(), tokens, w);
        into_dtype(output(dx, [tokens, w.d_in()]), dt)
    }

    fn attention_fwd(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        segments: FlexTensor,
        scale: f32,
        precision: Precision,
    ) -> (FlexTensor, FlexTensor) {
        let dt = q.dtype();
        let (out, lse) = attention::forward(q, k, v, segments, scale, precision);
        (into_dtype(out, dt), into_dtype(lse, dt))
    }

    fn attention_bwd(
        dout: FlexTensor,
        saved: AttentionSaved<Self>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dt = saved.q.dtype();
        let (dq, dk, dv) = attention::backward(dout, saved);
        (into_dtype(dq, dt), into_dtype(dk, dt), into_dtype(dv, dt))
    }
}
