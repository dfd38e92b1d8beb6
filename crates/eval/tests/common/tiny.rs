//! Tiny random llama GGUFs written with tb-gguf, and llama.cpp (node-llama-cpp) as an oracle.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_gguf::{GgmlType, GgufWriter, Metadata, QuantMix, TensorSpec, Value};

/// Shape of a tiny llama: hidden 64, 4 heads (2 KV heads), MLP 256 (so ffn_down rows are one
/// k-quant super-block), 2 layers, 320 tokens.
#[derive(Debug, Clone)]
pub struct TinyLlama {
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_vocab: u64,
    pub tied: bool,
    pub seed: u64,
    /// Zero the output rows of the 256 byte tokens, so greedy answers are made of pieces (text
    /// that every detokeniser renders the same way).
    pub mute_bytes: bool,
}

impl Default for TinyLlama {
    fn default() -> Self {
        Self {
            n_embd: 64,
            n_ff: 256,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_vocab: 320,
            tied: false,
            seed: 7,
            mute_bytes: false,
        }
    }
}

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

impl TinyLlama {
    /// Metadata llama.cpp needs, SentencePiece-style vocab (`<unk>`, `<s>`, `</s>`, 256 bytes,
    /// then pieces) and a ChatML template.
    pub fn metadata(&self, file_type: u32) -> Metadata {
        let mut md = Metadata::new();
        md.set("general.architecture", "llama");
        md.set("general.type", "model");
        md.set("general.name", "tunebench tiny eval model");
        md.set("llama.context_length", 256u32);
        md.set("llama.embedding_length", self.n_embd as u32);
        md.set("llama.block_count", self.n_layer);
        md.set("llama.feed_forward_length", self.n_ff as u32);
        md.set("llama.attention.head_count", self.n_head);
        md.set("llama.attention.head_count_kv", self.n_head_kv);
        md.set("llama.rope.freq_base", 10000.0f32);
        md.set(
            "llama.rope.dimension_count",
            (self.n_embd / self.n_head as u64) as u32,
        );
        md.set("llama.attention.layer_norm_rms_epsilon", 1e-5f32);
        md.set("llama.vocab_size", self.n_vocab as u32);
        md.set("general.file_type", file_type);
        md.set("tokenizer.ggml.model", "llama");
        md.set("tokenizer.ggml.pre", "default");
        let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
        let mut types = vec![2i32, 3, 3];
        for b in 0..256 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        let pieces = ["a", "e", "i", "l", "n", "r", "k", "m"];
        let mut i = 0;
        while (tokens.len() as u64) < self.n_vocab {
            let p = pieces[i % pieces.len()];
            tokens.push(if i < pieces.len() {
                format!("\u{2581}{p}")
            } else {
                format!("{p}{}", i / pieces.len())
            });
            types.push(1);
            i += 1;
        }
        let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
        md.set("tokenizer.ggml.tokens", tokens);
        md.set("tokenizer.ggml.scores", scores);
        md.set("tokenizer.ggml.token_type", types);
        md.set("tokenizer.ggml.bos_token_id", 1u32);
        md.set("tokenizer.ggml.eos_token_id", 2u32);
        md.set("tokenizer.ggml.unknown_token_id", 0u32);
        md.set("tokenizer.ggml.add_bos_token", true);
        md.set("tokenizer.ggml.add_eos_token", false);
        md.set(
            "tokenizer.chat_template",
            Value::String(tb_model::chat_template::CHATML_TEMPLATE.into()),
        );
        md
    }

    /// `(name, ne, values)` in llama.cpp's tensor order. Embeddings ~N(0, 1), projections
    /// ~N(0, 0.7/fan_in), output ~N(0, 0.6²): logits spread over several units so that greedy
    /// choices are mostly clear.
    pub fn tensors(&self) -> Vec<(String, Vec<u64>, Vec<f32>)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let hd = self.n_embd / self.n_head as u64;
        let kv = hd * self.n_head_kv as u64;
        let mut out = Vec::new();
        let mut mat = |rng: &mut StdRng, name: String, ne0: u64, ne1: u64, std: f32| {
            let v: Vec<f32> = (0..ne0 * ne1).map(|_| std * normal(rng)).collect();
            out.push((name, vec![ne0, ne1], v));
        };
        let d = self.n_embd;
        let proj = |fan_in: u64| 0.7 / (fan_in as f32).sqrt();
        mat(&mut rng, "token_embd.weight".into(), d, self.n_vocab, 1.0);
        if !self.tied {
            mat(&mut rng, "output.weight".into(), d, self.n_vocab, 0.6);
            if self.mute_bytes {
                if let Some((_, _, v)) = out.last_mut() {
                    v[3 * d as usize..259 * d as usize].fill(0.0);
                }
            }
        }
        let norm = |rng: &mut StdRng, name: String| {
            let v = (0..d).map(|_| 1.0 + 0.1 * normal(rng)).collect();
            (name, vec![d], v)
        };
        let output_norm = norm(&mut rng, "output_norm.weight".into());
        let mut layers = Vec::new();
        for i in 0..self.n_layer {
            layers.push(norm(&mut rng, format!("blk.{i}.attn_norm.weight")));
            layers.push(norm(&mut rng, format!("blk.{i}.ffn_norm.weight")));
        }
        out.push(output_norm);
        let mut li = layers.into_iter();
        for i in 0..self.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let attn_norm = li.next().expect("norm");
            let ffn_norm = li.next().expect("norm");
            let mut blk = Vec::new();
            let mut m = |name: String, ne0: u64, ne1: u64, std: f32| {
                let v = (0..ne0 * ne1).map(|_| std * normal(&mut rng)).collect();
                blk.push((name, vec![ne0, ne1], v));
            };
            m(n("attn_k"), d, kv, proj(d));
            m(n("attn_output"), d, d, proj(d));
            m(n("attn_q"), d, d, proj(d));
            m(n("attn_v"), d, kv, proj(d));
            m(n("ffn_down"), self.n_ff, d, proj(self.n_ff));
            m(n("ffn_gate"), d, self.n_ff, proj(d));
            m(n("ffn_up"), d, self.n_ff, proj(d));
            blk.push(attn_norm);
            blk.push(ffn_norm);
            blk.sort_by(|a, b| a.0.cmp(&b.0));
            out.extend(blk);
        }
        out
    }

    /// Writes the model with every 2-D weight as `ty` (norms F32).
    pub fn write(&self, path: &Path, ty: GgmlType) {
        let file_type = match ty {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q8_0 => 7,
            _ => 0,
        };
        let tensors = self.tensors();
        let mut w = GgufWriter::new(self.metadata(file_type)).expect("writer");
        for (name, ne, _) in &tensors {
            let t = if ne.len() == 1 { GgmlType::F32 } else { ty };
            w.add_tensor(TensorSpec::new(name.clone(), t, ne.clone()))
                .expect("add tensor");
        }
        w.write_to_file(path, |i, _, sink| sink.write_f32(&tensors[i].2))
            .expect("write tiny llama");
    }

    /// Writes an F16 file next to `path` and quantizes it with `mix` (llama-quantize's rules:
    /// Q4_K_M gives Q4_K/Q6_K for 256-wide rows and Q5_0/Q8_0 fallbacks for 64-wide ones).
    pub fn write_mix(&self, path: &Path, mix: QuantMix) {
        let f16 = path.with_extension("f16.gguf");
        self.write(&f16, GgmlType::F16);
        tb_gguf::quantize_gguf(&f16, path, mix, 1).expect("quantize tiny llama");
    }
}

/// Installs node-llama-cpp into tools/node_modules on first use (see tb-testkit).
pub fn ensure_node_llama_cpp() {
    tb_testkit::node_llama_cpp();
}

/// Runs `tools/oracles/llama_eval.mjs` on `gguf` with a JSON request (see the script).
pub fn llama_eval(gguf: &Path, request: &serde_json::Value) -> serde_json::Value {
    let out = tb_testkit::llama_oracle("llama_eval.mjs", gguf, &request.to_string());
    serde_json::from_slice(&out).expect("oracle output is JSON")
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}
