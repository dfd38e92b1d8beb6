//! Packing a model's adapted projections: the packed copies travel beside the model in
//! [`PackedBases`], and the module's dense weights of those projections are replaced by empty
//! `[0, 0]` tensors, so the process holds each adapted base only once, in 4 bits.
//!
//! Like bitsandbytes' `load_in_4bit`, only the decoder projections are packed; embeddings,
//! norms and the LM head stay dense. Unlike it, only the projections that carry a LoRA branch
//! are packed (the others stay dense and run through the plain matmul).
//!
//! Two ways in: [`PackingSink`] packs each adapted weight as the loader reads it (the trainer's
//! path: the dense weights never exist together, so loading peaks near the packed size), and
//! [`pack_adapted_bases`] packs a model already in memory.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::{Param, ParamId};
use burn::prelude::*;
use tb_model::weights::WeightSink;
use tb_model::CausalLm;
use tb_train::lora::{transpose, LoraConfig};

use super::{PackedWeight, QuantFormat};
use crate::error::{FusedError, Result};

/// The seven projections of a decoder layer, in [`CausalLm::projections`] order; a
/// [`LayerBases`] slot is an index into this list.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The packed bases of one decoder layer, one slot per entry of [`PROJECTIONS`]; `None` where
/// the module's dense weight is still the base.
#[derive(Clone, Debug, Default)]
pub struct LayerBases {
    slots: [Option<Arc<PackedWeight>>; 7],
}

impl LayerBases {
    /// The packed base of projection `slot` (an index into [`PROJECTIONS`]).
    pub fn get(&self, slot: usize) -> Option<&Arc<PackedWeight>> {
        self.slots.get(slot).and_then(Option::as_ref)
    }
}

/// A dense layer: every base is in the module.
static DENSE_LAYER: LayerBases = LayerBases {
    slots: [None, None, None, None, None, None, None],
};

/// The packed bases of a model, by layer; empty (the default) when the model is dense.
#[derive(Clone, Debug, Default)]
pub struct PackedBases {
    layers: Vec<LayerBases>,
}

impl PackedBases {
    /// No packed base at all (the dense path).
    pub fn dense() -> Self {
        Self::default()
    }

    /// The packed bases of layer `layer` (all `None` for a dense model).
    pub fn layer(&self, layer: usize) -> &LayerBases {
        self.layers.get(layer).unwrap_or(&DENSE_LAYER)
    }

    /// Every packed weight, in model order.
    pub fn weights(&self) -> impl Iterator<Item = &Arc<PackedWeight>> {
        self.layers.iter().flat_map(|l| l.slots.iter().flatten())
    }

    /// How many projections are packed.
    pub fn len(&self) -> usize {
        self.weights().count()
    }

    /// Whether no projection is packed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all packed blocks.
    pub fn packed_bytes(&self) -> usize {
        self.weights().map(|w| w.packed_bytes()).sum()
    }
}

/// Packs the base weight of every LoRA-adapted projection of `model` to `format` and replaces
/// those weights in the module by empty `[0, 0]` tensors. Nothing in `model` changes unless
/// every projection packs.
///
/// Afterwards the model must run through [`crate::fused_model`] with the returned bases (a
/// plain `Linear::forward` of a packed projection would see an empty weight). The adapters'
/// widths are read from their own `A`/`B` tensors, so tb-train's adapter functions keep working.
///
/// # Errors
/// [`FusedError::Pack`] naming the first tensor that cannot be packed (Q4_K on a width that is
/// not a multiple of 256, non-finite values).
pub fn pack_adapted_bases<B: Backend>(
    model: &mut CausalLm<B>,
    format: QuantFormat,
) -> Result<PackedBases> {
    let mut layers = vec![LayerBases::default(); model.layers.len()];
    let projections = model.projections();
    let mut packed: Vec<Option<Arc<PackedWeight>>> = vec![None; projections.len()];
    for (k, (name, lin)) in projections.into_iter().enumerate() {
        if lin.lora.is_none() {
            continue;
        }
        let tensor_name = format!("{name}.weight");
        let [d_in, d_out] = lin.weight.shape().dims::<2>();
        let burn_layout = lin
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| FusedError::Pack {
                tensor: tensor_name.clone(),
                format: format.name(),
                reason: format!("its values cannot be read as f32 ({e:?})"),
            })?;
        let hf = transpose(&burn_layout, d_in, d_out);
        drop(burn_layout);
        let weight = PackedWeight::pack(tensor_name, format, &hf, d_out, d_in)?;
        packed[k] = Some(Arc::new(weight));
    }
    for ((k, (_, lin)), weight) in model.projections_mut().into_iter().enumerate().zip(packed) {
        if let Some(weight) = weight {
            let device = lin.weight.val().device();
            lin.weight = Param::initialized(ParamId::new(), Tensor::zeros([0, 0], &device));
            layers[k / PROJECTIONS.len()].slots[k % PROJECTIONS.len()] = Some(weight);
        }
    }
    Ok(PackedBases { layers })
}

/// Packs the weights of the projections a LoRA config targets while the loader reads them
/// ([`WeightSink`]); the model gets empty projections with their widths, so LoRA attaches as
/// usual, and [`Self::into_bases`] hands the packed weights over in model order.
pub struct PackingSink {
    format: QuantFormat,
    lora: LoraConfig,
    /// By HF weight name.
    packed: HashMap<String, Arc<PackedWeight>>,
}

impl PackingSink {
    /// A sink packing to `format` every decoder projection `lora` targets.
    pub fn new(format: QuantFormat, lora: LoraConfig) -> Self {
        Self {
            format,
            lora,
            packed: HashMap::new(),
        }
    }

    /// The packed bases in model order, checked against `model` (the loaded model with its
    /// LoRA branches): every adapted projection was packed, and nothing else was.
    ///
    /// # Errors
    /// [`FusedError::Pack`] naming a projection that is adapted but was not packed, or was
    /// packed but carries no adapter.
    pub fn into_bases<B: Backend>(mut self, model: &CausalLm<B>) -> Result<PackedBases> {
        let mut layers = vec![LayerBases::default(); model.layers.len()];
        let fail = |tensor: String, reason: &str| FusedError::Pack {
            tensor,
            format: self.format.name(),
            reason: reason.to_string(),
        };
        for (k, (name, lin)) in model.projections().into_iter().enumerate() {
            let tensor = format!("{name}.weight");
            match (lin.lora.is_some(), self.packed.remove(&tensor)) {
                (true, Some(w)) => {
                    layers[k / PROJECTIONS.len()].slots[k % PROJECTIONS.len()] = Some(w);
                }
                (true, None) => {
                    return Err(fail(
                        tensor,
                        "carries a LoRA branch but was not packed while loading",
                    ));
                }
                (false, Some(_)) => {
                    return Err(fail(
                        tensor,
                        "was packed while loading but carries no LoRA branch",
                    ));
                }
                (false, None) => {}
            }
        }
        if let Some(tensor) = self.packed.into_keys().next() {
            return Err(FusedError::Pack {
                tensor,
                format: self.format.name(),
                reason: "was packed while loading but is not a projection of the model".into(),
            });
        }
        Ok(PackedBases { layers })
    }
}

impl WeightSink for PackingSink {
    fn wants(&self, name: &str) -> bool {
        name.strip_prefix("model.layers.")
            .and_then(|_| name.strip_suffix(".weight"))
            .is_some_and(|module| self.lora.targets(module))
    }

    fn take(
        &mut self,
        name: &str,
        values: Vec<f32>,
        d_out: usize,
        d_in: usize,
    ) -> std::result::Result<(), String> {
        let w =
            PackedWeight::pack(name, self.format, &values, d_out, d_in).map_err(|e| match e {
                // The loader names the tensor.
                FusedError::Pack { format, reason, .. } => {
                    format!("cannot pack as {format} (model.base_quant): {reason}")
                }
                other => other.to_string(),
            })?;
        drop(values);
        self.packed.insert(name.to_string(), Arc::new(w));
        Ok(())
    }
}
