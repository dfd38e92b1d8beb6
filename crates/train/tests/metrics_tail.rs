//! `MetricsTail`: the steps of a `metrics.jsonl` another process appends to, complete lines only,
//! read again from the start when the file was cut back.

use tb_train::MetricsTail;

fn line(step: usize) -> String {
    format!(
        r#"{{"step":{step},"epoch":0.5,"loss":2.0,"lr":0.001,"grad_norm":1.0,"tokens":10,"loss_tokens":5,"slots":12,"tokens_per_s":100.0,"elapsed_s":0.1,"rss_mib":50.0}}"#
    )
}

fn steps(tail: &mut MetricsTail) -> Vec<usize> {
    tail.poll().iter().map(|m| m.step).collect()
}

#[test]
fn metrics_are_read_line_by_line_and_a_partial_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut tail = MetricsTail::new(&path);
    assert!(tail.poll().is_empty(), "no file yet");
    let (first, second) = (line(1), line(2));
    std::fs::write(&path, format!("{first}\n{}", &second[..20])).unwrap();
    assert_eq!(steps(&mut tail), [1]);
    std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
    assert_eq!(steps(&mut tail), [2]);
    assert!(tail.poll().is_empty(), "nothing new");
    // Cut back to one step (a resume from a checkpoint): read again from the start.
    std::fs::write(&path, format!("{first}\n")).unwrap();
    assert_eq!(steps(&mut tail), [1]);
}
