//! The experiment file: defaults, unknown keys, bad values, path resolution, hashing.

use tb_train::{ActivationCheckpointing, BaseQuant, ExperimentConfig, ScheduleKind, Targets};

const MINIMAL: &str = r#"
[model]
base = "models/smollm2-135m"
[data]
train = "datasets/turkish-support/train.jsonl"
"#;

#[test]
fn minimal_file_gets_documented_defaults() {
    let c = ExperimentConfig::parse(MINIMAL).unwrap();
    assert_eq!(c.train.micro_batch, 4);
    assert_eq!(c.train.seed, 3407);
    assert_eq!(c.optimizer.betas, [0.9, 0.999]);
    assert_eq!(c.optimizer.schedule, ScheduleKind::Linear);
    assert_eq!(c.lora.targets, Targets::Pattern("all-linear".into()));
    assert_eq!(c.data.max_seq_len, 512);
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_line() {
    let text = format!("{MINIMAL}[train]\nmicro_batch = 2\nmicro_bach = 3\n");
    let err = ExperimentConfig::parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("micro_bach") && err.contains("line 8"),
        "{err}"
    );
    let text = format!("{MINIMAL}[lorra]\nr = 2\n");
    let err = ExperimentConfig::parse(&text).unwrap_err().to_string();
    assert!(err.contains("lorra"), "{err}");
}

#[test]
fn bad_values_name_the_field() {
    for (extra, field) in [
        ("[optimizer]\nlr = -1.0\n", "optimizer.lr"),
        ("[optimizer]\nbetas = [0.9, 1.5]\n", "optimizer.betas[1]"),
        ("[lora]\nr = 0\n", "lora.r"),
        ("[lora]\ndropout = 1.0\n", "lora.dropout"),
        ("[lora]\ntargets = []\n", "lora.targets"),
        ("[train]\nmicro_batch = 0\n", "train.micro_batch"),
        ("[train]\nepochs = 0\n", "train.epochs"),
        ("[model]\n", "model"),
    ] {
        let text = format!("{MINIMAL}{extra}");
        let err = ExperimentConfig::parse(&text).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    let err = ExperimentConfig::parse("[model]\nbase = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("base"), "{err}");
}

#[test]
fn resolved_config_round_trips_and_hash_tracks_changes() {
    let c = ExperimentConfig::parse(MINIMAL).unwrap();
    let again = ExperimentConfig::parse(&c.to_toml()).unwrap();
    assert_eq!(c, again);
    assert_eq!(c.hash(), again.hash());
    let mut other = c.clone();
    other.lora.r = 8;
    assert_ne!(c.hash(), other.hash());
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/train.jsonl"), "").unwrap();
    let path = tmp.path().join("exp.toml");
    std::fs::write(
        &path,
        "[model]\nbase = \"m\"\n[data]\ntrain = \"data/train.jsonl\"\n",
    )
    .unwrap();
    let c = ExperimentConfig::load(&path).unwrap();
    assert_eq!(c.data.train, tmp.path().join("data/train.jsonl"));
    let err = ExperimentConfig::load(tmp.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn shipped_experiment_files_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for name in ["smollm2-135m.toml", "turkcell-7b.toml"] {
        let c = ExperimentConfig::load(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.lora.r, 16, "{name}");
    }
}

#[test]
fn base_quant_defaults_to_none_and_leaves_old_configs_unchanged() {
    let c = ExperimentConfig::parse(MINIMAL).unwrap();
    assert_eq!(c.model.base_quant, BaseQuant::None);
    assert!(!c.to_toml().contains("base_quant"), "{}", c.to_toml());
    let with_quant = |v: &str| MINIMAL.replace("[data]", &format!("base_quant = \"{v}\"\n[data]"));
    let explicit = ExperimentConfig::parse(&with_quant("none")).unwrap();
    assert_eq!(explicit, c);
    assert_eq!(
        explicit.hash(),
        c.hash(),
        "an explicit \"none\" must hash like the old file"
    );
    for (v, want) in [("nf4", BaseQuant::Nf4), ("q4_k", BaseQuant::Q4K)] {
        let q = ExperimentConfig::parse(&with_quant(v)).unwrap();
        assert_eq!(q.model.base_quant, want);
        let toml = q.to_toml();
        assert!(toml.contains(&format!("base_quant = \"{v}\"")), "{toml}");
        assert_eq!(ExperimentConfig::parse(&toml).unwrap(), q);
        assert_ne!(q.hash(), c.hash());
    }
    let err = ExperimentConfig::parse(&with_quant("int4"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("int4") && err.contains("nf4"), "{err}");
}

#[test]
fn activation_checkpointing_takes_a_mode_or_a_boolean() {
    let c = ExperimentConfig::parse(MINIMAL).unwrap();
    assert_eq!(
        c.train.activation_checkpointing,
        ActivationCheckpointing::Layer
    );
    let with = |v: &str| format!("{MINIMAL}[train]\nactivation_checkpointing = {v}\n");
    for (v, want) in [
        ("true", ActivationCheckpointing::Layer),
        ("false", ActivationCheckpointing::None),
        ("\"layer\"", ActivationCheckpointing::Layer),
        ("\"attention\"", ActivationCheckpointing::Attention),
        ("\"none\"", ActivationCheckpointing::None),
    ] {
        let parsed = ExperimentConfig::parse(&with(v)).unwrap();
        assert_eq!(parsed.train.activation_checkpointing, want, "{v}");
        // The resolved file writes the mode's name and reads back the same.
        let toml = parsed.to_toml();
        assert_eq!(ExperimentConfig::parse(&toml).unwrap(), parsed, "{toml}");
    }
    for bad in ["\"selective\"", "3"] {
        let err = ExperimentConfig::parse(&with(bad)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("activation_checkpointing"), "{bad}: {msg}");
    }
    let err = format!(
        "{:#}",
        ExperimentConfig::parse(&with("\"selective\"")).unwrap_err()
    );
    assert!(
        err.contains("selective") && err.contains("attention"),
        "{err}"
    );
}
