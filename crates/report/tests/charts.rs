//! The charts as a reader of a paper would check them, read back from their SVG: legends
//! outside the plotting area, integer ticks on step axes, eval losses as markers with a
//! smoothed line over faint per-step losses, one history line per method and machine, and
//! peak-memory axes that say what was measured.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::svg::Svg;
use tb_report::{history_charts, render, Chart, ChartKind, HistoryRow, LossCurve, ReportOutput};

fn fixture_report(dir: &Path) -> ReportOutput {
    let inputs = common::fixture_inputs();
    tb_report::write_report(&inputs, &common::environment(&inputs), dir).unwrap()
}

fn chart_svg(out: &ReportOutput, stem: &str) -> Svg {
    let files = out
        .charts
        .iter()
        .find(|c| c.svg.file_stem().is_some_and(|s| s == stem))
        .unwrap_or_else(|| panic!("no chart `{stem}`"));
    Svg::read(&files.svg)
}

fn assert_legend_outside(svg: &Svg, what: &str) {
    let plot = svg.plot_area();
    let legend = svg
        .legend_box()
        .unwrap_or_else(|| panic!("{what}: no legend"));
    let extent = svg.legend_extent().unwrap();
    assert!(
        !legend.overlaps(plot),
        "{what}: legend {legend:?} over plot {plot:?}"
    );
    assert!(
        legend.contains(extent),
        "{what}: legend entries {extent:?} outside its box {legend:?}"
    );
    let (w, h) = svg.size();
    assert!(
        extent.x0 >= 0.0 && extent.y0 >= 0.0 && extent.x1 <= w && extent.y1 <= h,
        "{what}: legend off the image"
    );
    // No data element reaches into the legend.
    for e in svg.in_group("series").chain(svg.in_group("eval-loss")) {
        assert!(
            !e.bbox().overlaps(legend),
            "{what}: {} of {} under the legend",
            e.name,
            e.series
        );
    }
}

#[test]
fn legends_sit_outside_the_plotting_area() {
    let dir = tempfile::tempdir().unwrap();
    let out = fixture_report(dir.path());
    assert!(out.charts.len() >= 8);
    for c in &out.charts {
        assert_legend_outside(&Svg::read(&c.svg), &c.svg.display().to_string());
    }
    // A legend too long for the side goes below the plot, and the image grows to hold it.
    let machines: Vec<String> = (0..6)
        .map(|i| format!("AMD EPYC [AuthenticAMD 25/{i}] x2 24GiB avx2+fma+avx512f+avx512_bf16"))
        .collect();
    let rows: Vec<HistoryRow> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| common::history_row("aaaaaaa1", 1, "peft", m, 100.0 + i as f64))
        .collect();
    let charts = history_charts(&rows);
    let svg = Svg::read(&render(&charts[0], dir.path()).unwrap().svg);
    assert_legend_outside(&svg, "long legend");
    assert!(svg.legend_box().unwrap().y0 >= svg.plot_area().y1);
    assert!(svg.size().1 > 540.0);
}

#[test]
fn step_axes_have_integer_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let out = fixture_report(dir.path());
    let curve = |n: usize| LossCurve {
        name: format!("run of {n} steps"),
        train: (1..=n).map(|s| (s, 3.0 - s as f64 / n as f64)).collect(),
        eval: vec![],
    };
    let mut svgs = vec![chart_svg(&out, "loss")];
    for n in [1, 3, 24, 1000] {
        let chart = Chart {
            stem: format!("loss{n}"),
            title: "t".into(),
            x_label: "optimizer step".into(),
            y_label: "loss".into(),
            kind: ChartKind::Loss(vec![curve(n)]),
        };
        svgs.push(Svg::read(&render(&chart, dir.path()).unwrap().svg));
    }
    for svg in &svgs {
        let ticks: Vec<String> = svg
            .texts("x-axis")
            .into_iter()
            .filter(|t| t != "optimizer step")
            .collect();
        assert!(ticks.len() >= 2, "x ticks: {ticks:?}");
        for t in &ticks {
            assert!(
                t.parse::<i64>().is_ok(),
                "step tick `{t}` is not an integer: {ticks:?}"
            );
        }
        let values: Vec<i64> = ticks.iter().map(|t| t.parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    }
    // Value axes never print a bare `.0` on whole numbers (peak memory in MiB).
    let memory = chart_svg(&out, "peak_memory").texts("y-axis");
    assert!(memory.iter().any(|t| t == "0"), "{memory:?}");
    assert!(memory.iter().all(|t| !t.ends_with(".0")), "{memory:?}");
}

#[test]
fn eval_losses_are_markers_over_a_smoothed_faint_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = fixture_report(dir.path());
    let svg = chart_svg(&out, "loss");
    // peft's metrics carry eval losses at steps 2 and 4; unsloth's only its summary's final one.
    let centres = |series: &str| -> BTreeSet<(i64, i64)> {
        svg.series("eval-loss", series)
            .iter()
            .filter(|e| e.name == "circle")
            .map(|e| (e.num("cx") as i64, e.num("cy") as i64))
            .collect()
    };
    let (peft, unsloth) = (centres("peft #1"), centres("unsloth #1"));
    assert_eq!(peft.len(), 2, "{peft:?}");
    assert_eq!(unsloth.len(), 1, "{unsloth:?}");
    let last_peft_x = peft.iter().map(|c| c.0).max().unwrap();
    assert_eq!(
        unsloth.iter().next().unwrap().0,
        last_peft_x,
        "final eval at the last step"
    );
    for run in ["peft #1", "unsloth #1"] {
        let lines: Vec<_> = svg
            .series("series", run)
            .into_iter()
            .filter(|e| e.name == "polyline" || e.name == "polygon")
            .collect();
        assert_eq!(lines.len(), 2, "{run}: raw and smoothed lines");
        let faint = lines.iter().filter(|e| e.opacity() < 0.5).count();
        assert_eq!(faint, 1, "{run}: one faint per-step line");
    }
    let legend = svg.texts("legend");
    assert!(legend.iter().any(|t| t == "eval loss"), "{legend:?}");
    assert!(
        legend
            .iter()
            .any(|t| t.starts_with("EMA of per-step loss (span")),
        "{legend:?}"
    );

    // Without eval losses there are no markers and no legend entry for them.
    let chart = Chart {
        stem: "no_eval".into(),
        title: "t".into(),
        x_label: "optimizer step".into(),
        y_label: "loss".into(),
        kind: ChartKind::Loss(vec![LossCurve {
            name: "r".into(),
            train: vec![(1, 3.0), (2, 2.0)],
            eval: vec![],
        }]),
    };
    let svg = Svg::read(&render(&chart, dir.path()).unwrap().svg);
    assert_eq!(svg.in_group("eval-loss").count(), 0);
    assert!(!svg.texts("legend").iter().any(|t| t == "eval loss"));
}

#[test]
fn history_charts_draw_one_line_per_method_and_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out = fixture_report(dir.path());
    for stem in ["history_tokens_per_s", "history_peak_memory"] {
        let svg = chart_svg(&out, stem);
        let names = svg.series_names("series");
        assert_eq!(names.len(), 4, "{stem}: {names:?}");
        assert!(
            names.iter().all(|n| !n.contains("ffffffff")),
            "another config's row: {names:?}"
        );
        for name in &names {
            let lines: Vec<_> = svg
                .series("series", name)
                .into_iter()
                .filter(|e| e.name == "polyline" || e.name == "polygon")
                .collect();
            let markers = svg
                .series("series", name)
                .iter()
                .filter(|e| e.name == "circle")
                .count();
            let want = if name.starts_with("unsloth · Fixture CPU x2") {
                2
            } else {
                3
            };
            assert_eq!(lines.len(), 1, "{stem} {name}: one line");
            assert_eq!(markers, want, "{stem} {name}: points at the commits it ran");
        }
        let ticks: Vec<String> = svg
            .texts("x-axis")
            .into_iter()
            .filter(|t| !t.starts_with("commit"))
            .collect();
        assert_eq!(ticks, ["aaaaaaa", "bbbbbbb", "ccccccc"], "{stem}");
    }
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(
        md.contains("## History") && md.contains("over 3 commits"),
        "{md}"
    );
    assert!(md.contains("(history_tokens_per_s.png)") && md.contains("(history_peak_memory.svg)"));
}

#[test]
fn memory_axes_say_rss_on_cpu_and_not_device_memory_on_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    let cpu_run = tb_report::load_run(&f.join("runs/20260101T000000Z-peft")).unwrap();
    let mut gpu_run = tb_report::load_run(&f.join("runs/20260101T001000Z-unsloth")).unwrap();
    gpu_run.summary.backend = "cuda+nf4".into();
    let label = |runs: Vec<tb_report::Run>, sub: &str| {
        let inputs = tb_report::ReportInputs {
            runs,
            ..Default::default()
        };
        let out = tb_report::write_report(
            &inputs,
            &common::environment(&inputs),
            &dir.path().join(sub),
        )
        .unwrap();
        let axis = chart_svg(&out, "peak_memory").texts("y-axis");
        let md = std::fs::read_to_string(&out.markdown).unwrap();
        (axis, md)
    };
    let (cpu_axis, cpu_md) = label(vec![cpu_run.clone()], "cpu");
    assert!(
        cpu_axis.iter().any(|t| t == "peak RSS (MiB)"),
        "{cpu_axis:?}"
    );
    assert!(!cpu_md.contains("GPU memory"));
    let (gpu_axis, gpu_md) = label(vec![gpu_run.clone()], "gpu");
    assert!(
        gpu_axis
            .iter()
            .any(|t| t.contains("host RSS") && t.contains("GPU memory not recorded")),
        "{gpu_axis:?}"
    );
    assert!(
        !gpu_axis.iter().any(|t| t == "peak RSS (MiB)"),
        "{gpu_axis:?}"
    );
    assert!(gpu_md.contains("| cuda+nf4 |") && gpu_md.contains("GPU memory is not recorded"));
    let (mixed, _) = label(vec![cpu_run, gpu_run], "mixed");
    assert!(
        mixed.iter().any(|t| t.contains("GPU runs: host only")),
        "{mixed:?}"
    );

    // History rows carry their backend the same way.
    let mut rows = common::fixture_history();
    let memory = |rows: &[HistoryRow]| {
        let charts = history_charts(rows);
        let svg = Svg::read(&render(&charts[1], dir.path()).unwrap().svg);
        svg.texts("y-axis")
    };
    assert!(memory(&rows).iter().any(|t| t == "peak RSS (MiB)"));
    for r in &mut rows {
        r.backend = "cuda".into();
    }
    assert!(memory(&rows)
        .iter()
        .any(|t| t.contains("GPU memory not recorded")));
}

#[test]
fn a_history_of_zero_or_one_commit_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    assert!(history_charts(&[]).is_empty());
    let one: Vec<HistoryRow> = common::fixture_history()
        .into_iter()
        .filter(|r| r.commit == "aaaaaaa111")
        .collect();
    let charts = history_charts(&one);
    assert_eq!(charts.len(), 2);
    for chart in &charts {
        assert!(chart.title.contains("a trend needs ≥ 2"), "{}", chart.title);
        let svg = Svg::read(&render(chart, dir.path()).unwrap().svg);
        for name in svg.series_names("series") {
            let els = svg.series("series", &name);
            assert!(
                els.iter().all(|e| e.name == "circle") && els.len() == 1,
                "{name}: {els:?}"
            );
        }
    }
    let f = common::fixtures();
    let run = tb_report::load_run(&f.join("runs/20260101T000000Z-peft")).unwrap();
    let report = |history: Vec<HistoryRow>, sub: &str| {
        let inputs = tb_report::ReportInputs {
            runs: vec![run.clone()],
            history,
            ..Default::default()
        };
        let out = tb_report::write_report(
            &inputs,
            &common::environment(&inputs),
            &dir.path().join(sub),
        )
        .unwrap();
        (
            out.charts.len(),
            std::fs::read_to_string(&out.markdown).unwrap(),
        )
    };
    let (n, md) = report(one, "one");
    assert_eq!(n, 5, "loss, tokens/s, memory and the two history charts");
    assert!(md.contains("a trend needs runs at ≥ 2 commits"), "{md}");
    let (n, md) = report(Vec::new(), "none");
    assert_eq!(n, 3);
    assert!(md.contains("No run history was given"), "{md}");
}

#[test]
fn regress_charts_show_the_checked_commits_configs() {
    let mut rows = common::fixture_history();
    rows.retain(|r| r.config_hash == common::FIXTURE_CONFIG);
    let mut other = common::history_row("aaaaaaa111", 1, "peft", "m", 5.0);
    other.config_hash = "ffffffffffffffff".into();
    rows.push(other);
    let report = tb_report::regress(&rows, &Default::default()).unwrap();
    assert_eq!(report.current, "ccccccc333");
    let charts = tb_report::regress_charts(&rows, &report);
    let ChartKind::CategoryLines { categories, series } = &charts[0].kind else {
        panic!("history charts are category lines");
    };
    assert_eq!(categories, &["aaaaaaa", "bbbbbbb", "ccccccc"]);
    assert_eq!(series.len(), 4, "{series:?}");
    assert!(
        series.iter().all(|(name, _)| !name.contains("· m")),
        "{series:?}"
    );
}
