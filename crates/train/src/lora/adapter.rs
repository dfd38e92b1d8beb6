//! PEFT adapter folders: `adapter_config.json` + `adapter_model.safetensors` with PEFT's key
//! names (`base_model.model.<module>.lora_{A,B}.weight`), shapes (`A [r, in]`, `B [out, r]`)
//! and F32 dtype, saved the way `PeftModel.save_pretrained` does, and loaded onto a model with
//! every mismatch named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::optimizer::NamedTensor;
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use tb_gguf::fsio::write_atomic;
use tb_model::CausalLm;

use super::init::{branch_from_peft, transpose, BranchShape};
use super::peft_config::LoraConfig;
use super::trainable::host_values;
use crate::error::{io, Error, Result};

/// File name of the weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// File name of the config.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// PEFT key of a module's A or B.
pub fn peft_key(module: &str, which: char) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

/// The adapter tensors of a model in PEFT layout, A then B per module, in model order.
pub fn adapter_tensors<B: Backend>(model: &CausalLm<B>) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for (name, lin) in model.projections() {
        let Some(lora) = &lin.lora else { continue };
        let (d_in, d_out, r) = super::trainable::branch_dims(lora);
        let a = host_values(lora.lora_a.val());
        let b = host_values(lora.lora_b.val());
        out.push(NamedTensor {
            name: peft_key(&name, 'A'),
            shape: vec![r, d_in],
            data: transpose(&a, d_in, r),
        });
        out.push(NamedTensor {
            name: peft_key(&name, 'B'),
            shape: vec![d_out, r],
            data: transpose(&b, r, d_out),
        });
    }
    out
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created; files
/// replaced atomically). `inference_mode` is written as `true`, as PEFT does.
pub fn save_adapter(dir: &Path, config: &LoraConfig, tensors: &[NamedTensor]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Adapter {
                    path: dir.to_path_buf(),
                    message: format!("`{}`: {e}", t.name),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Adapter {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join(ADAPTER_WEIGHTS), &data)?;
    let mut saved = config.clone();
    saved.inference_mode = true;
    Ok(write_atomic(
        &dir.join(ADAPTER_CONFIG),
        saved.to_json().as_bytes(),
    )?)
}

/// One module's A and B read from a file (PEFT layout).
#[derive(Debug, Clone)]
pub struct ModuleAdapter {
    /// `[r, in]`.
    pub a: NamedTensor,
    /// `[out, r]`.
    pub b: NamedTensor,
}

/// An adapter folder read from disk.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Folder.
    pub dir: PathBuf,
    /// Its config.
    pub config: LoraConfig,
    /// Per module (HF module name).
    pub modules: BTreeMap<String, ModuleAdapter>,
}

impl Adapter {
    /// Reads an adapter folder; keys that are not LoRA A/B tensors are errors.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config = LoraConfig::load(&dir)?;
        let path = dir.join(ADAPTER_WEIGHTS);
        if !path.is_file() && dir.join("adapter_model.bin").is_file() {
            return Err(Error::Adapter {
                path,
                message: "only adapter_model.bin (pickle) is present; save the adapter with safe_serialization=True".into(),
            });
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let bad = |message: String| Error::Adapter {
            path: path.clone(),
            message,
        };
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut a_parts: BTreeMap<String, NamedTensor> = BTreeMap::new();
        let mut b_parts: BTreeMap<String, NamedTensor> = BTreeMap::new();
        for (key, view) in st.tensors() {
            let (module, which) = parse_key(&key).ok_or_else(|| {
                bad(format!(
                    "tensor `{key}` is not a LoRA A/B weight (DoRA magnitudes, LoRA biases, embeddings and modules_to_save are not supported)"
                ))
            })?;
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(bad(format!(
                        "tensor `{key}` has dtype {other:?} (expected F32, F16 or BF16)"
                    )))
                }
            };
            if view.shape().len() != 2 {
                return Err(bad(format!(
                    "tensor `{key}` has shape {:?}, expected 2 dimensions",
                    view.shape()
                )));
            }
            let t = NamedTensor {
                name: key.clone(),
                shape: view.shape().to_vec(),
                data,
            };
            if which == 'A' {
                a_parts.insert(module, t);
            } else {
                b_parts.insert(module, t);
            }
        }
        let mut modules = BTreeMap::new();
        for (module, a) in a_parts {
            let b = b_parts
                .remove(&module)
                .ok_or_else(|| bad(format!("`{}` has no matching lora_B", a.name)))?;
            if a.shape[0] != b.shape[1] {
                return Err(bad(format!(
                    "`{module}`: lora_A is {:?} and lora_B is {:?}; their ranks differ",
                    a.shape, b.shape
                )));
            }
            let r = config.rank_for(&module);
            if a.shape[0] != r {
                return Err(bad(format!(
                    "`{module}`: rank {} in the file but {r} in adapter_config.json",
                    a.shape[0]
                )));
            }
            modules.insert(module, ModuleAdapter { a, b });
        }
        if let Some((module, _)) = b_parts.into_iter().next() {
            return Err(bad(format!("`{module}` has lora_B but no lora_A")));
        }
        if modules.is_empty() {
            return Err(bad("holds no LoRA tensors".into()));
        }
        Ok(Self {
            dir,
            config,
            modules,
        })
    }

    /// Checks that this adapter fits a model with these projections (name → (in, out)) and
    /// says exactly what differs otherwise.
    pub fn check_against(&self, projections: &BTreeMap<String, (usize, usize)>) -> Result<()> {
        let path = self.dir.join(ADAPTER_WEIGHTS);
        let mut problems = Vec::new();
        for (module, m) in &self.modules {
            match projections.get(module) {
                None => problems.push(format!(
                    "`{module}` does not exist in the base model (it has {} projections, e.g. `{}`)",
                    projections.len(),
                    projections.keys().next().cloned().unwrap_or_default()
                )),
                Some(&(d_in, d_out)) => {
                    if m.a.shape[1] != d_in {
                        problems.push(format!(
                            "`{}` is {:?}: {} inputs, but the base `{module}` takes {d_in}",
                            m.a.name, m.a.shape, m.a.shape[1]
                        ));
                    }
                    if m.b.shape[0] != d_out {
                        problems.push(format!(
                            "`{}` is {:?}: {} outputs, but the base `{module}` gives {d_out}",
                            m.b.name, m.b.shape, m.b.shape[0]
                        ));
                    }
                }
            }
        }
        for name in projections.keys() {
            if self.config.targets(name) && !self.modules.contains_key(name) {
                problems.push(format!(
                    "adapter_config.json targets `{name}` but the file has no tensors for it"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let n = problems.len();
            problems.truncate(6);
            Err(Error::Adapter {
                path,
                message: format!(
                    "adapter does not fit this base model (made for another base model?) ({n} problem(s)): {}{}",
                    problems.join("; "),
                    if n > 6 { "; ..." } else { "" }
                ),
            })
        }
    }

    /// Attaches this adapter to a model (dropout as configured; base frozen).
    pub fn apply<B: Backend>(&self, model: CausalLm<B>, device: &B::Device) -> Result<CausalLm<B>> {
        let mut model = model.no_grad();
        let shapes: BTreeMap<String, (usize, usize)> = model
            .projections()
            .into_iter()
            .map(|(n, l)| (n, (l.d_input(), l.d_output())))
            .collect();
        self.check_against(&shapes)?;
        for (name, lin) in model.projections_mut() {
            let Some(m) = self.modules.get(&name) else {
                continue;
            };
            let (d_in, d_out, r) = (lin.d_input(), lin.d_output(), m.a.shape[0]);
            lin.lora = Some(branch_from_peft(
                &m.a.data,
                &m.b.data,
                BranchShape { d_in, d_out, r },
                self.config.scale_for(&name),
                self.config.lora_dropout,
                device,
            ));
        }
        Ok(model)
    }
}

/// `base_model.model.<module>.lora_A.weight` → (`<module>`, 'A'); also accepts PEFT's
/// in-memory names with the adapter name (`lora_A.default.weight`).
fn parse_key(key: &str) -> Option<(String, char)> {
    let rest = key.strip_prefix("base_model.model.")?;
    for which in ['A', 'B'] {
        for suffix in [
            format!(".lora_{which}.weight"),
            format!(".lora_{which}.default.weight"),
        ] {
            if let Some(module) = rest.strip_suffix(&suffix) {
                return Some((module.to_string(), which));
            }
        }
    }
    None
}
