//! The demo's experiment file: the benchmark config of README's tables with only the demo's
//! `max_seq_len` and step count changed, and the file `tunebench demo` reads by default.

mod common;

use common::*;
use tb_train::ExperimentConfig;

#[test]
fn the_demo_config_is_the_benchmark_config_at_seq_512_for_30_steps() {
    let configs = repo().join("configs");
    let demo = ExperimentConfig::load(configs.join("demo-smollm2-135m.toml")).unwrap();
    let mut bench = ExperimentConfig::load(configs.join("smollm2-135m.toml")).unwrap();
    assert_eq!(
        bench.data.max_seq_len, 256,
        "README's tables were made at 256"
    );
    assert_eq!((demo.data.max_seq_len, demo.train.max_steps), (512, 30));
    bench.name.clone_from(&demo.name);
    bench.data.max_seq_len = 512;
    bench.train.max_steps = 30;
    assert_eq!(
        demo, bench,
        "the demo differs from the benchmark only there"
    );

    let (ok, out, err) = tunebench(&["demo", "--help"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("[default: configs/demo-smollm2-135m.toml]"),
        "{out}"
    );
}
