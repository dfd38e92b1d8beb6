//! The demo's "before" picture for the loss: the base model's eval loss on the eval examples
//! the trainers' eval loss uses, measured by `tunebench eval-loss --run` into the PEFT-style
//! run's folder (`base_eval_loss.json`), where the report finds it beside the run's own eval
//! loss. Both trainers read the same experiment file, so one measurement serves both.

use anyhow::Result;
use tb_train::{ExperimentConfig, TrainOutcome, BASE_EVAL_FILE};

use super::tunebench;

/// Measures the base model's eval loss for `run` unless it is there already (a continued demo)
/// or the experiment has no eval set (then no eval loss exists to compare with).
pub(super) fn base_eval_loss_step(config: &ExperimentConfig, run: &TrainOutcome) -> Result<()> {
    println!("   base model's eval loss on the same eval examples (the before column)");
    let file = run.run.join(BASE_EVAL_FILE);
    if config.data.eval.is_none() {
        println!("   no [data] eval in the experiment: no eval loss, before or after");
    } else if file.is_file() {
        println!("   reusing {}", file.display());
    } else {
        tunebench(&["eval-loss", "--run", &run.run.to_string_lossy()])?;
    }
    Ok(())
}
