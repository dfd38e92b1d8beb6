//! Attaching LoRA branches to a model's projections, PEFT's way: the base is frozen, `A` gets
//! Kaiming-uniform (a = √5) and `B` zeros (or the other PEFT initialisations), and the scale is
//! `alpha / r` (`alpha / sqrt(r)` with rsLoRA), per module when rank/alpha patterns apply.

use burn::module::{Module, Param};
use burn::nn::DropoutConfig;
use burn::prelude::*;
use gaussian::sample as normal;
use rand::{Rng, SeedableRng};
use tb_model::{CausalLm, LoraBranch};

use super::peft_config::{InitLoraWeights, LoraConfig};
use crate::error::{Error, Result};

/// Host-side initial values of one adapter, in PEFT layout (`A [r, in]`, `B [out, r]`).
#[derive(Debug, Clone)]
pub struct InitialAdapter {
    /// `lora_A.weight`.
    pub a: Vec<f32>,
    /// `lora_B.weight`.
    pub b: Vec<f32>,
}

/// `nn.init.kaiming_uniform_(w, a=√5)` bound for a weight with `fan_in` inputs: `1/√fan_in`.
fn kaiming_bound(fan_in: usize) -> f32 {
    let gain = (2.0f64 / (1.0 + 5.0)).sqrt();
    (gain * (3.0 / fan_in as f64).sqrt()) as f32
}

/// Initial values for a module with `d_in` inputs, `d_out` outputs and rank `r`.
pub fn initial_values(
    init: InitLoraWeights,
    d_in: usize,
    d_out: usize,
    r: usize,
    rng: &mut rand::rngs::StdRng,
) -> InitialAdapter {
    let uniform = |n: usize, bound: f32, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-bound..=bound)).collect()
    };
    match init {
        InitLoraWeights::Default => InitialAdapter {
            a: uniform(r * d_in, kaiming_bound(d_in), rng),
            b: vec![0.0; d_out * r],
        },
        InitLoraWeights::Gaussian => InitialAdapter {
            a: (0..r * d_in).map(|_| normal(rng) / r as f32).collect(),
            b: vec![0.0; d_out * r],
        },
        InitLoraWeights::Random => InitialAdapter {
            a: uniform(r * d_in, kaiming_bound(d_in), rng),
            b: uniform(d_out * r, kaiming_bound(r), rng),
        },
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = data[i * cols + j];
        }
    }
    out
}

/// Sizes of one adapter: input width, output width, rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchShape {
    /// Input width of the projection.
    pub d_in: usize,
    /// Output width of the projection.
    pub d_out: usize,
    /// LoRA rank: rows of A, columns of B.
    pub r: usize,
}

/// Builds a branch from PEFT-layout values (`A [r, in]`, `B [out, r]`).
pub fn branch_from_peft<B: Backend>(
    a: &[f32],
    b: &[f32],
    shape: BranchShape,
    scale: f64,
    dropout: f64,
    device: &B::Device,
) -> LoraBranch<B> {
    let BranchShape { d_in, d_out, r } = shape;
    let a = Tensor::<B, 2>::from_data(TensorData::new(transpose(a, r, d_in), [d_in, r]), device);
    let b = Tensor::<B, 2>::from_data(TensorData::new(transpose(b, d_out, r), [r, d_out]), device);
    LoraBranch {
        lora_a: Param::from_tensor(a),
        lora_b: Param::from_tensor(b),
        scale,
        dropout: DropoutConfig::new(dropout).init(),
    }
}

/// Freezes the model and attaches fresh adapters to every targeted projection. Returns the
/// model and the adapted module names in model order.
pub fn attach_lora<B: Backend>(
    model: CausalLm<B>,
    config: &LoraConfig,
    seed: u64,
    device: &B::Device,
) -> Result<(CausalLm<B>, Vec<String>)> {
    let mut model = model.no_grad();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut names = Vec::new();
    for (name, lin) in model.projections_mut() {
        if !config.targets(&name) {
            continue;
        }
        let (d_in, d_out) = (lin.d_input(), lin.d_output());
        let r = config.rank_for(&name);
        let init = initial_values(config.init_lora_weights, d_in, d_out, r, &mut rng);
        lin.lora = Some(branch_from_peft(
            &init.a,
            &init.b,
            BranchShape { d_in, d_out, r },
            config.scale_for(&name),
            config.lora_dropout,
            device,
        ));
        names.push(name);
    }
    if names.is_empty() {
        return Err(Error::AdapterConfig {
            path: "<config>".into(),
            field: "target_modules".into(),
            message: format!(
                "matched no projection of this model (names look like `model.layers.0.self_attn.q_proj`); got {:?}",
                config.target_modules
            ),
        });
    }
    Ok((model, names))
}

/// A standard normal sample (Box–Muller), so no extra distribution crate is needed.
mod gaussian {
    use rand::Rng;

    pub fn sample(rng: &mut rand::rngs::StdRng) -> f32 {
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}
