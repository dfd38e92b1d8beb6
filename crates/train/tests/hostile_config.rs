//! Hostile experiment files: truncation, bit flips, wrong types, unknown keys, negative, zero,
//! huge and non-finite numbers, missing sections. Every case is an error naming the file and
//! the line (TOML errors) or the key (range checks), never a panic; a deterministic mutation
//! campaign checks that over thousands of variants.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use tb_testkit::mutation::{mutate_bytes, panic_message, Rng};
use tb_train::ExperimentConfig;

/// A valid experiment file that sets every key.
const FULL: &str = r#"name = "tiny"
[model]
base = "models/tiny"
dtype = "f32"
base_quant = "none"
[data]
train = "data/train.jsonl"
eval = "data/eval.jsonl"
max_seq_len = 64
truncation = "right"
limit = 0
eval_limit = 0
[train]
micro_batch = 2
grad_accum = 1
epochs = 1
max_steps = 3
seed = 5
log_every = 1
checkpoint_every = 0
eval_every = 0
warmup_measure_steps = 1
runs_dir = "runs"
activation_checkpointing = "layer"
device = "cpu"
[optimizer]
lr = 0.01
betas = [0.9, 0.999]
eps = 1e-8
weight_decay = 0.0
max_grad_norm = 1.0
warmup_steps = 0
warmup_ratio = 0.0
schedule = "linear"
[lora]
r = 2
alpha = 4.0
dropout = 0.1
targets = ["q_proj", "v_proj"]
rslora = false
[export]
quants = ["q4_k_m"]
[eval]
max_new_tokens = 16
num_ctx = 256
"#;

/// Writes `text` as `exp.toml` in `dir` and loads it.
fn load(dir: &Path, text: &[u8]) -> Result<ExperimentConfig, String> {
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    ExperimentConfig::load(&path).map_err(|e| e.to_string())
}

/// The error of a file that must fail, checked to name the file.
fn err(text: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let e = load(tmp.path(), text.as_bytes()).expect_err("must fail");
    assert!(e.contains("exp.toml"), "the error names the file: {e}");
    e
}

/// `FULL` with the line starting `key =` replaced by `key = value`.
fn with(key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut found = false;
    let text: Vec<String> = FULL
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) && !found {
                found = true;
                format!("{prefix}{value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "{key}");
    text.join("\n")
}

#[test]
fn full_file_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let c = load(tmp.path(), FULL.as_bytes()).unwrap();
    assert_eq!(c.train.max_steps, 3);
    assert_eq!(ExperimentConfig::parse(&c.to_toml()).unwrap(), c);
}

/// 1-based line of `FULL` that starts with `prefix`.
fn line_of(prefix: &str) -> usize {
    FULL.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

#[test]
fn syntax_and_type_errors_name_the_line() {
    let cases = [
        (with("micro_batch", "-1"), line_of("micro_batch")),
        (with("micro_batch", "2.5"), line_of("micro_batch")),
        (with("micro_batch", "\"2\""), line_of("micro_batch")),
        (
            with("micro_batch", "18446744073709551616"),
            line_of("micro_batch"),
        ),
        (with("seed", "-5"), line_of("seed")),
        (with("r", "[2]"), line_of("r =")),
        (with("alpha", "1e309"), line_of("alpha")),
        (with("lr", "\"fast\""), line_of("lr")),
        (with("betas", "[0.9]"), line_of("betas")),
        (with("betas", "0.9"), line_of("betas")),
        (with("schedule", "\"cosin\""), line_of("schedule")),
        (with("device", "\"tpu\""), line_of("device")),
        (
            with("activation_checkpointing", "3"),
            line_of("activation_"),
        ),
        (with("targets", "{}"), line_of("targets")),
        (with("truncation", "\"left\""), line_of("truncation")),
        (with("base_quant", "\"nf3\""), line_of("base_quant")),
        (with("rslora", "\"yes\""), line_of("rslora")),
        (with("max_seq_len", "1979-05-27"), line_of("max_seq_len")),
        (
            with("micro_batch", "2\nmicro_batch = 3"),
            line_of("micro_batch") + 1,
        ),
        (
            with("micro_batch", "2\nmicro_bach = 3"),
            line_of("micro_batch") + 1,
        ),
        (FULL.replace("[eval]", "[evaluation]"), line_of("[eval]")),
        (FULL.replace("[lora]", "[optimizer]"), line_of("[lora]")),
        (FULL.replace("lr = 0.01", "lr = 0.01 0.02"), line_of("lr")),
        (FULL.replace("name = \"tiny\"", "name = \"tiny"), 1),
        (FULL.replace("[train]", "[train"), line_of("[train]")),
        (FULL.replace("seed = 5", "seed = 5\0"), line_of("seed")),
        (
            FULL[..FULL.find("\nr = 2").unwrap() + 4].to_owned(),
            line_of("r ="),
        ),
    ];
    for (text, line) in &cases {
        let e = err(text);
        let want = format!("line {line},");
        assert!(e.contains(&want), "want {want}, got {e}");
    }
    // Missing sections: toml names the field.
    let no_data: String = FULL
        .lines()
        .enumerate()
        .filter(|(i, _)| !(line_of("[data]") - 1..line_of("[train]") - 1).contains(i))
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n");
    let e = err(&no_data);
    assert!(e.contains("missing field `data`"), "{e}");
    let e = err("[model]\nbase = \"m\"\n");
    assert!(e.contains("missing field `data`"), "{e}");
    let e = err("");
    assert!(e.contains("missing field `model`"), "{e}");
    // Invalid UTF-8: line and byte column.
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = FULL.as_bytes().to_vec();
    let at = FULL.find("models/tiny").unwrap() + 3;
    bytes[at] = 0xFF;
    let e = load(tmp.path(), &bytes).unwrap_err();
    assert!(
        e.contains("exp.toml") && e.contains("invalid UTF-8 at line 3, byte column 12"),
        "{e}"
    );
}

#[test]
fn out_of_range_values_name_the_key() {
    let cases = [
        ("lr", "nan", "optimizer.lr"),
        ("lr", "inf", "optimizer.lr"),
        ("lr", "0.0", "optimizer.lr"),
        ("lr", "-1e-4", "optimizer.lr"),
        ("eps", "inf", "optimizer.eps"),
        ("eps", "-nan", "optimizer.eps"),
        ("weight_decay", "nan", "optimizer.weight_decay"),
        ("weight_decay", "inf", "optimizer.weight_decay"),
        ("weight_decay", "-0.1", "optimizer.weight_decay"),
        ("max_grad_norm", "nan", "optimizer.max_grad_norm"),
        ("max_grad_norm", "-inf", "optimizer.max_grad_norm"),
        ("warmup_ratio", "nan", "optimizer.warmup_ratio"),
        ("betas", "[nan, 0.9]", "optimizer.betas[0]"),
        ("betas", "[0.9, 1.0]", "optimizer.betas[1]"),
        ("alpha", "nan", "lora.alpha"),
        ("alpha", "inf", "lora.alpha"),
        ("dropout", "nan", "lora.dropout"),
        ("dropout", "1.0", "lora.dropout"),
        ("r", "0", "lora.r"),
        ("r", "9223372036854775807", "lora.r"),
        ("max_seq_len", "1", "data.max_seq_len"),
        ("max_seq_len", "9223372036854775807", "data.max_seq_len"),
        ("micro_batch", "0", "train.micro_batch"),
        ("micro_batch", "4294967296", "train.micro_batch"),
        ("micro_batch", "9223372036854775808", "train.micro_batch"),
        ("grad_accum", "0", "train.grad_accum"),
        ("grad_accum", "9223372036854775807", "train.grad_accum"),
        ("epochs", "9223372036854775807", "train.epochs"),
        ("max_steps", "9223372036854775807", "train.max_steps"),
        ("log_every", "0", "train.log_every"),
        ("num_ctx", "0", "eval.num_ctx"),
        ("num_ctx", "9223372036854775807", "eval.num_ctx"),
        (
            "max_new_tokens",
            "9223372036854775807",
            "eval.max_new_tokens",
        ),
        ("targets", "[]", "lora.targets"),
        ("dtype", "\"f64\"", "model.dtype"),
        ("name", "\"\"", "name"),
        ("name", "\"../../etc/x\"", "name"),
        ("name", "\".hidden\"", "name"),
        ("name", "\"a/b\"", "name"),
    ];
    for (key, value, field) in cases {
        let e = err(&with(key, value));
        assert!(
            e.contains(&format!("config field `{field}`")),
            "{key} = {value}: want {field}, got {e}"
        );
    }
    let e = err(&with("max_steps", "0").replace("epochs = 1", "epochs = 0"));
    assert!(e.contains("config field `train.epochs`"), "{e}");
    // Valid extremes load.
    let tmp = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("seed", "18446744073709551615"),
        ("seed", "0"),
        ("limit", "9223372036854775807"),
        ("warmup_steps", "9223372036854775807"),
        ("checkpoint_every", "9223372036854775807"),
        ("lr", "1e-300"),
        ("name", "\"türkçe-7b_v1.2\""),
    ] {
        load(tmp.path(), with(key, value).as_bytes())
            .unwrap_or_else(|e| panic!("{key} = {value}: {e}"));
    }
}

#[test]
fn deep_nesting_and_huge_files_fail_cleanly() {
    for depth in [1_000, 100_000] {
        let value = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let e = err(&with("targets", &value));
        assert!(e.contains("line"), "{}", &e[..e.len().min(300)]);
        let table = format!("{}1{}", "{a = ".repeat(depth), "}".repeat(depth));
        let e = err(&with("targets", &table));
        assert!(e.contains("line"), "{}", &e[..e.len().min(300)]);
    }
    let long = format!("{FULL}\n# {}\n", "x".repeat(10 << 20));
    let tmp = tempfile::tempdir().unwrap();
    load(tmp.path(), long.as_bytes()).unwrap();
}

/// Values a key may be set to.
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "0x7fffffffffffffff",
    "1e308",
    "-1e308",
    "1e-320",
    "0.5",
    "nan",
    "+inf",
    "-inf",
    "true",
    "\"\"",
    "\"x\"",
    "\"all-linear\"",
    "\"none\"",
    "[]",
    "[1, 2]",
    "[\"q_proj\"]",
    "{}",
    "1979-05-27T07:32:00Z",
    "'''\nmulti\n'''",
    "\"\\u0000\"",
];

/// A hostile variant of `FULL`: a key set to a hostile value, a line dropped, duplicated or
/// renamed, or a byte-level mutation.
fn mutate(rng: &mut Rng) -> Vec<u8> {
    let mut lines: Vec<String> = FULL.lines().map(str::to_owned).collect();
    let i = rng.below(lines.len());
    match rng.below(6) {
        0 | 1 => {
            if let Some((key, _)) = lines[i].clone().split_once(" = ") {
                lines[i] = format!("{key} = {}", rng.pick(VALUES));
            }
        }
        2 => {
            lines.remove(i);
        }
        3 => {
            let j = rng.below(lines.len());
            let line = lines[i].clone();
            lines.insert(j, line);
        }
        4 => {
            let at = rng.below(lines[i].len().max(1));
            if lines[i].is_char_boundary(at) {
                lines[i].insert(at, *rng.pick(&['x', '[', ']', '"', '=', '#', '.', '\'']));
            }
        }
        _ => {
            let mut bytes = FULL.as_bytes().to_vec();
            mutate_bytes(rng, &mut bytes, 0..FULL.len());
            return bytes;
        }
    }
    lines.join("\n").into_bytes()
}

#[test]
fn mutation_run_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("exp.toml");
    let path_text = path.display().to_string();
    let mut rng = Rng::new(0xC0F1_6000_0000_0001);
    let (mut loaded, mut rejected) = (0usize, 0usize);
    for iter in 0..3000 {
        let bytes = mutate(&mut rng);
        std::fs::write(&path, &bytes).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let c = ExperimentConfig::load(&path)?;
            // What the trainers do with a loaded config must not panic either.
            let round_trip = ExperimentConfig::parse(&c.to_toml());
            Ok::<_, tb_train::Error>((c.hash(), round_trip.is_ok()))
        }))
        .unwrap_or_else(|p| panic!("iteration {iter}: panicked: {}", panic_message(&*p)));
        match r {
            Ok((_, round_trip)) => {
                assert!(
                    round_trip,
                    "iteration {iter}: the resolved config does not parse"
                );
                loaded += 1;
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&path_text), "iteration {iter}: {e}");
                assert!(
                    e.contains("line")
                        || e.contains("config field `")
                        || e.contains("missing field"),
                    "iteration {iter}: no line or key in {e}"
                );
                rejected += 1;
            }
        }
    }
    assert!(
        loaded > 200 && rejected > 1500,
        "loaded {loaded}, rejected {rejected}"
    );
}
