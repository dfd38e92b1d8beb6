//! AdamW with PyTorch's semantics (decoupled weight decay, bias-corrected moments) and
//! global-norm gradient clipping like `torch.nn.utils.clip_grad_norm_`, over host-side named
//! tensors. Trainers hand over gradients in a fixed order; the state is saved with checkpoints.

use serde::{Deserialize, Serialize};

use crate::config::OptimizerSection;
use crate::error::{Error, Result};

/// A named f32 tensor on the host (trainable weights, gradients, optimizer moments).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Stable name (the trainers use PEFT's key names).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// Zeros of the given shape.
    pub fn zeros(name: impl Into<String>, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            name: name.into(),
            shape,
            data: vec![0.0; n],
        }
    }
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWSettings {
    /// Decay of the first-moment average (PyTorch's `betas[0]`, 0.9 by default).
    pub beta1: f64,
    /// Decay of the second-moment average (PyTorch's `betas[1]`, 0.999 by default).
    pub beta2: f64,
    /// Epsilon added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Global-norm clip; 0 = none.
    pub max_grad_norm: f64,
}

impl From<&OptimizerSection> for AdamWSettings {
    fn from(o: &OptimizerSection) -> Self {
        Self {
            beta1: o.betas[0],
            beta2: o.betas[1],
            eps: o.eps,
            weight_decay: o.weight_decay,
            max_grad_norm: o.max_grad_norm,
        }
    }
}

/// AdamW state: first and second moments per tensor and the step count.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    /// Betas, eps, weight decay and clip norm, from `[optimizer]`.
    pub settings: AdamWSettings,
    /// Updates made so far.
    pub step: usize,
    /// First moments, one per trainable tensor.
    pub exp_avg: Vec<NamedTensor>,
    /// Second moments.
    pub exp_avg_sq: Vec<NamedTensor>,
}

/// The global L2 norm of all gradients, accumulated in f64.
pub fn global_norm(grads: &[NamedTensor]) -> f64 {
    grads
        .iter()
        .flat_map(|g| g.data.iter())
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Scales gradients so their global norm is at most `max_norm` (no-op for 0); returns the
/// norm before clipping. Same coefficient as PyTorch: `max_norm / (norm + 1e-6)`, clamped to 1.
pub fn clip_global_norm(grads: &mut [NamedTensor], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            let c = coef as f32;
            for g in grads.iter_mut() {
                g.data.iter_mut().for_each(|x| *x *= c);
            }
        }
    }
    norm
}

impl AdamW {
    /// Fresh state for the given parameters.
    pub fn new(settings: AdamWSettings, params: &[NamedTensor]) -> Self {
        let zeros = |p: &NamedTensor| NamedTensor::zeros(p.name.clone(), p.shape.clone());
        Self {
            settings,
            step: 0,
            exp_avg: params.iter().map(zeros).collect(),
            exp_avg_sq: params.iter().map(zeros).collect(),
        }
    }

    /// One update with learning rate `lr`: `params -= lr · (m̂ / (sqrt(v̂) + eps) + wd · params)`.
    pub fn update(
        &mut self,
        params: &mut [NamedTensor],
        grads: &[NamedTensor],
        lr: f64,
    ) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.exp_avg.len() {
            return Err(Error::Method(format!(
                "optimizer holds {} tensors, got {} parameters and {} gradients",
                self.exp_avg.len(),
                params.len(),
                grads.len()
            )));
        }
        self.step += 1;
        let s = self.settings;
        let t = self.step as i32;
        let bc1 = 1.0 - s.beta1.powi(t);
        let bc2 = 1.0 - s.beta2.powi(t);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = (1.0 - lr * s.weight_decay) as f32;
        let (b1, b2, eps) = (s.beta1 as f32, s.beta2 as f32, s.eps as f32);
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(self.exp_avg.iter_mut())
            .zip(self.exp_avg_sq.iter_mut())
        {
            if p.data.len() != g.data.len() || p.data.len() != m.data.len() {
                return Err(Error::Method(format!(
                    "`{}`: parameter has {} values, gradient {}, optimizer state {}",
                    p.name,
                    p.data.len(),
                    g.data.len(),
                    m.data.len()
                )));
            }
            for i in 0..p.data.len() {
                let gi = g.data[i];
                p.data[i] *= decay;
                m.data[i] = b1 * m.data[i] + (1.0 - b1) * gi;
                v.data[i] = b2 * v.data[i] + (1.0 - b2) * gi * gi;
                let denom = v.data[i].sqrt() / bc2_sqrt + eps;
                p.data[i] -= step_size * m.data[i] / denom;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data: Vec<f32>) -> NamedTensor {
        NamedTensor {
            name: "w".into(),
            shape: vec![data.len()],
            data,
        }
    }

    #[test]
    fn first_adamw_step_moves_by_lr_in_sign_direction() {
        // With bias correction the first update is lr * g / (|g| + eps) (+ weight decay).
        let settings = AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            max_grad_norm: 0.0,
        };
        let mut p = vec![t(vec![1.0, -2.0])];
        let g = vec![t(vec![0.5, -3.0])];
        let mut opt = AdamW::new(settings, &p);
        opt.update(&mut p, &g, 0.01).unwrap();
        let expect0 = 1.0 * (1.0 - 0.01 * 0.1) - 0.01;
        let expect1 = -2.0 * (1.0 - 0.01 * 0.1) + 0.01;
        assert!((p[0].data[0] - expect0 as f32).abs() < 1e-6);
        assert!((p[0].data[1] - expect1 as f32).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = vec![t(vec![3.0, 4.0])];
        let norm = clip_global_norm(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
        let mut small = vec![t(vec![0.3, 0.4])];
        clip_global_norm(&mut small, 1.0);
        assert_eq!(small[0].data, vec![0.3, 0.4]);
    }

    #[test]
    fn mismatched_gradients_are_an_error() {
        let settings = AdamWSettings {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 0.0,
        };
        let mut p = vec![t(vec![1.0, 2.0])];
        let mut opt = AdamW::new(settings, &p);
        let err = opt.update(&mut p, &[t(vec![1.0])], 0.1).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
    }
}
