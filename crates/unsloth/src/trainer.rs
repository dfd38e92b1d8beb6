//! The Unsloth-style trainer: the fused forward with hand-written backward passes, padding-free
//! packed micro-batches, and the chunked fused loss, plugged into tb-train's shared loop.

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tb_data::{packed_batch, Batch, TokenizedExample};
use tb_model::{CausalLm, Projection};
use tb_train::lora::{
    adapter_grads, adapter_tensors, host_values, peft_grad_pair, projection_grads,
    set_adapter_tensors,
};
use tb_train::{ActivationCheckpointing, MicroStep, NamedTensor, Trainer};

use crate::backend::FusedBackend;
use crate::fused_model::{batch_tensors, decoder_layer, head_loss_mean, loss_mean, rope_angles};
use crate::layer_backward::{self, LayerCheckpoint, LayerInputs, LayerWeights, Recompute};
use crate::packed_base::PackedBases;

/// A model with LoRA branches trained through the fused ops.
pub struct UnslothTrainer<B: AutodiffBackend + FusedBackend>
where
    B::InnerBackend: FusedBackend,
{
    /// The model (base frozen, adapters trainable).
    pub model: CausalLm<B>,
    /// 4-bit packed bases of the adapted projections, whose weights in `model` are then empty
    /// ([`crate::packed_base::PackingSink`]); [`PackedBases::dense`] for a dense base.
    pub bases: PackedBases,
    /// Token id used for padding in packed rows.
    pub pad_id: u32,
    /// Longest packed row. The trainer passes `max_seq_len × micro_batch`, so a micro-batch is
    /// one row of exactly its examples' tokens (no padding at all); smaller values pack
    /// first-fit into several rows padded to the longest.
    pub row_len: usize,
    /// Tokens per chunk of the fused cross-entropy.
    pub ce_chunk: usize,
    /// Per-layer activation checkpointing: with `Layer` the forward keeps only each layer's
    /// input and post-attention residual and the backward recomputes one layer at a time;
    /// `Attention` also keeps the MLP's activations; `None` keeps every activation (see
    /// [`ActivationCheckpointing`] and [`crate::layer_backward`]).
    pub checkpoint_layers: ActivationCheckpointing,
    /// Where the model, batches and kernels run (the CPU for Flex, a GPU for CubeCL).
    pub device: B::Device,
    /// Backend name for reports.
    pub backend_name: String,
}

fn method_error(e: impl std::fmt::Display) -> tb_train::Error {
    tb_train::Error::Method(format!("fused ops: {e}"))
}

/// What the checkpointed forward kept of one layer.
enum Kept<B: Backend> {
    /// A layer with seven adapted projections: hand-written backward.
    Manual(LayerWeights<B>, LayerCheckpoint<B>),
    /// Any other layer: its input, recomputed under autodiff.
    Input(Tensor<B, 3>),
}

/// The PEFT-named gradients of a layer's LoRA branches from the hand-written backward.
fn manual_grads<B: Backend>(
    layer: usize,
    grads: layer_backward::LayerGrads<B>,
) -> Vec<NamedTensor> {
    let mut out = Vec::with_capacity(2 * Projection::ALL.len());
    for (p, (da, db)) in Projection::ALL.into_iter().zip(grads) {
        let (da, db) = (
            crate::prim::tensor::<B, 2>(da),
            crate::prim::tensor::<B, 2>(db),
        );
        let ([d_in, r], d_out) = (da.dims(), db.dims()[1]);
        let module = p.hf_module(layer);
        out.extend(peft_grad_pair(
            &module,
            &host_values(da),
            &host_values(db),
            [d_in, d_out, r],
        ));
    }
    out
}

impl<B: AutodiffBackend + FusedBackend> UnslothTrainer<B>
where
    B::InnerBackend: FusedBackend,
{
    /// Forward without autodiff keeping a checkpoint per layer, then layer by layer, last to
    /// first: the hand-written layer backward ([`crate::layer_backward`]) where all seven
    /// projections are adapted, else a recompute under autodiff whose graph lives only while
    /// that layer's gradients are taken.
    fn checkpointed_step(
        &mut self,
        batch: &Batch,
        loss_scale: f32,
        recompute: Recompute,
    ) -> tb_train::Result<MicroStep> {
        let inner = self.model.valid();
        let (ids, pos, seg) = batch_tensors::<B::InnerBackend>(batch, &self.device);
        let (cos, sin) = rope_angles(&inner, pos);
        let inputs = LayerInputs {
            cos,
            sin,
            segments: seg,
        };
        let x = inner.embed_tokens.forward(ids);
        let [rows, seq, hidden] = x.dims();
        let mut x = x.reshape([rows * seq, hidden]);
        let mut kept = Vec::with_capacity(inner.layers.len());
        for (l, layer) in inner.layers.iter().enumerate() {
            let bases = self.bases.layer(l);
            match LayerWeights::of(layer, bases) {
                Some(w) => {
                    let (out, ckpt) = layer_backward::forward(&w, x, &inputs, recompute);
                    kept.push(Kept::Manual(w, ckpt));
                    x = out;
                }
                None => {
                    let x3 = x.reshape([rows, seq, hidden]);
                    kept.push(Kept::Input(x3.clone()));
                    let out =
                        decoder_layer(layer, bases, x3, &inputs.cos, &inputs.sin, &inputs.segments)
                            .map_err(method_error)?;
                    x = out.reshape([rows * seq, hidden]);
                }
            }
        }
        let n = batch.loss_tokens as f32;
        let top = Tensor::<B, 3>::from_inner(x.reshape([rows, seq, hidden])).require_grad();
        let mean = head_loss_mean(&self.model, top.clone(), &batch.targets, self.ce_chunk)
            .map_err(method_error)?;
        let loss_sum = f64::from(mean.clone().into_scalar().elem::<f32>()) * f64::from(n);
        let grads = mean.mul_scalar(loss_scale * n).backward();
        let mut upstream = top
            .grad(&grads)
            .ok_or_else(|| method_error("no gradient reached the last hidden state"))?
            .reshape([rows * seq, hidden]);
        let (_, pos, seg) = batch_tensors::<B>(batch, &self.device);
        let (cos, sin) = rope_angles(&self.model, pos);
        let mut per_layer: Vec<Vec<NamedTensor>> = vec![Vec::new(); self.model.layers.len()];
        for l in (0..self.model.layers.len()).rev() {
            let layer_kept = kept
                .pop()
                .ok_or_else(|| method_error("missing layer checkpoint"))?;
            match layer_kept {
                Kept::Manual(w, ckpt) => {
                    let (dx, g) = layer_backward::backward(&w, ckpt, upstream, &inputs, l > 0);
                    per_layer[l] = manual_grads::<B::InnerBackend>(l, g);
                    // The first layer's input is the frozen embedding: nothing flows further.
                    upstream = match dx {
                        Some(dx) => dx,
                        None => break,
                    };
                }
                Kept::Input(input) => {
                    let xin = Tensor::<B, 3>::from_inner(input).require_grad();
                    let layer = &self.model.layers[l];
                    let out =
                        decoder_layer(layer, self.bases.layer(l), xin.clone(), &cos, &sin, &seg)
                            .map_err(method_error)?;
                    let dout = Tensor::<B, 3>::from_inner(upstream.reshape([rows, seq, hidden]));
                    let grads = (out * dout).sum().backward();
                    upstream = xin
                        .grad(&grads)
                        .ok_or_else(|| method_error("no gradient reached a layer input"))?
                        .reshape([rows * seq, hidden]);
                    for (p, lin) in layer.projections() {
                        if let Some(pair) = projection_grads(&p.hf_module(l), lin, &grads) {
                            per_layer[l].extend(pair);
                        }
                    }
                }
            }
        }
        Ok(MicroStep {
            loss_sum,
            grads: per_layer.into_iter().flatten().collect(),
        })
    }

    /// Attention never crosses examples, so the window limit applies to the longest example
    /// (positions restart at 0 for each), not to the packed row.
    fn check_window(&self, batch: &Batch) -> tb_train::Result<()> {
        let longest = batch.positions.iter().max().map_or(0, |&p| p as usize + 1);
        match self.model.sliding_window {
            Some(w) if w < longest => Err(tb_train::Error::ConfigValue {
                field: "data.max_seq_len".into(),
                message: format!(
                    "examples of {longest} tokens exceed the model's sliding window ({w}); the fused attention is full causal, so use at most {w}",
                ),
            }),
            _ => Ok(()),
        }
    }
}

impl<B: AutodiffBackend + FusedBackend> Trainer for UnslothTrainer<B>
where
    B::InnerBackend: FusedBackend,
{
    fn method(&self) -> &'static str {
        "unsloth"
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

    /// Each micro-batch holds the same examples as the PEFT-style trainer's, packed first-fit
    /// into rows of `max_seq_len` instead of padded one per row.
    fn batches(&self, examples: &[&TokenizedExample], micro_batch: usize) -> Vec<Batch> {
        examples
            .chunks(micro_batch.max(1))
            .map(|chunk| packed_batch(chunk, self.row_len, self.pad_id))
            .collect()
    }

    fn micro_step(
        &mut self,
        batch: &Batch,
        loss_scale: f32,
        _seed: u64,
    ) -> tb_train::Result<MicroStep> {
        self.check_window(batch)?;
        match self.checkpoint_layers {
            ActivationCheckpointing::None => {}
            ActivationCheckpointing::Layer => {
                return self.checkpointed_step(batch, loss_scale, Recompute::Layer)
            }
            ActivationCheckpointing::Attention => {
                return self.checkpointed_step(batch, loss_scale, Recompute::Attention)
            }
        }
        let mean = loss_mean(&self.model, &self.bases, batch, self.ce_chunk, &self.device)
            .map_err(method_error)?;
        let n = batch.loss_tokens as f64;
        let loss_sum = f64::from(mean.clone().into_scalar().elem::<f32>()) * n;
        let grads = mean
            .mul_scalar(loss_scale * batch.loss_tokens as f32)
            .backward();
        Ok(MicroStep {
            loss_sum,
            grads: adapter_grads(&self.model, &grads),
        })
    }

    fn eval_loss_sum(&mut self, batch: &Batch) -> tb_train::Result<f64> {
        self.check_window(batch)?;
        let inner = self.model.valid();
        let mean =
            loss_mean::<B::InnerBackend>(&inner, &self.bases, batch, self.ce_chunk, &self.device)
                .map_err(method_error)?;
        Ok(f64::from(mean.into_scalar().elem::<f32>()) * batch.loss_tokens as f64)
    }
}
