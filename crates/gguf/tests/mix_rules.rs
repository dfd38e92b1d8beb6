//! llama-quantize type rules on realistic shapes (7B, 70B, tied, odd rows), without FFI.

use tb_gguf::mix::*;
use tb_gguf::GgmlType;

fn facts(n_layer: u32, n_head: u32, n_head_kv: u32) -> ModelFacts {
    ModelFacts {
        arch: "llama".into(),
        n_layer,
        n_head,
        n_head_kv,
        n_expert: 0,
    }
}

fn llama_tensors(
    n_layer: u32,
    n_embd: u64,
    n_ff: u64,
    n_vocab: u64,
    tied: bool,
) -> Vec<(String, Vec<u64>)> {
    let mut v = vec![
        ("token_embd.weight".to_string(), vec![n_embd, n_vocab]),
        ("output_norm.weight".to_string(), vec![n_embd]),
    ];
    if !tied {
        v.push(("output.weight".to_string(), vec![n_embd, n_vocab]));
    }
    for i in 0..n_layer {
        for (n, ne) in [
            ("attn_norm", vec![n_embd]),
            ("attn_q", vec![n_embd, n_embd]),
            ("attn_k", vec![n_embd, n_embd / 4]),
            ("attn_v", vec![n_embd, n_embd / 4]),
            ("attn_output", vec![n_embd, n_embd]),
            ("ffn_norm", vec![n_embd]),
            ("ffn_gate", vec![n_embd, n_ff]),
            ("ffn_up", vec![n_embd, n_ff]),
            ("ffn_down", vec![n_ff, n_embd]),
        ] {
            v.push((format!("blk.{i}.{n}.weight"), ne));
        }
    }
    v.sort_by(|a, b| llama_tensor_order(&a.0, &b.0));
    v
}

fn plan(mix: QuantMix, f: &ModelFacts, t: &[(String, Vec<u64>)]) -> Vec<(String, GgmlType)> {
    let inputs: Vec<PlanInput<'_>> = t
        .iter()
        .map(|(n, ne)| PlanInput {
            name: n,
            ty: if ne.len() == 1 {
                GgmlType::F32
            } else {
                GgmlType::F16
            },
            ne,
        })
        .collect();
    let types = plan_tensor_types(mix, f, &inputs, false).unwrap();
    t.iter().map(|(n, _)| n.clone()).zip(types).collect()
}

#[test]
fn use_more_bits_for_32_layers() {
    let layers: Vec<i32> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
    assert_eq!(
        layers,
        [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    );
}

#[test]
fn q4_k_m_for_a_7b_shape() {
    let f = facts(32, 32, 8);
    let t = llama_tensors(32, 4096, 14336, 32000, false);
    let p = plan(QuantMix::Q4_K_M, &f, &t);
    let ty = |n: &str| p.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(ty("output.weight"), GgmlType::Q6_K);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q4_K);
    assert_eq!(ty("output_norm.weight"), GgmlType::F32);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.4.attn_v.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.6.attn_v.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.6.ffn_down.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.7.ffn_down.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.7.attn_q.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.31.ffn_down.weight"), GgmlType::Q6_K);
    let n_q6 = p.iter().filter(|(_, t)| *t == GgmlType::Q6_K).count();
    assert_eq!(n_q6, 1 + 16 + 16);
}

#[test]
fn tied_embeddings_and_fallbacks() {
    let f = facts(2, 4, 4);
    // n_embd 96 is not a multiple of 256: Q4_K -> Q5_0, output Q8_0
    let t = llama_tensors(2, 96, 160, 300, true);
    let p = plan(QuantMix::Q4_K_M, &f, &t);
    let ty = |n: &str| p.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0); // tied: treated as output
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q5_0); // use_more_bits(0, 2) is false
    assert_eq!(ty("blk.1.attn_v.weight"), GgmlType::Q8_0); // Q6_K -> Q8_0
    assert_eq!(ty("blk.1.ffn_down.weight"), GgmlType::Q8_0); // ne0 160: Q6_K -> Q8_0
                                                             // 256-multiple: tied embedding -> Q6_K
    let t = llama_tensors(2, 256, 512, 300, true);
    let p = plan(QuantMix::Q4_K_M, &f, &t);
    assert_eq!(
        p.iter().find(|(m, _)| m == "token_embd.weight").unwrap().1,
        GgmlType::Q6_K
    );
    let p = plan(QuantMix::Q4_0, &f, &t);
    assert_eq!(
        p.iter().find(|(m, _)| m == "token_embd.weight").unwrap().1,
        GgmlType::Q6_K
    );
    assert_eq!(
        p.iter()
            .find(|(m, _)| m == "blk.1.ffn_down.weight")
            .unwrap()
            .1,
        GgmlType::Q4_0
    );
    let p = plan(QuantMix::Q8_0, &f, &t);
    assert!(p.iter().all(|(n, t)| *t
        == if n.ends_with("norm.weight") {
            GgmlType::F32
        } else {
            GgmlType::Q8_0
        }));
    let p = plan(QuantMix::F16, &f, &t);
    assert!(p.iter().all(|(n, t)| *t
        == if n.ends_with("norm.weight") {
            GgmlType::F32
        } else {
            GgmlType::F16
        }));
    // rows not a multiple of 32: F16
    assert_eq!(
        tensor_type_fallback(100, GgmlType::Q4_K).unwrap(),
        GgmlType::F16
    );
    assert_eq!(
        tensor_type_fallback(100, GgmlType::Q8_0).unwrap(),
        GgmlType::F16
    );
    assert_eq!(
        tensor_type_fallback(96, GgmlType::Q5_K).unwrap(),
        GgmlType::Q5_1
    );
}

#[test]
fn seventy_b_attn_v_gets_q5_k() {
    let f = facts(80, 64, 8);
    let t = llama_tensors(80, 8192, 28672, 32000, false);
    let p = plan(QuantMix::Q4_K_M, &f, &t);
    let ty = |n: &str| p.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.11.attn_v.weight"), GgmlType::Q5_K);
}

#[test]
fn order_puts_globals_first_then_layers_numerically() {
    let mut v = vec![
        "blk.10.attn_q.weight",
        "output.weight",
        "blk.2.ffn_up.weight",
        "blk.2.attn_k.weight",
        "token_embd.weight",
    ];
    v.sort_by(|a, b| llama_tensor_order(a, b));
    assert_eq!(
        v,
        [
            "output.weight",
            "token_embd.weight",
            "blk.2.attn_k.weight",
            "blk.2.ffn_up.weight",
            "blk.10.attn_q.weight"
        ]
    );
    assert_eq!("q4_k".parse::<QuantMix>().unwrap(), QuantMix::Q4_K_M);
    assert!("q3_k_m".parse::<QuantMix>().is_err());
}
