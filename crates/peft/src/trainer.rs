//! The PEFT-style trainer: LoRA branches on a frozen base, loss and gradients through Burn's
//! ordinary autodiff, padded batches (one example per row, padded to the longest in the
//! micro-batch) with completion-only loss.

use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tb_data::{padded_batch, Batch, TokenizedExample};
use tb_model::{CausalLm, ForwardOptions, MaskBuilder};
use tb_train::{cross_entropy_sum, MicroStep, NamedTensor, Trainer};

use tb_train::lora::{adapter_tensors, peft_key, transpose};

/// A model with LoRA branches, trained through autodiff.
pub struct PeftTrainer<B: AutodiffBackend> {
    /// The model (base frozen, adapters trainable).
    pub model: CausalLm<B>,
    /// Token id used for padding (never attended to, never a target).
    pub pad_id: u32,
    /// Device.
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

fn host_values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

impl<B: AutodiffBackend> PeftTrainer<B> {
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

impl<B: AutodiffBackend> Trainer for PeftTrainer<B> {
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
        let mut it = values.iter();
        let device = self.device.clone();
        for (name, lin) in self.model.projections_mut() {
            let (d_in, d_out) = (lin.d_input(), lin.d_output());
            let Some(lora) = lin.lora.as_mut() else {
                continue;
            };
            let r = lora.rank();
            let (a, b) = match (it.next(), it.next()) {
                (Some(a), Some(b))
                    if a.name == peft_key(&name, 'A') && b.name == peft_key(&name, 'B') =>
                {
                    (a, b)
                }
                _ => {
                    return Err(tb_train::Error::Method(format!(
                        "trainable tensors out of order at `{name}`"
                    )))
                }
            };
            if a.data.len() != r * d_in || b.data.len() != d_out * r {
                return Err(tb_train::Error::Method(format!(
                    "`{name}`: got {} and {} values for A [{r}, {d_in}] and B [{d_out}, {r}]",
                    a.data.len(),
                    b.data.len()
                )));
            }
            let ta = Tensor::<B, 2>::from_data(
                TensorData::new(transpose(&a.data, r, d_in), [d_in, r]),
                &device,
            );
            let tb = Tensor::<B, 2>::from_data(
                TensorData::new(transpose(&b.data, d_out, r), [r, d_out]),
                &device,
            );
            lora.lora_a = Param::from_tensor(ta);
            lora.lora_b = Param::from_tensor(tb);
        }
        Ok(())
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
        let mut out = Vec::new();
        for (name, lin) in self.model.projections() {
            let Some(lora) = &lin.lora else { continue };
            let (d_in, d_out, r) = (lin.d_input(), lin.d_output(), lora.rank());
            let ga = lora
                .lora_a
                .grad(&grads)
                .map(host_values)
                .unwrap_or_else(|| vec![0.0; d_in * r]);
            let gb = lora
                .lora_b
                .grad(&grads)
                .map(host_values)
                .unwrap_or_else(|| vec![0.0; r * d_out]);
            out.push(NamedTensor {
                name: peft_key(&name, 'A'),
                shape: vec![r, d_in],
                data: transpose(&ga, d_in, r),
            });
            out.push(NamedTensor {
                name: peft_key(&name, 'B'),
                shape: vec![d_out, r],
                data: transpose(&gb, r, d_out),
            });
        }
        Ok(MicroStep {
            loss_sum,
            grads: out,
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
