//! Packing a model's adapted projections: the packed copies travel beside the model in
//! [`PackedBases`], and the module holds empty `[0, 0]` weights for those projections, so the
//! process holds each adapted base only once, in 4 bits.
//!
//! Like bitsandbytes' `load_in_4bit`, only the decoder projections are packed; embeddings,
//! norms and the LM head stay dense. Unlike it, only the projections that carry a LoRA branch
//! are packed (the others stay dense and run through the plain matmul).
//!
//! [`PackingSink`] packs each adapted weight as the loader reads it, so the dense weights never
//! exist together and loading peaks near the packed size.

use std::collections::HashMap;
use std::sync::Arc;

use burn::prelude::*;
use tb_model::weights::WeightSink;
use tb_model::{CausalLm, Projection};
use tb_train::lora::LoraConfig;

use super::{PackedWeight, QuantFormat};
use crate::error::{FusedError, Result};

/// The packed bases of one decoder layer, one slot per [`Projection`]; `None` where the
/// module's dense weight is still the base.
#[derive(Clone, Debug, Default)]
pub struct LayerBases {
    slots: [Option<Arc<PackedWeight>>; 7],
}

impl LayerBases {
    /// The packed base of projection `p`.
    pub fn get(&self, p: Projection) -> Option<&Arc<PackedWeight>> {
        self.slots[p.index()].as_ref()
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
        for (i, (layer, bases)) in model.layers.iter().zip(&mut layers).enumerate() {
            for (p, lin) in layer.projections() {
                let tensor = format!("{}.weight", p.hf_module(i));
                match (lin.lora.is_some(), self.packed.remove(&tensor)) {
                    (true, Some(w)) => bases.slots[p.index()] = Some(w),
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
