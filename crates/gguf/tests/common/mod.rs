//! Test support: locating and loading llama.cpp's prebuilt libraries from node-llama-cpp,
//! and random data generators.
#![allow(dead_code)]

pub mod libllama;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_gguf::GgmlType;

/// `<repo>/tools`.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools")
}

/// `<repo>/target` (shared scratch area for the Python venv).
pub fn repo_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) && p.is_file() {
            return Some(p);
        }
        if p.is_dir() {
            subdirs.push(p);
        }
    }
    subdirs.sort();
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|d| find_file(d, name, depth - 1))
}

/// The folder holding node-llama-cpp's linux-x64 prebuilt `libggml-base.so` and `libllama*.so`.
/// Runs `npm ci` in `tools/` first if `tools/node_modules` is missing; panics (fails the test)
/// if the libraries can't be provisioned. Never skips.
pub fn llama_lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let nm = tb_testkit::node_llama_cpp().join("node_modules");
        let base = nm.join("@node-llama-cpp/linux-x64/bins");
        let lib = find_file(&base, "libggml-base.so", 4).unwrap_or_else(|| {
            panic!(
                "FAILED: libggml-base.so not found under {}; is node-llama-cpp (linux-x64) installed?",
                base.display()
            )
        });
        lib.parent().expect("lib has a parent").to_path_buf()
    })
    .clone()
}

type QuantizeFn = unsafe extern "C" fn(*const f32, *mut u8, i64);
type DequantizeFn = unsafe extern "C" fn(*const u8, *mut f32, i64);

/// llama.cpp's reference codecs from `libggml-base.so`.
pub struct Ggml {
    lib: libloading::Library,
}

impl Ggml {
    /// Loads the library (once per test binary).
    pub fn get() -> &'static Ggml {
        static LIB: OnceLock<Ggml> = OnceLock::new();
        LIB.get_or_init(|| {
            let path = llama_lib_dir().join("libggml-base.so");
            // SAFETY: loading a C library whose initialisers have no preconditions
            let lib = unsafe { libloading::Library::new(&path) }
                .unwrap_or_else(|e| panic!("FAILED to load {}: {e}", path.display()));
            Ggml { lib }
        })
    }

    fn names(ty: GgmlType) -> (&'static str, &'static str) {
        match ty {
            GgmlType::F16 => ("ggml_fp32_to_fp16_row", "ggml_fp16_to_fp32_row"),
            GgmlType::BF16 => ("ggml_fp32_to_bf16_row_ref", "ggml_bf16_to_fp32_row"),
            GgmlType::Q4_0 => ("quantize_row_q4_0_ref", "dequantize_row_q4_0"),
            GgmlType::Q4_1 => ("quantize_row_q4_1_ref", "dequantize_row_q4_1"),
            GgmlType::Q5_0 => ("quantize_row_q5_0_ref", "dequantize_row_q5_0"),
            GgmlType::Q5_1 => ("quantize_row_q5_1_ref", "dequantize_row_q5_1"),
            GgmlType::Q8_0 => ("quantize_row_q8_0_ref", "dequantize_row_q8_0"),
            GgmlType::Q4_K => ("quantize_row_q4_K_ref", "dequantize_row_q4_K"),
            GgmlType::Q5_K => ("quantize_row_q5_K_ref", "dequantize_row_q5_K"),
            GgmlType::Q6_K => ("quantize_row_q6_K_ref", "dequantize_row_q6_K"),
            other => panic!("no ggml reference codec wired for {other}"),
        }
    }

    /// `quantize_row_*_ref(x, y, n)`.
    pub fn quantize(&self, ty: GgmlType, x: &[f32]) -> Vec<u8> {
        assert_eq!(x.len() % ty.block_size(), 0);
        let mut out = vec![0u8; x.len() / ty.block_size() * ty.type_size()];
        let name = Self::names(ty).0;
        // SAFETY: the symbol has the C signature (const float *, void *, int64_t); `out` holds
        // exactly n/blck blocks
        unsafe {
            let f: libloading::Symbol<QuantizeFn> = self
                .lib
                .get(name.as_bytes())
                .unwrap_or_else(|e| panic!("symbol {name}: {e}"));
            f(x.as_ptr(), out.as_mut_ptr(), x.len() as i64);
        }
        out
    }

    /// `dequantize_row_*(x, y, n)`.
    pub fn dequantize(&self, ty: GgmlType, data: &[u8]) -> Vec<f32> {
        assert_eq!(data.len() % ty.type_size(), 0);
        let n = data.len() / ty.type_size() * ty.block_size();
        let mut out = vec![0f32; n];
        let name = Self::names(ty).1;
        // SAFETY: (const void *, float *, int64_t) with `data` holding n/blck blocks
        unsafe {
            let f: libloading::Symbol<DequantizeFn> = self
                .lib
                .get(name.as_bytes())
                .unwrap_or_else(|e| panic!("symbol {name}: {e}"));
            f(data.as_ptr(), out.as_mut_ptr(), n as i64);
        }
        out
    }
}

/// Deterministic random data of several shapes.
pub struct Gen {
    rng: StdRng,
}

impl Gen {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Gen {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f32 {
        loop {
            let u: f32 = self.rng.random();
            if u > 0.0 {
                return u;
            }
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform() as f64;
        let u2 = self.uniform() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Standard Cauchy (Student-t with 1 degree of freedom): very heavy tails.
    pub fn cauchy(&mut self) -> f32 {
        let u = self.uniform() as f64;
        (std::f64::consts::PI * (u - 0.5)).tan().clamp(-1e6, 1e6) as f32
    }

    /// Student-t with 3 degrees of freedom.
    pub fn student_t3(&mut self) -> f32 {
        let z = self.normal();
        let chi2: f32 = (0..3).map(|_| self.normal().powi(2)).sum();
        z / (chi2 / 3.0).sqrt()
    }

    /// Integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// `n` values from `f`.
    pub fn vec(&mut self, n: usize, mut f: impl FnMut(&mut Self) -> f32) -> Vec<f32> {
        (0..n).map(|_| f(self)).collect()
    }
}

/// Shape of a tiny random llama model.
#[derive(Debug, Clone)]
pub struct TinyLlama {
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_vocab: u64,
    /// No `output.weight` (embeddings tied).
    pub tied: bool,
    /// Type of the 2-D weights (F16, BF16 or F32); norms are F32.
    pub weight_type: GgmlType,
    pub seed: u64,
}

impl TinyLlama {
    /// Minimal but complete metadata for llama.cpp to load a `llama` model, with a
    /// SentencePiece-style vocab (`<unk>`, `<s>`, `</s>`, 256 byte tokens, then pieces).
    pub fn metadata(&self) -> tb_gguf::Metadata {
        use tb_gguf::{Metadata, Value};
        let mut md = Metadata::new();
        md.set("general.architecture", "llama");
        md.set("general.type", "model");
        md.set("general.name", "tunebench tiny test model");
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
        let file_type = match self.weight_type {
            GgmlType::F32 => 0u32,
            GgmlType::BF16 => 32,
            _ => 1,
        };
        md.set("general.file_type", file_type);
        md.set("tokenizer.ggml.model", "llama");
        md.set("tokenizer.ggml.pre", "default");
        let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
        let mut types = vec![2i32, 3, 3];
        for b in 0..256 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        let mut i = 0;
        while (tokens.len() as u64) < self.n_vocab {
            tokens.push(format!("\u{2581}t{i}"));
            types.push(1);
            i += 1;
        }
        tokens.truncate(self.n_vocab as usize);
        types.truncate(self.n_vocab as usize);
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
            Value::String("{% for m in messages %}{{ m['content'] }}{% endfor %}".into()),
        );
        md
    }

    /// Tensors in HF-converter order (token_embd, layers, output_norm, output) with random
    /// f32 values: `(name, type, ne, values)`.
    pub fn tensors(&self) -> Vec<(String, GgmlType, Vec<u64>, Vec<f32>)> {
        let mut g = Gen::new(self.seed);
        let hd = self.n_embd / self.n_head as u64;
        let kv = hd * self.n_head_kv as u64;
        let wt = self.weight_type;
        let mut out = Vec::new();
        let mat = |g: &mut Gen, name: String, ne0: u64, ne1: u64| {
            let v = g.vec((ne0 * ne1) as usize, |g| 0.02 * g.normal());
            (name, wt, vec![ne0, ne1], v)
        };
        let norm = |g: &mut Gen, name: String, n: u64| {
            let v = g.vec(n as usize, |g| 1.0 + 0.1 * g.normal());
            (name, GgmlType::F32, vec![n], v)
        };
        out.push(mat(
            &mut g,
            "token_embd.weight".into(),
            self.n_embd,
            self.n_vocab,
        ));
        for i in 0..self.n_layer {
            out.push(norm(
                &mut g,
                format!("blk.{i}.attn_norm.weight"),
                self.n_embd,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.attn_q.weight"),
                self.n_embd,
                self.n_embd,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.attn_k.weight"),
                self.n_embd,
                kv,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.attn_v.weight"),
                self.n_embd,
                kv,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.attn_output.weight"),
                self.n_embd,
                self.n_embd,
            ));
            out.push(norm(
                &mut g,
                format!("blk.{i}.ffn_norm.weight"),
                self.n_embd,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.ffn_gate.weight"),
                self.n_embd,
                self.n_ff,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.ffn_up.weight"),
                self.n_embd,
                self.n_ff,
            ));
            out.push(mat(
                &mut g,
                format!("blk.{i}.ffn_down.weight"),
                self.n_ff,
                self.n_embd,
            ));
        }
        out.push(norm(&mut g, "output_norm.weight".into(), self.n_embd));
        if !self.tied {
            out.push(mat(
                &mut g,
                "output.weight".into(),
                self.n_embd,
                self.n_vocab,
            ));
        }
        out
    }

    /// Writes the model to `path` with our writer.
    pub fn write(&self, path: &Path) {
        self.write_tensors(path, &self.tensors());
    }

    /// Writes the model's metadata with `tensors` (from [`TinyLlama::tensors`], possibly edited).
    pub fn write_tensors(&self, path: &Path, tensors: &[(String, GgmlType, Vec<u64>, Vec<f32>)]) {
        let mut w = tb_gguf::GgufWriter::new(self.metadata()).expect("writer");
        for (name, ty, ne, _) in tensors {
            w.add_tensor(tb_gguf::TensorSpec::new(name.clone(), *ty, ne.clone()))
                .expect("add tensor");
        }
        w.write_to_file(path, |i, _, sink| sink.write_f32(&tensors[i].3))
            .expect("write tiny llama");
    }
}

/// Python with PyPI `gguf` installed (`target/pyenv-gguf`, see tb-testkit).
pub fn gguf_python() -> PathBuf {
    tb_testkit::gguf_python()
}
