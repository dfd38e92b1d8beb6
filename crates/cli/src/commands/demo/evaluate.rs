//! The demo's evaluation steps: which items `tunebench eval` answers (both splits, a fixed
//! sample), with the experiment file's `[eval]` settings, and the quantization-damage run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tb_train::ExperimentConfig;

use super::answer_engine::AnswerEngine;
use super::attempt::Attempt;
use super::{tunebench_env, DemoArgs, QUICK_MAX_TOKENS};

/// A model the demo evaluates: a GGUF, and a LoRA GGUF served on it unmerged (Ollama's
/// `ADAPTER`) when `adapter` is set.
#[derive(Debug, Clone, Copy)]
pub(super) struct EvalModel<'a> {
    /// Its name in the results and the report.
    pub name: &'a str,
    /// The (base) GGUF.
    pub gguf: &'a Path,
    /// The LoRA GGUF applied to it, unmerged.
    pub adapter: Option<&'a Path>,
}

impl<'a> EvalModel<'a> {
    /// A self-contained GGUF.
    pub fn merged(name: &'a str, gguf: &'a Path) -> Self {
        Self {
            name,
            gguf,
            adapter: None,
        }
    }
}

/// Items of each split the full demo evaluates (`tunebench eval --per-split`): the first
/// held-out question and the first paraphrase probe of each of the eval file's 16 categories (32
/// items; tb-eval's `select` tests check this on the file), so the report's paraphrase ÷
/// held-out chrF compares like with like. All 80 items (240 answers of up to 128 tokens) would
/// not fit the demo's 35 minutes on 2 cores: at the embedded engine's recorded ~8 s per Q4_K_M
/// answer (reports/latest), 96 answers take about 13 minutes. Left out: the second probes of
/// billing, tariffs, mobile_internet and fibre.
const DEMO_ITEMS_PER_SPLIT: usize = 16;

/// `--quick`: items of each split (one held-out, one paraphrase), so the per-split figures and
/// the generalisation claim are computed on the smoke test too.
const QUICK_ITEMS_PER_SPLIT: usize = 1;

/// The `tunebench eval` arguments of the demo's evaluation into `eval_dir` (`resume`: continue
/// the one an interruption cut short): [`DEMO_ITEMS_PER_SPLIT`] items of each split
/// ([`QUICK_ITEMS_PER_SPLIT`] with `--quick`). Answer length and context window come from the
/// experiment file (`--config`, its `[eval]` section); `--quick` caps answers at
/// [`QUICK_MAX_TOKENS`].
fn eval_args(
    args: &DemoArgs,
    config: &ExperimentConfig,
    eval_dir: &Path,
    resume: bool,
    engine: [&str; 2],
    models: &[EvalModel<'_>],
) -> Vec<String> {
    let mut cmd = vec!["eval".to_string()];
    for m in models {
        cmd.extend(["--model".into(), format!("{}={}", m.name, m.gguf.display())]);
        if let Some(adapter) = m.adapter {
            cmd.extend([
                "--adapter".into(),
                format!("{}={}", m.name, adapter.display()),
            ]);
        }
    }
    cmd.extend(engine.map(String::from));
    let dataset = args.dataset.join("eval.jsonl");
    let out_flag = if resume { "--resume" } else { "--out" };
    for (flag, value) in [
        ("--dataset", dataset.to_string_lossy()),
        (out_flag, eval_dir.to_string_lossy()),
        ("--config", args.config.to_string_lossy()),
    ] {
        cmd.extend([flag.to_string(), value.into_owned()]);
    }
    let per_split = if args.quick {
        QUICK_ITEMS_PER_SPLIT
    } else {
        DEMO_ITEMS_PER_SPLIT
    };
    cmd.extend(["--per-split".into(), per_split.to_string()]);
    if args.quick {
        let max_tokens = config.eval.max_new_tokens.min(QUICK_MAX_TOKENS);
        cmd.extend(["--max-tokens".into(), max_tokens.to_string()]);
    }
    cmd.push("--perplexity".into());
    cmd
}

/// Evaluates the models with `engine`; an evaluation the interruption cut short is resumed.
pub(super) fn eval_step(
    args: &DemoArgs,
    config: &ExperimentConfig,
    attempt: &Attempt,
    engine: &AnswerEngine,
    models: &[EvalModel<'_>],
) -> Result<PathBuf> {
    let eval_dir = attempt.dir.join("eval");
    let resume = eval_dir.join("results.jsonl").is_file();
    let cmd = eval_args(args, config, &eval_dir, resume, engine.eval_flags(), models);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    tunebench_env(&cmd, &engine.env())?;
    Ok(eval_dir)
}

/// Quantization damage of the PEFT-merged model (full run only), answered by `engine`.
pub(super) fn damage_step(
    args: &DemoArgs,
    attempt: &Attempt,
    engine: &AnswerEngine,
    merged: &Path,
) -> Result<PathBuf> {
    println!("== 9. quantization damage (F16 / Q8_0 / Q4_K_M / Q4_0 of the PEFT-merged model)");
    let dir = attempt.dir.join("damage");
    if dir.join("damage.json").is_file() {
        println!("   reusing {}", dir.display());
        return Ok(dir);
    }
    let mut cmd: Vec<String> = ["eval", "damage", "--model"].map(String::from).to_vec();
    cmd.push(merged.to_string_lossy().into_owned());
    for (flag, value) in [
        ("--dataset", args.dataset.join("eval.jsonl")),
        ("--out", dir.clone()),
        ("--config", args.config.clone()),
    ] {
        cmd.extend([flag.to_string(), value.to_string_lossy().into_owned()]);
    }
    cmd.extend(["--ppl-items", "20", "--chrf-items", "8"].map(String::from));
    // Through the server, damage also measures its decode speed per quant type.
    if engine.host.is_none() {
        cmd.extend(["--ollama", "false"].map(String::from));
    }
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    tunebench_env(&cmd, &engine.env())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::DemoArgs;
    use super::{
        eval_args, EvalModel, DEMO_ITEMS_PER_SPLIT, QUICK_ITEMS_PER_SPLIT, QUICK_MAX_TOKENS,
    };
    use tb_train::ExperimentConfig;

    fn demo_args(quick: bool) -> DemoArgs {
        DemoArgs {
            quick,
            dataset: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            config: PathBuf::from("exp.toml"),
            runs_dir: PathBuf::from("runs"),
            report: PathBuf::from("report"),
            restart: false,
            no_peer: false,
            no_ollama: false,
            ollama_compat: PathBuf::from("tools/ollama-compat"),
        }
    }

    fn config(max_new_tokens: usize) -> ExperimentConfig {
        ExperimentConfig::parse(&format!(
            "[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\nmax_steps = 1\n[eval]\nmax_new_tokens = {max_new_tokens}\nnum_ctx = 777\n"
        ))
        .unwrap()
    }

    /// The `eval` arguments for the base model alone (embedded engine, output folder `e`).
    fn base_cmd(quick: bool, max_new_tokens: usize, resume: bool) -> Vec<String> {
        let models = [EvalModel::merged("base", Path::new("b.gguf"))];
        eval_args(
            &demo_args(quick),
            &config(max_new_tokens),
            Path::new("e"),
            resume,
            ["--engine", "embedded"],
            &models,
        )
    }

    /// The value after `flag`, if the flag is there.
    fn value<'a>(cmd: &'a [String], flag: &str) -> Option<&'a str> {
        let i = cmd.iter().position(|a| a == flag)?;
        cmd.get(i + 1).map(String::as_str)
    }

    #[test]
    fn the_evaluation_takes_its_limits_from_the_experiment_file() {
        let cmd = base_cmd(false, 100, false);
        assert_eq!(value(&cmd, "--config"), Some("exp.toml"));
        // No flag of its own that would override the file's `[eval]`.
        assert_eq!(value(&cmd, "--max-tokens"), None, "{cmd:?}");
        assert_eq!(value(&cmd, "--num-ctx"), None, "{cmd:?}");
        assert_eq!(value(&cmd, "--out"), Some("e"));
        let cmd = base_cmd(false, 100, true);
        assert_eq!(value(&cmd, "--resume"), Some("e"));
    }

    #[test]
    fn quick_caps_the_answers_but_never_lengthens_them() {
        let cmd = base_cmd(true, 100, false);
        let cap = QUICK_MAX_TOKENS.to_string();
        assert_eq!(value(&cmd, "--max-tokens"), Some(cap.as_str()));
        assert_eq!(value(&cmd, "--config"), Some("exp.toml"));
        let cmd = base_cmd(true, 8, false);
        assert_eq!(value(&cmd, "--max-tokens"), Some("8"));
    }

    #[test]
    fn both_splits_are_evaluated_full_and_quick() {
        let full = base_cmd(false, 100, false);
        let n = DEMO_ITEMS_PER_SPLIT.to_string();
        assert_eq!(value(&full, "--per-split"), Some(n.as_str()));
        assert_eq!(value(&full, "--limit"), None, "{full:?}");
        let quick = base_cmd(true, 100, false);
        let n = QUICK_ITEMS_PER_SPLIT.to_string();
        assert_eq!(value(&quick, "--per-split"), Some(n.as_str()));
    }

    #[test]
    fn an_adapter_is_given_to_the_model_it_is_served_on() {
        let models = [
            EvalModel::merged("peft", Path::new("p.gguf")),
            EvalModel {
                name: "peft-adapter",
                gguf: Path::new("b.gguf"),
                adapter: Some(Path::new("lora.gguf")),
            },
        ];
        let cmd = eval_args(
            &demo_args(false),
            &config(100),
            Path::new("e"),
            false,
            ["--engine", "ollama"],
            &models,
        );
        let at = |s: &str| cmd.iter().position(|a| a == s).unwrap();
        assert_eq!(cmd[at("peft=p.gguf") - 1], "--model");
        assert_eq!(cmd[at("peft-adapter=b.gguf") - 1], "--model");
        assert_eq!(cmd[at("peft-adapter=lora.gguf") - 1], "--adapter");
        assert_eq!(cmd.iter().filter(|a| *a == "--adapter").count(), 1);
        assert_eq!(value(&cmd, "--engine"), Some("ollama"));
    }
}
