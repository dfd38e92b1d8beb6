//! Opening a GGUF for the engine: hyper-parameters from `llama.*` metadata, every tensor checked
//! up front, weights left in the mapping; optionally a LoRA adapter GGUF on top (`lora.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tb_gguf::{GgmlType, GgufFile};
use tb_model::ModelConfig;

use super::lora::{load_adapter, LoraAdapter, LoraDelta, Target};
use super::matmul::{row_decoder, Kernel, QuantMatrix, RowDecoder};
use super::{Error, Result};

/// The numbers the forward pass needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Residual width.
    pub n_embd: usize,
    /// MLP width.
    pub n_ff: usize,
    /// Decoder layers.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Longest context (`llama.context_length`).
    pub n_ctx: usize,
}

/// Where a matrix lives in the file.
#[derive(Debug, Clone)]
pub(crate) struct MatrixRef {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub start: usize,
    pub len: usize,
    pub decode: RowDecoder,
    /// The LoRA delta added to this weight's products, when an adapter adapts it.
    pub lora: Option<Arc<LoraDelta>>,
}

/// One decoder layer's tensors.
#[derive(Debug, Clone)]
pub(crate) struct LayerRefs {
    pub attn_norm: Vec<f32>,
    pub wq: MatrixRef,
    pub wk: MatrixRef,
    pub wv: MatrixRef,
    pub wo: MatrixRef,
    pub ffn_norm: Vec<f32>,
    pub gate: MatrixRef,
    pub up: MatrixRef,
    pub down: MatrixRef,
}

/// A weight an adapter may adapt: `output.weight`, or projection `p` (in
/// [`LayerRefs::projections`] order) of layer `i`.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Output,
    Layer(usize, usize),
}

impl LayerRefs {
    /// The seven projections: q, k, v, output, gate, up, down.
    fn projections(&self) -> [&MatrixRef; 7] {
        [
            &self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down,
        ]
    }
}

/// A llama-arch GGUF ready to run.
pub struct EngineModel {
    pub(crate) file: GgufFile,
    pub(crate) path: PathBuf,
    pub(crate) hyper: Hyper,
    pub(crate) config: ModelConfig,
    pub(crate) token_embd: MatrixRef,
    pub(crate) output: MatrixRef,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) layers: Vec<LayerRefs>,
    pub(crate) adapter: Option<LoraAdapter>,
}

impl std::fmt::Debug for EngineModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineModel")
            .field("path", &self.path)
            .field("hyper", &self.hyper)
            .finish()
    }
}

struct Loader<'a> {
    file: &'a GgufFile,
    path: &'a Path,
}

impl Loader<'_> {
    fn tensor_err(&self, tensor: &str, message: impl Into<String>) -> Error {
        Error::Tensor {
            path: self.path.to_path_buf(),
            tensor: tensor.to_owned(),
            message: message.into(),
        }
    }

    fn info(&self, name: &str) -> Result<&tb_gguf::TensorInfo> {
        self.file
            .tensor(name)
            .map_err(|_| self.tensor_err(name, "missing from the file"))
    }

    /// A `[rows, cols]` matrix (GGUF `ne = [cols, rows]`).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<MatrixRef> {
        let info = self.info(name)?;
        let want = [cols as u64, rows as u64];
        let ne: Vec<u64> = info.ne.iter().copied().chain([1, 1]).take(4).collect();
        if ne[..2] != want || ne[2..].iter().any(|&d| d != 1) {
            return Err(self.tensor_err(
                name,
                format!(
                    "has dims {:?} (ggml order), the metadata implies {want:?}",
                    info.ne
                ),
            ));
        }
        let decode = row_decoder(info.ty).ok_or_else(|| Error::UnsupportedType {
            path: self.path.to_path_buf(),
            tensor: name.to_owned(),
            ty: info.ty,
        })?;
        let bytes = self
            .file
            .data_of(info)
            .map_err(|e| self.tensor_err(name, e.to_string()))?;
        let expected = info.ty.tensor_size(&want);
        if expected != Some(bytes.len() as u64) {
            return Err(self.tensor_err(
                name,
                format!(
                    "holds {} bytes, a {rows}x{cols} {} matrix needs {expected:?}",
                    bytes.len(),
                    info.ty
                ),
            ));
        }
        Ok(MatrixRef {
            ty: info.ty,
            rows,
            cols,
            start: info.file_offset as usize,
            len: bytes.len(),
            decode,
            lora: None,
        })
    }

    /// A 1-D f32 vector of `n` values (any float type).
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.n_elements() != n as u64
            || info.ne.len() > 1 && info.ne[1..].iter().any(|&d| d != 1)
        {
            return Err(self.tensor_err(name, format!("has dims {:?}, expected [{n}]", info.ne)));
        }
        if row_decoder(info.ty).is_none() {
            return Err(Error::UnsupportedType {
                path: self.path.to_path_buf(),
                tensor: name.to_owned(),
                ty: info.ty,
            });
        }
        self.file
            .tensor_f32(name)
            .map_err(|e| self.tensor_err(name, e.to_string()))
    }
}

impl EngineModel {
    /// Opens and checks `path`. Errors name the file and, for tensor problems, the tensor.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = GgufFile::open(path).map_err(|source| Error::Gguf {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let config = ModelConfig::from_gguf(&file).map_err(|source| Error::Model {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let c = &config;
        let hyper = Hyper {
            n_embd: c.hidden_size,
            n_ff: c.intermediate_size,
            n_layer: c.num_hidden_layers,
            n_head: c.num_attention_heads,
            n_head_kv: c.num_key_value_heads,
            head_dim: c.head_dim,
            rms_eps: c.rms_norm_eps as f32,
            rope_theta: c.rope_theta as f32,
            n_vocab: c.vocab_size,
            n_ctx: c.max_position_embeddings,
        };
        let h = &hyper;
        let l = Loader { file: &file, path };
        let (q_out, kv_out) = (h.n_head * h.head_dim, h.n_head_kv * h.head_dim);
        let token_embd = l.matrix("token_embd.weight", h.n_vocab, h.n_embd)?;
        let output = if config.tie_word_embeddings {
            token_embd.clone()
        } else {
            l.matrix("output.weight", h.n_vocab, h.n_embd)?
        };
        let output_norm = l.vector("output_norm.weight", h.n_embd)?;
        let mut layers = Vec::with_capacity(h.n_layer);
        for i in 0..h.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(LayerRefs {
                attn_norm: l.vector(&n("attn_norm"), h.n_embd)?,
                wq: l.matrix(&n("attn_q"), q_out, h.n_embd)?,
                wk: l.matrix(&n("attn_k"), kv_out, h.n_embd)?,
                wv: l.matrix(&n("attn_v"), kv_out, h.n_embd)?,
                wo: l.matrix(&n("attn_output"), h.n_embd, q_out)?,
                ffn_norm: l.vector(&n("ffn_norm"), h.n_embd)?,
                gate: l.matrix(&n("ffn_gate"), h.n_ff, h.n_embd)?,
                up: l.matrix(&n("ffn_up"), h.n_ff, h.n_embd)?,
                down: l.matrix(&n("ffn_down"), h.n_embd, h.n_ff)?,
            });
        }
        tracing::debug!(path = %path.display(), ?hyper, "embedded engine: model checked");
        Ok(Self {
            path: path.to_path_buf(),
            hyper,
            config,
            token_embd,
            output,
            output_norm,
            layers,
            file,
            adapter: None,
        })
    }

    /// Opens `path` as [`EngineModel::open`] does and, when `adapter` is given, applies that
    /// LoRA adapter GGUF to it (`lora.rs` has the checks and the arithmetic; the base weights
    /// stay encoded). Adapter errors name the adapter file and, for tensor problems, the tensor.
    pub fn open_with_adapter(path: impl AsRef<Path>, adapter: Option<&Path>) -> Result<Self> {
        let mut model = Self::open(path)?;
        if let Some(adapter) = adapter {
            model.apply_adapter(adapter)?;
        }
        Ok(model)
    }

    /// Applies the LoRA adapter GGUF at `adapter` (see [`EngineModel::open_with_adapter`]); a
    /// model takes at most one. On error the model is unchanged.
    pub fn apply_adapter(&mut self, adapter: &Path) -> Result<()> {
        if let Some(a) = &self.adapter {
            return Err(Error::InvalidInput(format!(
                "{}: the model already has the adapter {}",
                adapter.display(),
                a.path.display()
            )));
        }
        let arch = self
            .file
            .metadata()
            .get_str("general.architecture")
            .map_err(|source| Error::Gguf {
                path: self.path.clone(),
                source: Box::new(source),
            })?
            .to_owned();
        let loaded = load_adapter(adapter, &arch, |name| match self.adaptable(name) {
            Some(m) => Ok(Some(Target {
                name: name.to_owned(),
                rows: m.rows,
                cols: m.cols,
            })),
            None if self.file.tensor(name).is_ok() => Err(Error::Tensor {
                path: adapter.to_path_buf(),
                tensor: format!("{name}.lora_a"),
                message: format!(
                    "adapts `{name}`; the embedded engine applies LoRA to the layer \
                     projections and output.weight only"
                ),
            }),
            None => Ok(None),
        })?;
        for (name, delta) in loaded.deltas {
            let delta = Arc::new(delta);
            if let Some(m) = self.adaptable_mut(&name) {
                m.lora = Some(delta);
            }
        }
        tracing::info!(
            model = %self.path.display(),
            adapter = %adapter.display(),
            targets = loaded.info.targets,
            "LoRA adapter applied"
        );
        self.adapter = Some(loaded.info);
        Ok(())
    }

    /// Which weight a GGUF tensor name stands for, among those an adapter may adapt.
    fn adaptable_slot(&self, name: &str) -> Option<Slot> {
        if name == "output.weight" && !self.config.tie_word_embeddings {
            return Some(Slot::Output);
        }
        let rest = name.strip_prefix("blk.")?;
        let (layer, proj) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let proj = match proj.strip_suffix(".weight")? {
            "attn_q" => 0,
            "attn_k" => 1,
            "attn_v" => 2,
            "attn_output" => 3,
            "ffn_gate" => 4,
            "ffn_up" => 5,
            "ffn_down" => 6,
            _ => return None,
        };
        (layer < self.layers.len() && self.file.tensor(name).is_ok())
            .then_some(Slot::Layer(layer, proj))
    }

    fn adaptable(&self, name: &str) -> Option<&MatrixRef> {
        Some(match self.adaptable_slot(name)? {
            Slot::Output => &self.output,
            Slot::Layer(i, p) => self.layers[i].projections()[p],
        })
    }

    fn adaptable_mut(&mut self, name: &str) -> Option<&mut MatrixRef> {
        Some(match self.adaptable_slot(name)? {
            Slot::Output => &mut self.output,
            Slot::Layer(i, p) => {
                let l = &mut self.layers[i];
                [
                    &mut l.wq,
                    &mut l.wk,
                    &mut l.wv,
                    &mut l.wo,
                    &mut l.gate,
                    &mut l.up,
                    &mut l.down,
                ]
                .into_iter()
                .nth(p)?
            }
        })
    }

    /// The LoRA adapter applied at open, if any.
    pub fn adapter(&self) -> Option<&LoraAdapter> {
        self.adapter.as_ref()
    }

    /// The hyper-parameters.
    pub fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying GGUF (metadata, tokenizer keys).
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    /// The encoded type of each weight matrix, counted (for reports).
    pub fn weight_types(&self) -> Vec<(GgmlType, usize)> {
        let mut counts: std::collections::BTreeMap<u32, (GgmlType, usize)> = Default::default();
        let mut add = |m: &MatrixRef| counts.entry(m.ty.id()).or_insert((m.ty, 0)).1 += 1;
        add(&self.token_embd);
        if !self.config.tie_word_embeddings {
            add(&self.output);
        }
        for l in &self.layers {
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down] {
                add(m);
            }
        }
        counts.into_values().collect()
    }

    /// `y = x · Wᵀ` for the weight `m`, plus its LoRA delta when it has one.
    ///
    /// # Shapes
    /// - `x`: `[n, m.cols]`
    /// - returns `[n, m.rows]`
    pub(crate) fn project(&self, m: &MatrixRef, x: &[f32], n: usize, kernel: Kernel) -> Vec<f32> {
        let mut y = self.matrix(m).matmul(x, n, kernel);
        if let Some(delta) = &m.lora {
            delta.add_to(x, n, &mut y, kernel);
        }
        y
    }

    pub(crate) fn matrix<'a>(&'a self, m: &MatrixRef) -> QuantMatrix<'a> {
        QuantMatrix {
            ty: m.ty,
            rows: m.rows,
            cols: m.cols,
            data: &self.file.as_bytes()[m.start..m.start + m.len],
            decode: m.decode,
        }
    }
}
