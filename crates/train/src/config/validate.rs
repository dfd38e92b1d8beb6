//! The range and consistency checks of an experiment file ([`ExperimentConfig::validate`]).

use super::{ExperimentConfig, Targets};
use crate::error::{Error, Result};

// Upper bounds of the counts: far above any real fine-tune, low enough that the trainers'
// products (row length = `max_seq_len × micro_batch`, steps = `epochs × steps per epoch`)
// cannot overflow and a typo cannot ask for an absurd allocation.
const MAX_SEQ_LEN: usize = 1 << 20;
const MAX_BATCH: usize = 1 << 16;
const MAX_EPOCHS: usize = 10_000;
const MAX_STEPS: usize = 1_000_000;
const MAX_RANK: usize = 1 << 16;

/// `name` becomes part of file names (`<name>-q4_k_m.gguf`): letters, digits, `-`, `_` and
/// `.`, not starting with a dot, at most 100 characters.
fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && !name.starts_with('.')
        && name.chars().all(ok_char);
    if ok {
        return Ok(());
    }
    let shown: String = name.chars().take(100).collect();
    Err(Error::ConfigValue {
        field: "name".into(),
        message: format!(
            "`{shown}`: it names output files, so use 1-100 letters, digits, `-`, `_` or `.` (not starting with `.`)"
        ),
    })
}

impl ExperimentConfig {
    /// Checks ranges and consistency; every message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::ConfigValue {
                field: field.into(),
                message,
            })
        };
        check_name(&self.name)?;
        if !matches!(self.model.dtype.as_str(), "f32" | "bf16") {
            return bad(
                "model.dtype",
                format!("`{}` is not one of f32, bf16", self.model.dtype),
            );
        }
        let t = &self.train;
        for (field, value, min, max) in [
            ("data.max_seq_len", self.data.max_seq_len, 2, MAX_SEQ_LEN),
            ("train.micro_batch", t.micro_batch, 1, MAX_BATCH),
            ("train.grad_accum", t.grad_accum, 1, MAX_BATCH),
            ("train.epochs", t.epochs, 0, MAX_EPOCHS),
            ("train.max_steps", t.max_steps, 0, MAX_STEPS),
            ("lora.r", self.lora.r, 1, MAX_RANK),
            (
                "eval.max_new_tokens",
                self.eval.max_new_tokens,
                0,
                MAX_SEQ_LEN,
            ),
            ("eval.num_ctx", self.eval.num_ctx, 1, MAX_SEQ_LEN),
        ] {
            if value < min {
                return bad(field, format!("must be at least {min}, got {value}"));
            }
            if value > max {
                return bad(field, format!("must be at most {max}, got {value}"));
            }
        }
        if t.epochs == 0 && t.max_steps == 0 {
            return bad("train.epochs", "set epochs or max_steps above 0".into());
        }
        if t.log_every == 0 {
            return bad("train.log_every", "must be at least 1".into());
        }
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad("optimizer.lr", format!("must be > 0, got {}", o.lr));
        }
        for (i, b) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return bad(
                    &format!("optimizer.betas[{i}]"),
                    format!("must be in [0, 1), got {b}"),
                );
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return bad("optimizer.eps", format!("must be > 0, got {}", o.eps));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return bad(
                "optimizer.weight_decay",
                format!("must be >= 0, got {}", o.weight_decay),
            );
        }
        if !(o.max_grad_norm.is_finite() && o.max_grad_norm >= 0.0) {
            return bad(
                "optimizer.max_grad_norm",
                format!("must be >= 0 (0 = no clipping), got {}", o.max_grad_norm),
            );
        }
        if !(0.0..1.0).contains(&o.warmup_ratio) {
            return bad(
                "optimizer.warmup_ratio",
                format!("must be in [0, 1), got {}", o.warmup_ratio),
            );
        }
        let l = &self.lora;
        if !(l.alpha.is_finite() && l.alpha > 0.0) {
            return bad("lora.alpha", format!("must be > 0, got {}", l.alpha));
        }
        if !(0.0..1.0).contains(&l.dropout) {
            return bad(
                "lora.dropout",
                format!("must be in [0, 1), got {}", l.dropout),
            );
        }
        if let Targets::List(list) = &l.targets {
            if list.is_empty() {
                return bad("lora.targets", "the list is empty".into());
            }
        }
        self.check_export()
    }

    /// `[export] quants`: every name one `tunebench export gguf --quant` takes, so a typo stops
    /// the command before training rather than after it.
    fn check_export(&self) -> Result<()> {
        for q in &self.export.quants {
            if q.parse::<tb_gguf::QuantMix>().is_err() {
                let known: Vec<String> = tb_gguf::QuantMix::ALL
                    .iter()
                    .map(|m| m.name().to_ascii_lowercase())
                    .collect();
                return Err(Error::ConfigValue {
                    field: "export.quants".into(),
                    message: format!(
                        "`{q}` is not a GGUF type (expected {}; an empty list writes no GGUF)",
                        known.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::ExperimentConfig;

    fn with_export(quants: &str) -> crate::Result<ExperimentConfig> {
        ExperimentConfig::parse(&format!(
            "[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\nmax_steps = 1\n[export]\nquants = {quants}\n"
        ))
    }

    #[test]
    fn export_quants_are_gguf_types() {
        let c = with_export(r#"["q4_k_m", "Q8_0", "f16"]"#).unwrap();
        assert_eq!(c.export.quants.len(), 3);
        assert!(with_export("[]").unwrap().export.quants.is_empty());
        let e = with_export(r#"["q4_k_m", "q9_9"]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("export.quants") && e.contains("q9_9"), "{e}");
        // `none` is a command-line word (`--gguf none`); in the file it is an empty list.
        assert!(with_export(r#"["none"]"#).is_err());
    }

    #[test]
    fn no_export_section_means_no_gguf() {
        let c = ExperimentConfig::parse("[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n").unwrap();
        assert!(c.export.quants.is_empty());
    }
}
