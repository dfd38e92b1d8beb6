//! The regression check flags a planted 20 % slowdown and more memory, and does not flag
//! identical runs.

use tb_report::{regress, HistoryRow, RegressOptions};

fn rows(commit: &str, ts: &str, method: &str, tps: &[f64], rss: f64) -> Vec<HistoryRow> {
    tps.iter()
        .enumerate()
        .map(|(i, t)| HistoryRow {
            commit: commit.into(),
            timestamp: format!("{ts}:{i:02}Z"),
            machine: "cpu x2 8GiB".into(),
            config_hash: "h1".into(),
            method: method.into(),
            run_id: format!("{commit}-{method}-{i}"),
            tokens_per_s: *t,
            peak_rss_mib: rss,
            final_loss: Some(2.0),
            backend: "flex".into(),
        })
        .collect()
}

#[test]
fn flags_a_20_percent_slowdown() {
    let mut h = rows(
        "aaaa",
        "2026-01-01T00:00",
        "peft",
        &[100.0, 101.0, 99.0],
        1000.0,
    );
    h.extend(rows(
        "aaaa",
        "2026-01-01T00:01",
        "unsloth",
        &[200.0, 200.0, 200.0],
        800.0,
    ));
    h.extend(rows(
        "bbbb",
        "2026-01-02T00:00",
        "peft",
        &[80.0, 81.0, 79.0],
        1000.0,
    ));
    h.extend(rows(
        "bbbb",
        "2026-01-02T00:01",
        "unsloth",
        &[199.0, 201.0, 200.0],
        800.0,
    ));
    let r = regress(&h, &RegressOptions::default()).unwrap();
    assert_eq!(r.current, "bbbb");
    assert_eq!(r.baseline.as_deref(), Some("aaaa"));
    assert!(r.regressed());
    let peft = r.comparisons.iter().find(|c| c.method == "peft").unwrap();
    assert!(peft.slower && !peft.more_memory);
    assert!((peft.tokens_per_s_change + 0.2).abs() < 1e-9);
    assert_eq!((peft.baseline.runs, peft.current.runs), (3, 3));
    let unsloth = r
        .comparisons
        .iter()
        .find(|c| c.method == "unsloth")
        .unwrap();
    assert!(!unsloth.slower && !unsloth.more_memory);
    assert!(r.table().contains("SLOWER"));
    // A looser threshold lets it pass.
    let loose = RegressOptions {
        baseline: Some("aa".into()),
        threshold: 0.25,
    };
    assert!(!regress(&h, &loose).unwrap().regressed());
}

#[test]
fn flags_more_memory() {
    let mut h = rows("aaaa", "2026-01-01T00:00", "peft", &[100.0; 3], 1000.0);
    h.extend(rows(
        "bbbb",
        "2026-01-02T00:00",
        "peft",
        &[100.0; 3],
        1200.0,
    ));
    let r = regress(&h, &RegressOptions::default()).unwrap();
    assert!(r.regressed());
    assert!(r.comparisons[0].more_memory && !r.comparisons[0].slower);
}

#[test]
fn identical_runs_are_not_flagged() {
    let mut h = rows(
        "aaaa",
        "2026-01-01T00:00",
        "peft",
        &[100.0, 100.0, 100.0],
        1000.0,
    );
    h.extend(rows(
        "bbbb",
        "2026-01-02T00:00",
        "peft",
        &[100.0, 100.0, 100.0],
        1000.0,
    ));
    let r = regress(&h, &RegressOptions::default()).unwrap();
    assert_eq!(r.comparisons.len(), 1);
    assert!(!r.regressed(), "{}", r.table());
    assert_eq!(r.comparisons[0].tokens_per_s_change, 0.0);
}

#[test]
fn one_commit_has_no_baseline_and_unknown_baselines_are_errors() {
    let h = rows("aaaa", "2026-01-01T00:00", "peft", &[100.0], 1000.0);
    let r = regress(&h, &RegressOptions::default()).unwrap();
    assert!(r.baseline.is_none() && !r.regressed());
    let bad = RegressOptions {
        baseline: Some("zzzz".into()),
        threshold: 0.1,
    };
    assert!(regress(&h, &bad).unwrap_err().to_string().contains("zzzz"));
    assert!(regress(&[], &RegressOptions::default()).is_err());
}

#[test]
fn history_charts_render() {
    let mut h = rows("aaaa", "2026-01-01T00:00", "peft", &[100.0, 101.0], 1000.0);
    h.extend(rows(
        "bbbb",
        "2026-01-02T00:00",
        "peft",
        &[90.0, 91.0],
        1100.0,
    ));
    let dir = tempfile::tempdir().unwrap();
    for chart in tb_report::history_charts(&h) {
        let f = tb_report::render(&chart, dir.path()).unwrap();
        assert!(std::fs::metadata(&f.png).unwrap().len() > 5000);
    }
}
