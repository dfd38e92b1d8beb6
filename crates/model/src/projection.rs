//! The seven linear projections of a Llama/Mistral decoder layer, the one list every crate
//! names them from: LoRA targets (`all-linear`), trainer gradients, packed-base slots, shape
//! checks.

use crate::config::ModelConfig;

/// One linear projection of a decoder layer, in HF order (attention q/k/v/o, then MLP
/// gate/up/down); [`Projection::index`] is its slot in per-layer arrays of seven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// `self_attn.q_proj`.
    Q,
    /// `self_attn.k_proj`.
    K,
    /// `self_attn.v_proj`.
    V,
    /// `self_attn.o_proj`.
    O,
    /// `mlp.gate_proj`.
    Gate,
    /// `mlp.up_proj`.
    Up,
    /// `mlp.down_proj`.
    Down,
}

impl Projection {
    /// Every projection, in HF order (`ALL[p.index()] == p`).
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// Position in [`Projection::ALL`] (the slot in per-layer arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The module's own name (`q_proj`), as PEFT's `target_modules` lists it.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    /// The module's path inside a decoder layer (`self_attn.q_proj`).
    pub fn hf_suffix(self) -> &'static str {
        match self {
            Projection::Q => "self_attn.q_proj",
            Projection::K => "self_attn.k_proj",
            Projection::V => "self_attn.v_proj",
            Projection::O => "self_attn.o_proj",
            Projection::Gate => "mlp.gate_proj",
            Projection::Up => "mlp.up_proj",
            Projection::Down => "mlp.down_proj",
        }
    }

    /// The full HF module name in decoder layer `layer` (`model.layers.3.self_attn.q_proj`).
    pub fn hf_module(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}", self.hf_suffix())
    }

    /// HF weight shape `[out_features, in_features]` under `config`.
    pub fn shape(self, config: &ModelConfig) -> [usize; 2] {
        let h = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let ff = config.intermediate_size;
        match self {
            Projection::Q => [q, h],
            Projection::K | Projection::V => [kv, h],
            Projection::O => [h, q],
            Projection::Gate | Projection::Up => [ff, h],
            Projection::Down => [h, ff],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Projection;

    #[test]
    fn the_list_is_in_index_order_and_names_agree() {
        for (i, p) in Projection::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
            assert!(p.hf_suffix().ends_with(&format!(".{}", p.name())));
        }
        assert_eq!(
            Projection::Down.hf_module(31),
            "model.layers.31.mlp.down_proj"
        );
    }
}
