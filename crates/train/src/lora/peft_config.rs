//! `LoraConfig`: HF PEFT's LoRA settings with PEFT's field names and defaults, read from and
//! written to `adapter_config.json`.
//!
//! Reading accepts files written by PEFT (which carry many fields for other LoRA variants) as
//! long as every field we do not implement holds its default; a non-default value we do not
//! implement (DoRA, `modules_to_save`, LoftQ, ...) is an error naming the field, never ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{json, Map, Value};
use tb_model::Projection;

use crate::error::{io, Error, Result};

/// PEFT's `target_modules`: a list of names (matched as `name` or `*.name`), a regex (full
/// match against the module's full name), or the shorthand `all-linear`.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetModules {
    /// Module names.
    List(Vec<String>),
    /// A regex that must match the whole module name.
    Regex(String),
    /// Every linear layer except the output layer.
    AllLinear,
}

/// `init_lora_weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitLoraWeights {
    /// `true`: A Kaiming-uniform (a = √5), B zeros: the adapter starts as a no-op.
    Default,
    /// `"gaussian"`: A ~ N(0, 1/r), B zeros.
    Gaussian,
    /// `false`: A and B both get `nn.Linear`'s default Kaiming-uniform init (not a no-op; for
    /// tests and debugging).
    Random,
}

/// `layers_to_transform`: one index or a list.
pub type LayerIndexes = Vec<usize>;

/// HF PEFT's `LoraConfig`, the fields that matter for Llama/Mistral projections.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank (PEFT default 8).
    pub r: usize,
    /// Alpha (PEFT default 8).
    pub lora_alpha: f64,
    /// Dropout on the adapter input (PEFT default 0).
    pub lora_dropout: f64,
    /// Targets; `None` means PEFT's default for llama/mistral (`q_proj`, `v_proj`).
    pub target_modules: Option<TargetModules>,
    /// Modules to leave out even when targeted.
    pub exclude_modules: Option<TargetModules>,
    /// Rank-stabilised scaling (`alpha / sqrt(r)`).
    pub use_rslora: bool,
    /// Per-module rank overrides (key: module name suffix or regex).
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Only these layer indexes (applies to list targets, as in PEFT).
    pub layers_to_transform: Option<LayerIndexes>,
    /// Name of the layer list (`layers`) used with `layers_to_transform`.
    pub layers_pattern: Option<Vec<String>>,
    /// Initialisation.
    pub init_lora_weights: InitLoraWeights,
    /// `CAUSAL_LM` for our models.
    pub task_type: Option<String>,
    /// The base model (llama.cpp's converter and Ollama read it).
    pub base_model_name_or_path: Option<String>,
    /// Base model revision.
    pub revision: Option<String>,
    /// Written as `true` by `save_pretrained`.
    pub inference_mode: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: None,
            exclude_modules: None,
            use_rslora: false,
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
            layers_pattern: None,
            init_lora_weights: InitLoraWeights::Default,
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            revision: None,
            inference_mode: false,
        }
    }
}

/// PEFT fields we do not implement, with the values that mean "not used".
fn is_default_of_unsupported(field: &str, v: &Value) -> Option<bool> {
    let empty = v.is_null()
        || v == &Value::Bool(false)
        || v.as_object().is_some_and(Map::is_empty)
        || v.as_array().is_some_and(Vec::is_empty);
    let known = matches!(
        field,
        "modules_to_save"
            | "use_dora"
            | "lora_bias"
            | "fan_in_fan_out"
            | "megatron_config"
            | "loftq_config"
            | "eva_config"
            | "corda_config"
            | "lora_ga_config"
            | "layer_replication"
            | "trainable_token_indices"
            | "use_qalora"
            | "alora_invocation_tokens"
            | "target_parameters"
            | "arrow_config"
            | "use_bdlora"
            | "kasa_config"
            | "velora_config"
            | "monteclora_config"
            | "runtime_config"
            | "ensure_weight_tying"
    );
    match field {
        "bias" => Some(v == "none"),
        "megatron_core" => Some(v.is_null() || v == "megatron.core"),
        "qalora_group_size" => Some(true),
        "runtime_config" => Some(
            v.is_null()
                || v.as_object().is_some_and(|m| {
                    m.values()
                        .all(|x| x.is_null() || x == &Value::Bool(false) || x == &Value::Bool(true))
                }),
        ),
        _ if known => Some(empty),
        _ => None,
    }
}

impl LoraConfig {
    /// Scale of a module's branch: `alpha / r` or `alpha / sqrt(r)`.
    pub fn scale_for(&self, module: &str) -> f64 {
        let (r, alpha) = (self.rank_for(module), self.alpha_for(module));
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }

    /// Rank of a module (`rank_pattern` first).
    pub fn rank_for(&self, module: &str) -> usize {
        pattern_value(&self.rank_pattern, module).unwrap_or(self.r)
    }

    /// Alpha of a module (`alpha_pattern` first).
    pub fn alpha_for(&self, module: &str) -> f64 {
        pattern_value(&self.alpha_pattern, module).unwrap_or(self.lora_alpha)
    }

    /// Whether a projection (full HF name, e.g. `model.layers.3.self_attn.q_proj`) gets an
    /// adapter, with PEFT's matching rules.
    pub fn targets(&self, module: &str) -> bool {
        let found = match &self.target_modules {
            // PEFT's default for Llama/Mistral.
            None => [Projection::Q, Projection::V]
                .iter()
                .any(|p| suffix_match(module, p.name())),
            // `all-linear`: every projection of the decoder layers.
            Some(TargetModules::AllLinear) => Projection::ALL
                .iter()
                .any(|p| suffix_match(module, p.name())),
            Some(TargetModules::Regex(re)) => full_match(re, module),
            Some(TargetModules::List(list)) => {
                let hit = list.iter().any(|t| suffix_match(module, t));
                hit && self.layer_selected(module)
            }
        };
        let excluded = match &self.exclude_modules {
            None => false,
            Some(TargetModules::AllLinear) => true,
            Some(TargetModules::Regex(re)) => full_match(re, module),
            Some(TargetModules::List(list)) => list.iter().any(|t| suffix_match(module, t)),
        };
        found && !excluded
    }

    fn layer_selected(&self, module: &str) -> bool {
        let Some(indexes) = &self.layers_to_transform else {
            return true;
        };
        let pattern = match &self.layers_pattern {
            Some(names) if !names.is_empty() => format!(r"\.(?:{})\.(\d+)\.", names.join("|")),
            _ => r".*\.[^.]*\.(\d+)\.".to_string(),
        };
        let Ok(re) = Regex::new(&pattern) else {
            return false;
        };
        re.captures(module)
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse::<usize>().ok())
            .is_some_and(|i| indexes.contains(&i))
    }

    /// Checks values (the file path is only used in messages).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::AdapterConfig {
                path: path.to_path_buf(),
                field: field.into(),
                message,
            })
        };
        if self.r == 0 {
            return bad("r", "must be at least 1".into());
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return bad(
                "lora_alpha",
                format!("must be > 0, got {}", self.lora_alpha),
            );
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(
                "lora_dropout",
                format!("must be in [0, 1), got {}", self.lora_dropout),
            );
        }
        for (k, &r) in &self.rank_pattern {
            if r == 0 {
                return bad("rank_pattern", format!("`{k}`: rank must be at least 1"));
            }
        }
        for re in [&self.target_modules, &self.exclude_modules]
            .into_iter()
            .flatten()
        {
            if let TargetModules::Regex(p) = re {
                if let Err(e) = Regex::new(&format!("^(?:{p})$")) {
                    return bad("target_modules", format!("invalid regex `{p}`: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Parses the JSON text of an `adapter_config.json` (`path` is used in messages).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::AdapterConfig {
            path: path.to_path_buf(),
            field: "(file)".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        let Value::Object(map) = value else {
            return Err(Error::AdapterConfig {
                path: path.to_path_buf(),
                field: "(file)".into(),
                message: "expected a JSON object".into(),
            });
        };
        let bad = |field: &str, message: String| Error::AdapterConfig {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let mut c = LoraConfig {
            task_type: None,
            ..Default::default()
        };
        match map.get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            Some(other) => {
                return Err(bad(
                    "peft_type",
                    format!("`{other}` is not supported (only LORA)"),
                ))
            }
            None => return Err(bad("peft_type", "missing (expected \"LORA\")".into())),
        }
        for (key, v) in &map {
            match key.as_str() {
                "peft_type" | "auto_mapping" | "peft_version" => {}
                "r" => c.r = as_usize(v).ok_or_else(|| bad(key, format!("expected an integer, got {v}")))?,
                "lora_alpha" => {
                    c.lora_alpha = v.as_f64().ok_or_else(|| bad(key, format!("expected a number, got {v}")))?
                }
                "lora_dropout" => {
                    c.lora_dropout = v.as_f64().ok_or_else(|| bad(key, format!("expected a number, got {v}")))?
                }
                "target_modules" => c.target_modules = parse_targets(v).map_err(|m| bad(key, m))?,
                "exclude_modules" => c.exclude_modules = parse_targets(v).map_err(|m| bad(key, m))?,
                "use_rslora" => c.use_rslora = v.as_bool().ok_or_else(|| bad(key, format!("expected true/false, got {v}")))?,
                "rank_pattern" => {
                    c.rank_pattern = parse_pattern(v, as_usize).map_err(|m| bad(key, m))?
                }
                "alpha_pattern" => {
                    c.alpha_pattern = parse_pattern(v, Value::as_f64).map_err(|m| bad(key, m))?
                }
                "layers_to_transform" => {
                    c.layers_to_transform = match v {
                        Value::Null => None,
                        Value::Array(a) => Some(
                            a.iter()
                                .map(|x| as_usize(x).ok_or_else(|| bad(key, format!("expected layer indexes, got {x}"))))
                                .collect::<Result<_>>()?,
                        ),
                        x => Some(vec![as_usize(x).ok_or_else(|| bad(key, format!("expected an index or a list, got {x}")))?]),
                    }
                }
                "layers_pattern" => {
                    c.layers_pattern = match v {
                        Value::Null => None,
                        Value::String(s) => Some(vec![s.clone()]),
                        Value::Array(a) => Some(
                            a.iter()
                                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| bad(key, format!("expected strings, got {x}"))))
                                .collect::<Result<_>>()?,
                        ),
                        x => return Err(bad(key, format!("expected a string or a list, got {x}"))),
                    }
                }
                "init_lora_weights" => {
                    c.init_lora_weights = match v {
                        Value::Bool(true) => InitLoraWeights::Default,
                        Value::Bool(false) => InitLoraWeights::Random,
                        Value::String(s) if s == "gaussian" => InitLoraWeights::Gaussian,
                        x => {
                            return Err(bad(
                                key,
                                format!("{x} is not supported (true, false or \"gaussian\"; PiSSA/OLoRA/EVA/LoftQ/CorDA initialisations are not implemented)"),
                            ))
                        }
                    }
                }
                "task_type" => c.task_type = opt_string(v).map_err(|m| bad(key, m))?,
                "base_model_name_or_path" => {
                    c.base_model_name_or_path = opt_string(v).map_err(|m| bad(key, m))?
                }
                "revision" => c.revision = opt_string(v).map_err(|m| bad(key, m))?,
                "inference_mode" => c.inference_mode = v.as_bool().unwrap_or(false),
                other => match is_default_of_unsupported(other, v) {
                    Some(true) => {}
                    Some(false) => {
                        return Err(bad(
                            other,
                            format!("value {v} is not supported by tunebench (only the default is: DoRA, LoRA bias, modules_to_save, fan_in_fan_out, QALoRA and other variants are not implemented)"),
                        ))
                    }
                    None => {
                        let harmless = v.is_null() || v == &Value::Bool(false);
                        if harmless {
                            tracing::warn!(field = other, file = %path.display(), "unknown adapter_config field ignored (it holds no value)");
                        } else {
                            return Err(bad(other, format!("unknown field with value {v}; refusing to guess what it means")));
                        }
                    }
                },
            }
        }
        c.validate(path)?;
        Ok(c)
    }

    /// Reads `adapter_config.json` from a file or an adapter folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("adapter_config.json");
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Self::from_json(&text, &path)
    }

    /// The JSON PEFT's `save_pretrained` writes: every key, sorted, two-space indent.
    pub fn to_json(&self) -> String {
        let targets = |t: &Option<TargetModules>| match t {
            None => Value::Null,
            Some(TargetModules::AllLinear) => json!("all-linear"),
            Some(TargetModules::Regex(r)) => json!(r),
            Some(TargetModules::List(l)) => {
                let mut l = l.clone();
                l.sort();
                l.dedup();
                json!(l)
            }
        };
        let number = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                json!(x as i64)
            } else {
                json!(x)
            }
        };
        let init = match self.init_lora_weights {
            InitLoraWeights::Default => json!(true),
            InitLoraWeights::Random => json!(false),
            InitLoraWeights::Gaussian => json!("gaussian"),
        };
        let alpha_pattern: Map<String, Value> = self
            .alpha_pattern
            .iter()
            .map(|(k, &v)| (k.clone(), number(v)))
            .collect();
        let value = json!({
            "alpha_pattern": alpha_pattern,
            "auto_mapping": Value::Null,
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "eva_config": Value::Null,
            "exclude_modules": targets(&self.exclude_modules),
            "fan_in_fan_out": false,
            "inference_mode": self.inference_mode,
            "init_lora_weights": init,
            "layer_replication": Value::Null,
            "layers_pattern": self.layers_pattern.as_ref().map(|p| if p.len() == 1 { json!(p[0]) } else { json!(p) }),
            "layers_to_transform": self.layers_to_transform,
            "loftq_config": {},
            "lora_alpha": number(self.lora_alpha),
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "megatron_config": Value::Null,
            "megatron_core": "megatron.core",
            "modules_to_save": Value::Null,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": self.rank_pattern,
            "revision": self.revision,
            "target_modules": targets(&self.target_modules),
            "task_type": self.task_type,
            "trainable_token_indices": Value::Null,
            "use_dora": false,
            "use_rslora": self.use_rslora,
        });
        // serde_json's map is ordered by key, like json.dumps(sort_keys=True).
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Builds the config from an experiment's `[lora]` section.
    pub fn from_experiment(l: &crate::config::LoraSection, base: Option<String>) -> Self {
        let target_modules = match &l.targets {
            crate::config::Targets::List(v) => Some(TargetModules::List(v.clone())),
            crate::config::Targets::Pattern(p) if p == "all-linear" => {
                Some(TargetModules::AllLinear)
            }
            crate::config::Targets::Pattern(p) => Some(TargetModules::Regex(p.clone())),
        };
        Self {
            r: l.r,
            lora_alpha: l.alpha,
            lora_dropout: l.dropout,
            target_modules,
            use_rslora: l.rslora,
            base_model_name_or_path: base,
            ..Default::default()
        }
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .map(|u| u as usize)
}

fn opt_string(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        x => Err(format!("expected a string, got {x}")),
    }
}

fn parse_targets(v: &Value) -> std::result::Result<Option<TargetModules>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s == "all-linear" => Ok(Some(TargetModules::AllLinear)),
        Value::String(s) => Ok(Some(TargetModules::Regex(s.clone()))),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("expected module names, got {x}"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(|l| Some(TargetModules::List(l))),
        x => Err(format!(
            "expected a list, a regex or \"all-linear\", got {x}"
        )),
    }
}

fn parse_pattern<T>(
    v: &Value,
    get: impl Fn(&Value) -> Option<T>,
) -> std::result::Result<BTreeMap<String, T>, String> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| {
                get(x)
                    .map(|t| (k.clone(), t))
                    .ok_or_else(|| format!("`{k}`: unexpected value {x}"))
            })
            .collect(),
        x => Err(format!("expected an object, got {x}")),
    }
}

fn suffix_match(module: &str, target: &str) -> bool {
    module == target || module.ends_with(&format!(".{target}"))
}

fn full_match(pattern: &str, module: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(module))
}

/// PEFT's pattern lookup: a key applies when the module name ends with it (after a dot) or
/// the key, as a regex, matches the end of the name that way.
fn pattern_value<T: Copy>(patterns: &BTreeMap<String, T>, module: &str) -> Option<T> {
    patterns.iter().find_map(|(k, &v)| {
        let hit = suffix_match(module, k)
            || Regex::new(&format!(r"^(?:.*\.)?(?:{k})$")).is_ok_and(|re| re.is_match(module));
        hit.then_some(v)
    })
}

/// The config file path inside an adapter folder.
pub fn config_path(adapter_dir: &Path) -> PathBuf {
    adapter_dir.join("adapter_config.json")
}
