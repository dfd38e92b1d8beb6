//! What the demo shows while a trainer child runs. The child writes one typed
//! [`StepMetrics`] line per logged step to `metrics.jsonl` in its run folder; the demo follows
//! that file (never the child's printed text) and shows the stage's step n/N, tokens/s and ETA:
//! an indicatif bar when stderr is a terminal, `tracing` lines otherwise. The child's own stderr
//! (its log lines) is passed through above the bar, so the two never overwrite each other.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tb_train::run_dir::{MetricsTail, StepMetrics};
use tb_train::ExperimentConfig;

use crate::commands::eval::duration_text;

/// How often the metrics file is read.
const POLL: Duration = Duration::from_millis(300);
/// How often a non-terminal progress line is logged (the last step is always logged).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where a trainer child keeps its run.
#[derive(Debug, Clone)]
pub(crate) enum RunTarget {
    /// The run folder it resumes.
    Resume(PathBuf),
    /// The first run folder (one with a `config.toml`) that appears under `runs` and was not
    /// there before the child started.
    NewUnder {
        /// The child's `--runs-dir`.
        runs: PathBuf,
        /// Folders already there.
        before: BTreeSet<PathBuf>,
    },
}

impl RunTarget {
    /// A new run under `runs`: remembers what is there now, before the child starts.
    pub(crate) fn new_under(runs: &Path) -> Self {
        Self::NewUnder {
            runs: runs.to_path_buf(),
            before: subfolders(runs),
        }
    }

    /// The run folder, once the child has written its resolved config there.
    fn locate(&self) -> Option<PathBuf> {
        match self {
            Self::Resume(run) => Some(run.clone()),
            Self::NewUnder { runs, before } => subfolders(runs)
                .into_iter()
                .find(|p| !before.contains(p) && p.join("config.toml").is_file()),
        }
    }
}

fn subfolders(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// One logged step as the demo shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepView {
    /// Optimizer steps done.
    pub step: usize,
    /// Steps of the run, when the run's config fixes them (`max_steps`).
    pub total: Option<usize>,
    /// Real tokens per second of this step.
    pub tokens_per_s: f64,
    /// This step's training loss.
    pub loss: f64,
    /// Seconds left at the run's mean seconds per step so far.
    pub eta_s: Option<f64>,
}

impl StepView {
    /// The view of a metrics line of a run of `total` steps.
    pub(crate) fn new(m: &StepMetrics, total: Option<usize>) -> Self {
        let eta_s = total
            .filter(|_| m.step > 0)
            .map(|t| m.elapsed_s / m.step as f64 * t.saturating_sub(m.step) as f64);
        Self {
            step: m.step,
            total,
            tokens_per_s: m.tokens_per_s,
            loss: m.loss,
            eta_s,
        }
    }

    /// `step 12/24, 103.2 tokens/s, loss 3.512, eta 1m 20s` (short enough to follow a bar on an
    /// 80-column terminal).
    pub(crate) fn text(&self) -> String {
        let step = match self.total {
            Some(t) => format!("step {}/{t}", self.step),
            None => format!("step {}", self.step),
        };
        let mut out = format!(
            "{step}, {:.1} tokens/s, loss {:.3}",
            self.tokens_per_s, self.loss
        );
        if let Some(eta) = self.eta_s {
            out.push_str(&format!(", eta {}", duration_text(eta)));
        }
        out
    }

    /// Whether this is the run's last step.
    fn is_last(&self) -> bool {
        self.total == Some(self.step)
    }
}

/// Reads the new complete lines of a run's `metrics.jsonl`.
struct MetricsFollower {
    target: RunTarget,
    run: Option<PathBuf>,
    total: Option<usize>,
    tail: Option<MetricsTail>,
}

impl MetricsFollower {
    fn new(target: RunTarget) -> Self {
        Self {
            target,
            run: None,
            total: None,
            tail: None,
        }
    }

    /// The steps logged since the last call (none while the run folder does not exist yet).
    fn poll(&mut self) -> Vec<StepView> {
        if self.run.is_none() {
            self.run = self.target.locate();
            if let Some(run) = &self.run {
                // The demo always fixes the step count; a run by epochs shows no total.
                self.total = ExperimentConfig::load(run.join("config.toml"))
                    .ok()
                    .map(|c| c.train.max_steps)
                    .filter(|&n| n > 0);
                self.tail = Some(MetricsTail::new(run.join("metrics.jsonl")));
            }
        }
        let Some(tail) = &mut self.tail else {
            return Vec::new();
        };
        tail.poll()
            .iter()
            .map(|m| StepView::new(m, self.total))
            .collect()
    }
}

/// The progress display of one trainer stage, updated by a thread that follows the run's
/// metrics until [`StageProgress::finish`].
pub(crate) struct StageProgress {
    bar: Option<ProgressBar>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StageProgress {
    /// Starts following the run of `target`; `label` names the stage (`peft`, `unsloth`).
    pub(crate) fn start(label: &str, target: RunTarget) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            // No length until the run's config gives one: an empty bar, not a full one.
            let bar = ProgressBar::no_length();
            let style = ProgressStyle::with_template("   {prefix} [{bar:14}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            bar.set_message("loading the model and the data");
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bar, stop, label) = (bar.clone(), Arc::clone(&stop), label.to_owned());
            std::thread::spawn(move || follow(target, bar.as_ref(), &stop, &label))
        };
        Self {
            bar,
            stop,
            thread: Some(thread),
        }
    }

    /// Shows a line the child wrote to its stderr (above the bar when there is one).
    pub(crate) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    /// Reads the last steps and clears the bar: the caller prints the stage's outcome line in
    /// its place.
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The follower thread: polls the metrics until `stop`, then once more.
fn follow(target: RunTarget, bar: Option<&ProgressBar>, stop: &AtomicBool, label: &str) {
    let mut metrics = MetricsFollower::new(target);
    let mut logged: Option<Instant> = None;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        for view in metrics.poll() {
            match bar {
                Some(bar) => {
                    if let Some(t) = view.total {
                        bar.set_length(t as u64);
                    }
                    bar.set_position(view.step as u64);
                    bar.set_message(view.text());
                }
                None if view.is_last() || logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) => {
                    logged = Some(Instant::now());
                    tracing::info!(stage = label, "{}", view.text());
                }
                None => {}
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: usize, elapsed_s: f64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0.0,
            loss: 3.25,
            lr: 1e-4,
            grad_norm: 1.0,
            tokens: 100,
            loss_tokens: 50,
            slots: 100,
            tokens_per_s: 103.25,
            elapsed_s,
            rss_mib: 10.0,
            eval_loss: None,
        }
    }

    #[test]
    fn a_step_shows_n_of_total_tokens_per_second_and_eta() {
        // 6 of 24 steps in 60 s: 18 more at 10 s each.
        let v = StepView::new(&metrics(6, 60.0), Some(24));
        assert_eq!(v.eta_s, Some(180.0));
        assert_eq!(
            v.text(),
            "step 6/24, 103.2 tokens/s, loss 3.250, eta 3m 00s"
        );
        let v = StepView::new(&metrics(6, 60.0), None);
        assert_eq!(v.text(), "step 6, 103.2 tokens/s, loss 3.250");
        assert!(StepView::new(&metrics(24, 240.0), Some(24)).is_last());
    }

    #[test]
    fn the_follower_reads_complete_lines_of_the_run_that_appears() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let old = runs.join("old-run");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("config.toml"), "").unwrap();
        let mut f = MetricsFollower::new(RunTarget::new_under(&runs));
        assert!(f.poll().is_empty(), "a run from before is not followed");

        let run = runs.join("new-run");
        std::fs::create_dir_all(&run).unwrap();
        let config = "[model]\nbase = \"m\"\n[data]\ntrain = \"t\"\n[train]\nmax_steps = 4\n";
        std::fs::write(run.join("config.toml"), config).unwrap();
        let line = |step| serde_json::to_string(&metrics(step, step as f64)).unwrap();
        // The second line is still being written.
        let partial = line(2);
        let text = format!("{}\n{}", line(1), &partial[..10]);
        std::fs::write(run.join("metrics.jsonl"), &text).unwrap();
        let seen = f.poll();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].step, seen[0].total), (1, Some(4)));

        std::fs::write(
            run.join("metrics.jsonl"),
            format!("{}\n{partial}\n", line(1)),
        )
        .unwrap();
        let seen: Vec<usize> = f.poll().iter().map(|v| v.step).collect();
        assert_eq!(seen, [2]);
        // Cut back to one step (a resume from a checkpoint): read again from the start.
        std::fs::write(run.join("metrics.jsonl"), format!("{}\n", line(1))).unwrap();
        let seen: Vec<usize> = f.poll().iter().map(|v| v.step).collect();
        assert_eq!(seen, [1]);
        assert!(f.poll().is_empty());
    }
}
