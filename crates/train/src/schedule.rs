//! Learning-rate schedules with linear warm-up, defined exactly like HF transformers'
//! `get_{linear,cosine,constant}_schedule_with_warmup` (a `LambdaLR` evaluated at the number of
//! updates already made, so the first update of a warm-up uses lr 0).

use crate::config::{OptimizerSection, ScheduleKind};

/// Learning rate as a function of the optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// All optimizer steps of the run.
    pub total: usize,
    /// Decay after warm-up.
    pub kind: ScheduleKind,
}

impl LrSchedule {
    /// From the optimizer section and the run's step count.
    pub fn new(opt: &OptimizerSection, total: usize) -> Self {
        let warmup = if opt.warmup_steps > 0 {
            opt.warmup_steps
        } else {
            (opt.warmup_ratio * total as f64).ceil() as usize
        };
        Self {
            peak: opt.lr,
            warmup,
            total,
            kind: opt.schedule,
        }
    }

    /// Learning rate for the update made after `done` earlier updates (0-based).
    pub fn lr(&self, done: usize) -> f64 {
        if done < self.warmup {
            return self.peak * done as f64 / self.warmup.max(1) as f64;
        }
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => {
                let left = self.total.saturating_sub(done) as f64;
                (left / self.total.saturating_sub(self.warmup).max(1) as f64).max(0.0)
            }
            ScheduleKind::Cosine => {
                let progress = (done - self.warmup) as f64
                    / self.total.saturating_sub(self.warmup).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, warmup: usize, total: usize) -> LrSchedule {
        LrSchedule {
            peak: 1.0,
            warmup,
            total,
            kind,
        }
    }

    #[test]
    fn warmup_starts_at_zero_and_reaches_peak() {
        let s = schedule(ScheduleKind::Linear, 4, 10);
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(2), 0.5);
        assert_eq!(s.lr(4), 1.0);
    }

    #[test]
    fn linear_and_cosine_decay_to_zero_like_hf() {
        let lin = schedule(ScheduleKind::Linear, 2, 10);
        assert!((lin.lr(6) - 0.5).abs() < 1e-12);
        assert_eq!(lin.lr(10), 0.0);
        let cos = schedule(ScheduleKind::Cosine, 2, 10);
        assert!((cos.lr(6) - 0.5).abs() < 1e-12);
        assert!(cos.lr(10).abs() < 1e-12);
        assert!((cos.lr(4) - 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())).abs() < 1e-12);
        let constant = schedule(ScheduleKind::Constant, 0, 10);
        assert_eq!(constant.lr(9), 1.0);
    }
}
