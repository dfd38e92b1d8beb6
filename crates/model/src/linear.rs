//! Bias-free linear projection stored in Burn's `[d_input, d_output]` layout, with an optional
//! low-rank adapter branch (LoRA).
//!
//! HF and GGUF store `[out, in]`; loaders transpose once when building the module. PEFT stores
//! `lora_A` as `[r, in]` and `lora_B` as `[out, r]`; here they are kept transposed as well
//! (`[in, r]`, `[r, out]`) so the forward is two plain matmuls.

use burn::module::{Param, ParamId};
use burn::nn::Dropout;
use burn::prelude::*;

use crate::frozen_linear::{frozen_linear, FrozenLinearBackend};

/// A LoRA branch `scale · dropout(x) · A · B` added to a frozen projection.
///
/// What the adapter means (rank, alpha, rsLoRA, initialisation, file format) is decided by the
/// trainer that attaches it; the model only knows how to apply and merge it.
#[derive(Module, Debug)]
pub struct LoraBranch<B: Backend> {
    /// `A`, `[d_input, r]` (PEFT's `lora_A.weight` transposed).
    pub lora_a: Param<Tensor<B, 2>>,
    /// `B`, `[r, d_output]` (PEFT's `lora_B.weight` transposed).
    pub lora_b: Param<Tensor<B, 2>>,
    /// Multiplier of the branch (`alpha / r`, or `alpha / sqrt(r)` with rsLoRA).
    pub scale: f64,
    /// Dropout on the branch input only (active only under autodiff).
    pub dropout: Dropout,
}

impl<B: Backend> LoraBranch<B> {
    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[1]
    }

    /// The branch output for flattened rows.
    ///
    /// # Shapes
    /// - x: `[rows, d_input]`
    /// - output: `[rows, d_output]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.dropout
            .forward(x)
            .matmul(self.lora_a.val())
            .matmul(self.lora_b.val())
            .mul_scalar(self.scale)
    }

    /// The dense update `scale · A · B` in Burn layout, `[d_input, d_output]`.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.lora_a
            .val()
            .matmul(self.lora_b.val())
            .mul_scalar(self.scale)
    }
}

/// `y = x · W (+ LoRA)` without bias (all Llama/Mistral projections are bias-free).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// Weight, `[d_input, d_output]` (the transpose of HF's `weight`); `[0, 0]` when the weight
    /// is held outside the module ([`Self::external`]).
    pub weight: Param<Tensor<B, 2>>,
    /// Optional adapter branch.
    pub lora: Option<LoraBranch<B>>,
    /// Input width (kept apart from `weight`, which may be empty).
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

impl<B: Backend> Linear<B> {
    /// Wraps a weight given in Burn layout `[d_input, d_output]`, frozen (as PEFT freezes the
    /// base: no `dW` is ever computed for it; [`Param::from_tensor`] would track it).
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        let [d_in, d_out] = weight.dims();
        Self {
            weight: frozen(weight),
            lora: None,
            d_in,
            d_out,
        }
    }

    /// A `d_in → d_out` projection whose weight lives outside the module (a trainer's 4-bit
    /// copy of a frozen base): the module holds an empty `[0, 0]` weight, so its own
    /// [`Self::forward`] cannot run; the widths stay known for attaching adapters.
    pub fn external(d_in: usize, d_out: usize, device: &B::Device) -> Self {
        Self {
            weight: frozen(Tensor::zeros([0, 0], device)),
            lora: None,
            d_in,
            d_out,
        }
    }

    /// Input width.
    pub fn d_input(&self) -> usize {
        self.d_in
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        self.d_out
    }

    /// The weight with the adapter folded in (`W + scale · A · B`), `[d_input, d_output]`, in
    /// f32 whatever dtype the base is held in (the sum is taken in f32; rounding it back to the
    /// base's dtype, once, is the caller's choice).
    pub fn merged_weight(&self) -> Tensor<B, 2> {
        let w = self.weight.val().cast(burn::tensor::FloatDType::F32);
        match &self.lora {
            Some(lora) => w + lora.delta(),
            None => w,
        }
    }
}

impl<B: FrozenLinearBackend> Linear<B> {
    /// Applies the projection (and the adapter branch, if any) to the last dimension. The base
    /// goes through the backend's frozen-linear op ([`FrozenLinearBackend`]: tb-kernels' GEMM
    /// on the CPU, the weight read in place in f32 or bf16); the adapter branch through
    /// ordinary tensor ops.
    ///
    /// # Shapes
    /// - input: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let rows = x.reshape([b * s, d]);
        let mut y = frozen_linear(rows.clone(), self.weight.val());
        if let Some(lora) = &self.lora {
            y = y + lora.forward(rows);
        }
        let d_out = y.dims()[1];
        y.reshape([b, s, d_out])
    }
}

/// A parameter that requires no gradient: the frozen base weights of the model.
pub fn frozen<B: Backend, const D: usize>(value: Tensor<B, D>) -> Param<Tensor<B, D>> {
    Param::initialized(ParamId::new(), value.set_require_grad(false))
}
