//! The bench driver with stand-in processes: a fake `tunebench` whose `train peft` writes a
//! run folder and prints its outcome as `--json` does and whose `train unsloth` fails like a
//! missing subcommand, and a fake peer that prints one JSON line. Runs interleave, failures are
//! recorded, the rest goes on; the peer is handed the PEFT-style trainer's batches.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tb_report::bench::{plan_config_hash, BenchPlan, HF_PEFT, PEER_BACKEND};

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn interleaves_methods_records_failures_and_goes_on() {
    let f = common::fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let summary = f.join("runs/20260101T000000Z-peft/summary.json");
    let exe = tmp.path().join("fake-tunebench");
    script(
        &exe,
        &format!(
            "#!/bin/sh\n\
             echo \"$@\" >> '{calls}'\n\
             if [ \"$1\" = train ] && [ \"$2\" = peft ]; then\n\
               n=$(ls '{runs}' 2>/dev/null | wc -l); id=2026010${{n}}T000000Z-peft; dir='{runs}'/$id\n\
               mkdir -p \"$dir\"; sed \"s/20260101T000000Z-peft/$id/\" '{summary}' > \"$dir/summary.json\"\n\
               printf '{{\"run\":\"%s\",\"adapter\":\"%s/adapter\",\"summary\":' \"$dir\" \"$dir\"\n\
               tr -d '\\n' < \"$dir/summary.json\"\n\
               echo ',\"ggufs\":[],\"modelfile\":null,\"export_s\":null}}'; exit 0\n\
             fi\n\
             echo \"error: unrecognized subcommand '$2'\" >&2; exit 2\n",
            calls = tmp.path().join("calls.txt").display(),
            runs = runs.display(),
            summary = summary.display(),
        ),
    );
    let model = tb_testkit::tiny_mistral_dir(&tmp.path().join("model"), |_, _| true);
    let train = tmp.path().join("train.jsonl");
    let records: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i}?", "output": "Cevap {i}."}}"#))
        .collect();
    std::fs::write(&train, records.join("\n")).unwrap();
    let config = tmp.path().join("experiment.toml");
    let text = std::fs::read_to_string(f.join("runs/20260101T000000Z-peft/config.toml")).unwrap();
    let text = text
        .replace("models/tiny", model.to_str().unwrap())
        .replace("datasets/tiny.jsonl", train.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let peer = tmp.path().join("fake_peer.py");
    let peer_args = tmp.path().join("peer-args.txt");
    script(
        &peer,
        &format!(
            "import json, sys\nopen('{}', 'a').write(' '.join(sys.argv[1:]) + '\\n')\n\
             print('loading', file=sys.stderr)\nprint('warming up')\n\
             print(json.dumps({{'method': 'hf-peft', 'steps': 4, 'seconds': 2.0, 'tokens': 400, \
             'loss_tokens': 160, 'tokens_per_s': 200.0, 'loss_tokens_per_s': 80.0, \
             'peak_rss_mib': 4000.0, 'first_loss': 3.0, 'last_loss': 2.5, 'threads': 2, \
             'torch': 'fake', 'dtype': 'f32', 'micro_batch': 4, 'max_seq_len': 64}}))\n",
            peer_args.display()
        ),
    );
    let plan = BenchPlan {
        config,
        methods: vec!["peft".into(), "unsloth".into(), HF_PEFT.into()],
        repeats: 2,
        steps: Some(4),
        tunebench: exe,
        python: "python3".into(),
        peer_script: peer,
        out_dir: tmp.path().join("bench-test"),
    };
    let mut seen = Vec::new();
    let outcome = tb_report::run_bench(&plan, &mut |a| seen.push(a.method.clone())).unwrap();
    assert_eq!(
        seen,
        ["peft", "unsloth", "hf-peft", "peft", "unsloth", "hf-peft"]
    );
    assert_eq!(outcome.failed(), 2);
    for a in outcome.attempts.iter().filter(|a| a.method == "unsloth") {
        let e = a.error.as_deref().unwrap();
        assert!(e.contains("unrecognized subcommand 'unsloth'"), "{e}");
        assert!(a.log.exists());
    }
    let calls = std::fs::read_to_string(tmp.path().join("calls.txt")).unwrap();
    assert!(
        calls.contains("train peft --config")
            && calls.contains("--max-steps 4 --no-progress --json"),
        "{calls}"
    );
    // The Unsloth-style child is timed on training alone: no GGUF export.
    assert!(
        calls
            .lines()
            .filter(|l| l.starts_with("train unsloth"))
            .count()
            == 2
            && calls
                .lines()
                .filter(|l| l.starts_with("train unsloth"))
                .all(|l| l.contains("--gguf none")),
        "{calls}"
    );
    assert!(!calls
        .lines()
        .any(|l| l.starts_with("train peft") && l.contains("--gguf")));

    let stat = |m: &str| {
        outcome
            .stats
            .iter()
            .find(|s| s.method == m)
            .unwrap()
            .clone()
    };
    let peft = stat("peft");
    assert_eq!((peft.ok, peft.failed), (2, 0));
    assert_eq!(peft.tokens_per_s, Some(100.0));
    assert_eq!(peft.speed_vs_hf_peft, Some(0.5));
    assert_eq!(peft.memory_vs_hf_peft, Some(0.5));
    let unsloth = stat("unsloth");
    assert_eq!(
        (unsloth.ok, unsloth.failed, unsloth.tokens_per_s),
        (0, 2, None)
    );
    assert_eq!(stat("hf-peft").speed_vs_peft, Some(2.0));
    assert!(outcome.table().contains("FAILED unsloth #1"));

    let rows = outcome.history_rows("c1", "2026-01-01T00:00:00Z");
    assert_eq!(rows.len(), 4);
    let mut ids: Vec<_> = rows.iter().map(|r| r.run_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "run ids must be distinct: {ids:?}");
    let hash = plan_config_hash(&plan).unwrap();
    assert!(rows
        .iter()
        .filter(|r| r.method == HF_PEFT)
        .all(|r| r.config_hash == hash));
    // The backend says what peak_rss_mib measured: the run's own, the peer's PyTorch on the CPU.
    for r in &rows {
        let want = if r.method == HF_PEFT {
            PEER_BACKEND
        } else {
            "flex"
        };
        assert_eq!(r.backend, want, "{}", r.run_id);
    }

    // The peer trains on the PEFT-style trainer's batches: one warm-up and 4 measured steps of
    // micro_batch 2 over the 5 examples in epoch order (a short last micro-batch, then epoch 2).
    let batches = plan.out_dir.join(tb_report::bench::PEER_BATCHES);
    let args = std::fs::read_to_string(&peer_args).unwrap();
    assert_eq!(args.lines().count(), 2, "{args}");
    assert!(
        args.lines()
            .all(|l| l.ends_with(&format!("--steps 4 --batches {}", batches.display()))),
        "{args}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&batches).unwrap()).unwrap();
    let steps: Vec<Vec<Vec<String>>> = serde_json::from_value(listed["steps"].clone()).unwrap();
    let sizes: Vec<usize> = steps.iter().map(|s| s[0].len()).collect();
    assert_eq!(sizes, [2, 2, 1, 2, 2], "{steps:?}");
    assert!(
        steps.iter().all(|s| s.len() == 1),
        "grad_accum 1: {steps:?}"
    );
    let mut epoch: Vec<&String> = steps[..3].iter().flatten().flatten().collect();
    epoch.sort();
    assert_eq!(epoch, ["t0", "t1", "t2", "t3", "t4"]);

    let saved = tb_report::BenchOutcome::load(&plan.out_dir).unwrap();
    assert_eq!(saved.attempts, outcome.attempts);
    assert_eq!(saved.peers, outcome.peers);
    let peers = tb_report::load_peers(&plan.out_dir.join("peers.jsonl")).unwrap();
    assert_eq!(peers.len(), 2);
}

/// The bench folders committed under `reports/` read with the driver's own types.
#[test]
fn committed_bench_folders_read() {
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports");
    let mut read = 0;
    for entry in std::fs::read_dir(&reports).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join(tb_report::bench::BENCH_FILE).exists() {
            continue;
        }
        let outcome = tb_report::BenchOutcome::load(&dir).unwrap();
        assert!(!outcome.attempts.is_empty(), "{}", dir.display());
        let peers = dir.join("peers.jsonl");
        if peers.exists() {
            assert_eq!(tb_report::load_peers(&peers).unwrap(), outcome.peers);
        }
        read += 1;
    }
    assert!(read > 0, "no bench.json under {}", reports.display());
}
