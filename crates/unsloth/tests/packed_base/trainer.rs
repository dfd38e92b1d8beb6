//! Packing a model while loading it ([`PackingSink`], the trainer's path): the adapted
//! projections' dense weights never reach the module, and the packed trainer computes what a
//! dense trainer computes on the dequantised weights (loss and LoRA gradients, with and without
//! activation checkpointing, and the eval loss).
#![expect(clippy::print_stderr, reason = "the test reports the measured gaps")]

use burn::backend::Autodiff;
use burn::module::{Module, Param, ParamId};
use tb_data::TokenizedExample;
use tb_model::weights::{build_model_with, LoadOptions, WeightSink};
use tb_model::{CausalLm, CpuBackend, ModelConfig};
use tb_train::lora::{attach_lora, InitLoraWeights, LoraConfig, TargetModules};
use tb_train::{ActivationCheckpointing, Trainer};
use tb_unsloth::packed_base::{PackedBases, PackingSink, QuantFormat};
use tb_unsloth::{reference, UnslothTrainer};

type B = Autodiff<CpuBackend>;

/// A random two-layer Llama whose widths Q4_K can pack (hidden 256, intermediate 512).
fn random_model() -> CausalLm<B> {
    random_model_with(None, "").unwrap()
}

/// [`random_model`] loaded through `sink`, with an infinite value in tensor `poisoned`.
fn random_model_with(
    sink: Option<&mut dyn WeightSink>,
    poisoned: &str,
) -> tb_model::Result<CausalLm<B>> {
    let config = ModelConfig::from_hf_json(
        &serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 64, "hidden_size": 256, "intermediate_size": 512,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
            "tie_word_embeddings": false
        }),
        "test",
    )
    .unwrap();
    let mut k = 7u32;
    let mut fetch = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            return Ok(vec![1.0; n]);
        }
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((k >> 16) as f32 / 65_536.0 - 0.5) * 0.12
            })
            .collect();
        if name == poisoned {
            v[n / 2] = f32::INFINITY;
        }
        Ok(v)
    };
    let options = LoadOptions {
        sink,
        ..LoadOptions::default()
    };
    build_model_with::<B>(&config, &Default::default(), &mut fetch, options)
}

/// LoRA on every projection but `o_proj`, which stays dense (and unpacked), so checkpointed
/// layers recompute under autodiff; with `all_seven` on all of them too, so checkpointed layers
/// take the hand-written layer backward.
fn lora_on(all_seven: bool) -> LoraConfig {
    let mut targets = vec![
        "q_proj",
        "k_proj",
        "v_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    if all_seven {
        targets.push("o_proj");
    }
    LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: Some(TargetModules::List(
            targets.iter().map(|t| (*t).to_string()).collect(),
        )),
        init_lora_weights: InitLoraWeights::Random,
        ..Default::default()
    }
}

/// [`random_model`] loaded through a [`PackingSink`] for `lora`, with the LoRA branches
/// attached as [`attach_lora`] attaches them to the dense model (same seed): the packed model
/// and its bases.
fn packed_model(format: QuantFormat, lora: &LoraConfig) -> (CausalLm<B>, PackedBases) {
    let mut sink = PackingSink::new(format, lora.clone());
    let model = random_model_with(Some(&mut sink), "").unwrap();
    let (model, _) = attach_lora(model, lora, 5, &Default::default()).unwrap();
    let bases = sink.into_bases(&model).unwrap();
    (model, bases)
}

fn examples() -> Vec<TokenizedExample> {
    [9usize, 14, 5, 11]
        .iter()
        .enumerate()
        .map(|(e, &n)| TokenizedExample {
            id: format!("e{e}"),
            input_ids: (0..n).map(|i| ((i * 7 + e * 13 + 1) % 64) as u32).collect(),
            loss_mask: (0..n).map(|i| i >= 3).collect(),
            truncated: false,
        })
        .collect()
}

fn trainer(model: CausalLm<B>, bases: PackedBases) -> UnslothTrainer<B> {
    UnslothTrainer {
        model,
        bases,
        pad_id: 0,
        row_len: 64,
        ce_chunk: 7,
        checkpoint_layers: ActivationCheckpointing::None,
        device: Default::default(),
        backend_name: "test".into(),
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn packed_trainer_holds_no_dense_copy_and_matches_the_dequantised_dense_trainer() {
    let device = Default::default();
    for (format, all_seven) in [
        (QuantFormat::Nf4, false),
        (QuantFormat::Q4K, false),
        (QuantFormat::Nf4, true),
        (QuantFormat::Q4K, true),
    ] {
        let adapted_count = if all_seven { 14 } else { 12 };
        let lora = lora_on(all_seven);
        let (mut dense, names) = attach_lora(random_model(), &lora, 5, &device).unwrap();
        assert_eq!(names.len(), adapted_count);
        let before = dense.num_params();
        let adapted: Vec<(usize, usize)> = dense
            .projections()
            .iter()
            .filter(|(_, l)| l.lora.is_some())
            .map(|(_, l)| (l.d_input(), l.d_output()))
            .collect();
        let adapted_elems: usize = adapted.iter().map(|(i, o)| i * o).sum();
        let (packed, bases) = packed_model(format, &lora);

        // No dense copy: every adapted weight is empty (its widths kept), the rest is as loaded.
        assert_eq!(bases.len(), adapted_count);
        assert_eq!(packed.num_params(), before - adapted_elems);
        for (name, lin) in packed.projections() {
            let n = lin.weight.shape().num_elements();
            assert!(
                lin.d_input() > 0 && lin.d_output() > 0,
                "{name} lost its widths"
            );
            if lin.lora.is_some() {
                assert_eq!(n, 0, "{name} kept its dense weight");
            } else {
                assert_eq!(n, 256 * 256, "{name}");
            }
        }
        let block = format.block_size();
        let want_bytes: usize = adapted
            .iter()
            .map(|(i, o)| o * i.div_ceil(block) * format.block_bytes())
            .sum();
        assert_eq!(bases.packed_bytes(), want_bytes);
        let bits = bases.packed_bytes() as f64 * 8.0 / adapted_elems as f64;
        eprintln!(
            "{format}: module params {before} -> {} ({adapted_elems} dense base values dropped), packed {} bytes = {bits} bits/value",
            packed.num_params(),
            bases.packed_bytes()
        );
        assert!((bits - 4.5).abs() < 1e-9, "{bits}");

        // The dense twin runs on dequant(W4) in place of W.
        for (i, layer) in dense.layers.iter_mut().enumerate() {
            for (p, lin) in layer.projections_mut() {
                let Some(w) = bases.layer(i).get(p) else {
                    continue;
                };
                assert_eq!(w.name(), format!("{}.weight", p.hf_module(i)));
                let deq = reference::dequantized::<B>(w, &device).transpose();
                lin.weight = Param::initialized(ParamId::new(), deq);
            }
        }
        let mut p = trainer(packed, bases);
        let mut d = trainer(dense, PackedBases::dense());
        let data = examples();
        let refs: Vec<_> = data.iter().collect();
        let batch = p.batches(&refs, 4).remove(0);
        let scale = 1.0 / batch.loss_tokens as f32;
        let mut uncheckpointed: Option<(f64, Vec<tb_train::NamedTensor>)> = None;
        for checkpoint in [
            ActivationCheckpointing::None,
            ActivationCheckpointing::Layer,
            ActivationCheckpointing::Attention,
        ] {
            p.checkpoint_layers = checkpoint;
            d.checkpoint_layers = checkpoint;
            let a = p.micro_step(&batch, scale, 1).unwrap();
            let b = d.micro_step(&batch, scale, 1).unwrap();
            let loss_gap = (a.loss_sum - b.loss_sum).abs() / b.loss_sum.abs();
            assert!(a.loss_sum.is_finite());
            assert_eq!(a.grads.len(), 2 * adapted_count);
            let mut worst = 0f32;
            for (ga, gb) in a.grads.iter().zip(&b.grads) {
                assert_eq!(ga.name, gb.name);
                worst = worst.max(rel_err(&ga.data, &gb.data));
            }
            eprintln!(
                "{format} all_seven={all_seven} checkpoint={checkpoint:?}: loss {:.6} vs {:.6} (gap {loss_gap:.1e}), LoRA grads max rel err {worst:.1e}",
                a.loss_sum, b.loss_sum
            );
            assert!(loss_gap < 1e-5, "{format}: loss gap {loss_gap}");
            assert!(worst < 1e-4, "{format}: gradient error {worst}");
            // The checkpointed paths (hand-written layer backward when all seven projections
            // are adapted, autodiff recompute otherwise) against the un-checkpointed one.
            let (ref_loss, ref_grads) =
                uncheckpointed.get_or_insert_with(|| (a.loss_sum, a.grads.clone()));
            let mut gap = 0f32;
            for (gr, ga) in ref_grads.iter().zip(&a.grads) {
                assert_eq!(gr.name, ga.name);
                gap = gap.max(rel_err(&ga.data, &gr.data));
            }
            let loss_gap = (a.loss_sum - *ref_loss).abs() / ref_loss.abs();
            eprintln!(
                "  vs no checkpointing: loss gap {loss_gap:.1e}, LoRA grads max rel err {gap:.1e}"
            );
            assert!(
                loss_gap < 1e-5 && gap < 1e-4,
                "{format} {checkpoint:?}: {loss_gap} {gap}"
            );
        }
        let (ea, eb) = (
            p.eval_loss_sum(&batch).unwrap(),
            d.eval_loss_sum(&batch).unwrap(),
        );
        assert!((ea - eb).abs() / eb < 1e-5, "{format}: eval {ea} vs {eb}");
    }
}

#[test]
fn packing_while_loading_reports_bad_weights_and_mismatched_adapters() {
    let device = Default::default();
    // A value that cannot be packed: the load fails naming the tensor.
    let bad = "model.layers.1.mlp.up_proj.weight";
    let mut sink = PackingSink::new(QuantFormat::Nf4, lora_on(false));
    let err = random_model_with(Some(&mut sink), bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(bad) && err.contains("not finite") && err.contains("NF4"),
        "{err}"
    );
    // Adapters on a projection the sink did not pack (o_proj): an error naming it.
    let mut sink = PackingSink::new(QuantFormat::Nf4, lora_on(false));
    let model = random_model_with(Some(&mut sink), "").unwrap();
    let (model, _) = attach_lora(model, &lora_on(true), 5, &device).unwrap_or_else(|e| {
        panic!("o_proj is still dense, so LoRA attaches: {e}");
    });
    let err = sink.into_bases(&model).unwrap_err().to_string();
    assert!(
        err.contains("model.layers.0.self_attn.o_proj.weight") && err.contains("not packed"),
        "{err}"
    );
}
