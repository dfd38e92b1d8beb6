//! The adapter as the optimizer sees it: both trainers hand tb-train's loop their LoRA tensors
//! and gradients in PEFT layout (`lora_A` `[r, in]`, `lora_B` `[out, r]`, model order) and take
//! updated values back, through these functions.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tb_model::{CausalLm, Linear, LoraBranch};

use super::adapter::peft_key;
use super::init::transpose;
use crate::error::{Error, Result};
use crate::optimizer::NamedTensor;

/// Host f32 values of a tensor.
pub fn host_values<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

/// `(d_in, d_out, r)` of an adapter branch, read from its own `A` `[d_in, r]` and `B`
/// `[r, d_out]`: the projection's weight may have been swapped for a packed copy held outside
/// the module (tb-unsloth's 4-bit base), so the branch is the source of truth for the widths.
pub(super) fn branch_dims<B: Backend>(lora: &LoraBranch<B>) -> (usize, usize, usize) {
    let [d_in, r] = lora.lora_a.shape().dims::<2>();
    let d_out = lora.lora_b.shape().dims::<2>()[1];
    (d_in, d_out, r)
}

/// Replaces every LoRA `A`/`B` of `model` with `values` (PEFT layout, in the order
/// [`super::adapter_tensors`] gives), as fresh trainable parameters on `device`.
///
/// # Errors
/// [`Error::Method`] when a tensor is missing, out of order or of the wrong size.
pub fn set_adapter_tensors<B: Backend>(
    model: &mut CausalLm<B>,
    values: &[NamedTensor],
    device: &B::Device,
) -> Result<()> {
    let mut it = values.iter();
    for (name, lin) in model.projections_mut() {
        let Some(lora) = lin.lora.as_mut() else {
            continue;
        };
        let (d_in, d_out, r) = branch_dims(lora);
        let (a, b) = match (it.next(), it.next()) {
            (Some(a), Some(b))
                if a.name == peft_key(&name, 'A') && b.name == peft_key(&name, 'B') =>
            {
                (a, b)
            }
            _ => {
                return Err(Error::Method(format!(
                    "trainable tensors out of order at `{name}`"
                )))
            }
        };
        if a.data.len() != r * d_in || b.data.len() != d_out * r {
            return Err(Error::Method(format!(
                "`{name}`: got {} and {} values for A [{r}, {d_in}] and B [{d_out}, {r}]",
                a.data.len(),
                b.data.len()
            )));
        }
        let ta = Tensor::<B, 2>::from_data(
            TensorData::new(transpose(&a.data, r, d_in), [d_in, r]),
            device,
        );
        let tb = Tensor::<B, 2>::from_data(
            TensorData::new(transpose(&b.data, d_out, r), [r, d_out]),
            device,
        );
        lora.lora_a = Param::from_tensor(ta);
        lora.lora_b = Param::from_tensor(tb);
    }
    if let Some(extra) = it.next() {
        return Err(Error::Method(format!(
            "trainable tensor `{}` has no LoRA branch in the model",
            extra.name
        )));
    }
    Ok(())
}

/// Host copies of the LoRA gradients of the projection `name` (PEFT layout, `A` then `B`);
/// zeros for a branch the loss did not reach; `None` when the projection has no LoRA branch.
pub fn projection_grads<B: AutodiffBackend>(
    name: &str,
    lin: &Linear<B>,
    grads: &B::Gradients,
) -> Option<[NamedTensor; 2]> {
    let lora = lin.lora.as_ref()?;
    let (d_in, d_out, r) = branch_dims(lora);
    let ga = lora
        .lora_a
        .grad(grads)
        .map(host_values)
        .unwrap_or_else(|| vec![0.0; d_in * r]);
    let gb = lora
        .lora_b
        .grad(grads)
        .map(host_values)
        .unwrap_or_else(|| vec![0.0; r * d_out]);
    Some(peft_grad_pair(name, &ga, &gb, [d_in, d_out, r]))
}

/// The gradients of projection `name`'s `A` (`[d_in, r]`) and `B` (`[r, d_out]`), given in
/// Burn layout, as PEFT-named tensors in PEFT layout (`[r, d_in]`, `[d_out, r]`).
pub fn peft_grad_pair(
    name: &str,
    ga: &[f32],
    gb: &[f32],
    [d_in, d_out, r]: [usize; 3],
) -> [NamedTensor; 2] {
    [
        NamedTensor {
            name: peft_key(name, 'A'),
            shape: vec![r, d_in],
            data: transpose(ga, d_in, r),
        },
        NamedTensor {
            name: peft_key(name, 'B'),
            shape: vec![d_out, r],
            data: transpose(gb, r, d_out),
        },
    ]
}

/// The LoRA gradients of every adapted projection of `model`, in [`super::adapter_tensors`]
/// order.
pub fn adapter_grads<B: AutodiffBackend>(
    model: &CausalLm<B>,
    grads: &B::Gradients,
) -> Vec<NamedTensor> {
    model
        .projections()
        .into_iter()
        .filter_map(|(name, lin)| projection_grads(&name, lin, grads))
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use tb_model::weights::build_model;
    use tb_model::ModelConfig;

    use crate::lora::{adapter_tensors, attach_lora, LoraConfig};

    type B = Autodiff<Flex>;

    fn tiny() -> CausalLm<B> {
        let config = ModelConfig::from_hf_json(
            &serde_json::json!({
                "architectures": ["MistralForCausalLM"], "model_type": "mistral",
                "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
                "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
                "tie_word_embeddings": false
            }),
            "test",
        )
        .unwrap();
        let mut k = 0u32;
        let model = build_model::<B>(&config, &Default::default(), &mut |_, shape| {
            let n: usize = shape.iter().product();
            Ok((0..n)
                .map(|_| {
                    k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (k >> 16) as f32 / 65_536.0 - 0.5
                })
                .collect())
        })
        .unwrap();
        let lora = LoraConfig::from_json(
            r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                "target_modules": ["q_proj", "down_proj"],
                "init_lora_weights": false}"#,
            std::path::Path::new("test.json"),
        )
        .unwrap();
        attach_lora(model, &lora, 7, &Default::default()).unwrap().0
    }

    #[test]
    fn set_then_get_round_trips_and_checks_order_and_size() {
        let mut model = tiny();
        let mut values = adapter_tensors(&model);
        assert_eq!(values.len(), 4);
        for (i, t) in values.iter_mut().enumerate() {
            for (j, v) in t.data.iter_mut().enumerate() {
                *v = (i * 100 + j) as f32;
            }
        }
        set_adapter_tensors(&mut model, &values, &Default::default()).unwrap();
        assert_eq!(adapter_tensors(&model), values);

        let mut swapped = values.clone();
        swapped.swap(0, 1);
        let err = set_adapter_tensors(&mut model, &swapped, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");

        let mut short = values.clone();
        short[0].data.pop();
        let err = set_adapter_tensors(&mut model, &short, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("values for A"), "{err}");

        let mut extra = values.clone();
        extra.push(values[0].clone());
        let err = set_adapter_tensors(&mut model, &extra, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("no LoRA branch"), "{err}");
    }

    #[test]
    fn gradients_come_back_in_peft_layout_and_order() {
        let model = tiny();
        let ids = Tensor::<B, 2, Int>::from_data([[1, 2, 3, 4]], &Default::default());
        let loss = model.forward(ids).powi_scalar(2).sum();
        let grads = loss.backward();
        let g = adapter_grads(&model, &grads);
        let names: Vec<&str> = g.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
                "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
            ]
        );
        assert_eq!(g[0].shape, [2, 16]);
        assert_eq!(g[1].shape, [16, 2]);
        assert_eq!(g[3].shape, [16, 2]);
        assert!(g.iter().all(|t| t.data.iter().any(|v| *v != 0.0)));
    }
}
