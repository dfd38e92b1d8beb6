//! The PEFT-style trainer: LoRA branches on a frozen base, loss and gradients through Burn's
//! ordinary autodiff, padded batches (one example per row, padded to the longest in the
//! micro-batch) with completion-only loss.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tb_data::{padded_batch, Batch, TokenizedExample};
use tb_model::{CausalLm, CrossEntropyBackend, ForwardOptions, MaskBuilder, ModelBackend};
use tb_train::{cross_entropy_sum, MicroStep, NamedTensor, Trainer};

use tb_train::lora::{adapter_grads, adapter_tensors, set_adapter_tensors};

/// A model with LoRA branches, trained through autodiff.
pub struct PeftTrainer<B: AutodiffBackend> {
    /// The model (base frozen, adapters trainable).
    pub model: CausalLm<B>,
    /// Token id used for padding (never attended to, never a target).
    pub pad_id: u32,
    /// Where the model and batches live (the CPU for Flex, a GPU for wgpu/CUDA).
    pub device: B::Device,
    /// Backend name for reports.
    pub backend_name: String,
}

/// Builds positions and the block-diagonal causal mask of a batch.
pub fn batch_options<B: Backend>(
    batch: &Batch,
    sliding_window: Option<usize>,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, ForwardOptions<B>) {
    let (rows, seq) = (batch.rows, batch.seq_len);
    let ids: Vec<i64> = batch.input_ids.iter().map(|&t| i64::from(t)).collect();
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [rows * seq]), device)
        .reshape([rows, seq]);
    let pos: Vec<i64> = batch.positions.iter().map(|&p| i64::from(p)).collect();
    let positions = Tensor::<B, 1, Int>::from_data(TensorData::new(pos, [rows * seq]), device)
        .reshape([rows, seq]);
    let mask = MaskBuilder::packed(&batch.segments, sliding_window, device);
    (ids, ForwardOptions { positions, mask })
}

impl<B> PeftTrainer<B>
where
    B: AutodiffBackend + ModelBackend + CrossEntropyBackend,
    B::InnerBackend: ModelBackend + CrossEntropyBackend,
{
    /// The adapted modules in model order.
    pub fn modules(&self) -> Vec<String> {
        self.model
            .projections()
            .into_iter()
            .filter(|(_, l)| l.lora.is_some())
            .map(|(n, _)| n)
            .collect()
    }

    /// Loss of a batch on the tracked model, summed over loss tokens.
    ///
    /// # Shapes
    /// - output: `[1]`
    pub fn loss_tensor(&self, batch: &Batch) -> Tensor<B, 1> {
        let (ids, options) = batch_options::<B>(batch, self.model.sliding_window, &self.device);
        let logits = self.model.forward_with(ids, &options, None);
        cross_entropy_sum(logits, &batch.targets)
    }
}

impl<B> Trainer for PeftTrainer<B>
where
    B: AutodiffBackend + ModelBackend + CrossEntropyBackend,
    B::InnerBackend: ModelBackend + CrossEntropyBackend,
{
    fn method(&self) -> &'static str {
        "peft"
    }

    fn backend(&self) -> String {
        self.backend_name.clone()
    }

    fn trainable(&self) -> Vec<NamedTensor> {
        adapter_tensors(&self.model)
    }

    fn set_trainable(&mut self, values: &[NamedTensor]) -> tb_train::Result<()> {
        set_adapter_tensors(&mut self.model, values, &self.device)
    }

    fn batches(&self, examples: &[&TokenizedExample], micro_batch: usize) -> Vec<Batch> {
        examples
            .chunks(micro_batch.max(1))
            .map(|chunk| padded_batch(chunk, self.pad_id))
            .collect()
    }

    fn micro_step(
        &mut self,
        batch: &Batch,
        loss_scale: f32,
        seed: u64,
    ) -> tb_train::Result<MicroStep> {
        B::seed(&self.device, seed);
        let loss = self.loss_tensor(batch);
        let loss_sum = f64::from(loss.clone().into_scalar().elem::<f32>());
        let grads = loss.mul_scalar(loss_scale).backward();
        Ok(MicroStep {
            loss_sum,
            grads: adapter_grads(&self.model, &grads),
        })
    }

    fn eval_loss_sum(&mut self, batch: &Batch) -> tb_train::Result<f64> {
        let inner = self.model.valid();
        let (ids, options) =
            batch_options::<B::InnerBackend>(batch, inner.sliding_window, &self.device);
        let logits = inner.forward_with(ids, &options, None);
        let loss = cross_entropy_sum(logits, &batch.targets);
        Ok(f64::from(loss.into_scalar().elem::<f32>()))
    }
}
