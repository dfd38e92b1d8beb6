//! History: appending keeps old rows, a run is recorded once, a corrupt or truncated parquet is
//! an error naming the file and is left untouched.

use tb_report::{append_history, read_history, HistoryRow};

fn row(run_id: &str, tps: f64) -> HistoryRow {
    HistoryRow {
        commit: "c1".into(),
        timestamp: "2026-01-01T00:00:00Z".into(),
        machine: "cpu x2 8GiB".into(),
        config_hash: "h".into(),
        method: "peft".into(),
        run_id: run_id.into(),
        tokens_per_s: tps,
        peak_rss_mib: 1000.0,
        final_loss: Some(2.0),
        backend: "flex".into(),
    }
}

#[test]
fn append_keeps_old_rows_and_skips_known_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = append_history(dir.path(), &[row("r1", 10.0), row("r2", 11.0)]).unwrap();
    assert_eq!((a.added, a.total), (2, 2));
    let b = append_history(dir.path(), &[row("r2", 11.0), row("r3", 12.0)]).unwrap();
    assert_eq!((b.added, b.skipped, b.total), (1, 1, 3));
    let rows = read_history(&dir.path().join("history.parquet")).unwrap();
    assert_eq!(
        rows,
        vec![row("r1", 10.0), row("r2", 11.0), row("r3", 12.0)]
    );
    let csv = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with(
        "commit,timestamp,machine,config_hash,method,run_id,tokens_per_s,peak_rss_mib,final_loss,backend"
    ));
    assert!(csv.contains("r3"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn corrupt_or_truncated_parquet_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    append_history(dir.path(), &[row("r1", 10.0), row("r2", 11.0)]).unwrap();
    let path = dir.path().join("history.parquet");
    let bytes = std::fs::read(&path).unwrap();
    for broken in [
        bytes[..bytes.len() / 2].to_vec(),
        b"not parquet at all".to_vec(),
    ] {
        std::fs::write(&path, &broken).unwrap();
        let err = append_history(dir.path(), &[row("r3", 12.0)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("history.parquet"), "{err}");
        assert!(err.contains("truncated or corrupt"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            broken,
            "the broken file was changed"
        );
        assert!(read_history(&path).is_err());
    }
}

#[test]
fn concurrent_appenders_lose_no_row() {
    // Two appenders at once (as two `bench` runs would be): every row of both must be there.
    let dir = tempfile::tempdir().unwrap();
    let per = 12;
    std::thread::scope(|s| {
        for who in ["a", "b"] {
            let path = dir.path();
            s.spawn(move || {
                for i in 0..per {
                    append_history(path, &[row(&format!("{who}{i}"), i as f64)]).unwrap();
                }
            });
        }
    });
    let rows = read_history(&dir.path().join("history.parquet")).unwrap();
    let mut ids: Vec<String> = rows.into_iter().map(|r| r.run_id).collect();
    ids.sort();
    let mut want: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|w| (0..per).map(move |i| format!("{w}{i}")))
        .collect();
    want.sort();
    assert_eq!(ids, want, "rows lost or duplicated by concurrent appends");
    let csv = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2 * per + 1, "{csv}");
}
