//! Text generation with a KV cache: greedy, or temperature + top-p sampling with a seed.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cache::KvCache;
use crate::causal_lm::CausalLm;
use crate::error::{Error, Result};
use crate::ModelBackend;

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Always the most likely token (ties: the lowest id, as llama.cpp's greedy sampler).
    Greedy,
    /// Softmax with a temperature, then nucleus (top-p) filtering, drawn with a seeded RNG.
    TopP {
        /// Temperature (> 0).
        temperature: f32,
        /// Keep the smallest set of tokens whose probability mass reaches `top_p` (0 < p ≤ 1).
        top_p: f32,
        /// RNG seed: the same seed gives the same text.
        seed: u64,
    },
}

impl Sampling {
    /// The random generator [`pick`] draws from: seeded by `seed` for top-p (the same seed gives
    /// the same text), unused by greedy decoding. An error names a temperature that is not a
    /// finite value > 0 or a `top_p` outside (0, 1].
    pub fn rng(self) -> Result<StdRng> {
        let seed = match self {
            Sampling::Greedy => 0,
            Sampling::TopP {
                temperature,
                top_p,
                seed,
            } => {
                if !(temperature > 0.0 && temperature.is_finite()) {
                    return Err(Error::InvalidInput(format!(
                        "temperature must be > 0, got {temperature}"
                    )));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(Error::InvalidInput(format!(
                        "top_p must be in (0, 1], got {top_p}"
                    )));
                }
                seed
            }
        };
        Ok(StdRng::seed_from_u64(seed))
    }
}

/// Generation settings.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Most new tokens to produce.
    pub max_new_tokens: usize,
    /// Token selection.
    pub sampling: Sampling,
    /// Token ids that end generation (not included in the output).
    pub stop_ids: Vec<u32>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

/// Output of [`generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids (without the stop token).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop_reason: StopReason,
}

/// Picks a token from one row of logits.
pub fn pick(logits: &[f32], sampling: Sampling, rng: &mut StdRng) -> u32 {
    match sampling {
        Sampling::Greedy => argmax(logits),
        Sampling::TopP {
            temperature, top_p, ..
        } => {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut probs: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l - max) / temperature).exp()))
                .collect();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let total: f32 = probs.iter().map(|p| p.1).sum();
            let mut kept = 0;
            let mut mass = 0.0;
            for (_, p) in &probs {
                mass += p / total;
                kept += 1;
                if mass >= top_p {
                    break;
                }
            }
            let probs = &probs[..kept];
            let kept_total: f32 = probs.iter().map(|p| p.1).sum();
            let mut r = rng.random::<f32>() * kept_total;
            for (id, p) in probs {
                if r < *p {
                    return *id;
                }
                r -= p;
            }
            probs[kept - 1].0
        }
    }
}

/// Index of the largest logit; ties go to the lowest index (llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Generates after `prompt` with a KV cache (batch 1).
pub fn generate<B: ModelBackend>(
    model: &CausalLm<B>,
    prompt: &[u32],
    config: &GenerationConfig,
    device: &B::Device,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::InvalidInput("the prompt has no tokens".into()));
    }
    let mut rng = config.sampling.rng()?;
    let limit = model.rope.max_positions();
    if prompt.len() + config.max_new_tokens > limit {
        return Err(Error::InvalidInput(format!(
            "prompt ({}) + max_new_tokens ({}) exceed the {limit} positions this model handles",
            prompt.len(),
            config.max_new_tokens
        )));
    }
    let mut cache = KvCache::new(model.n_layers());
    let mut tokens = Vec::new();
    let mut input: Vec<u32> = prompt.to_vec();
    for _ in 0..config.max_new_tokens {
        let n = input.len();
        let ids = Tensor::<B, 1, Int>::from_data(
            TensorData::new(input.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n]),
            device,
        )
        .reshape([1, n]);
        let options = model.causal_options(1, n, cache.len(), device);
        let hidden = model.hidden_states(ids, &options, Some(&mut cache));
        let last = hidden.narrow(1, n - 1, 1);
        let logits = model
            .lm_logits(last)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::InvalidInput(format!("reading logits: {e:?}")))?;
        let next = pick(&logits, config.sampling, &mut rng);
        if config.stop_ids.contains(&next) {
            return Ok(Generation {
                tokens,
                stop_reason: StopReason::Stop,
            });
        }
        on_token(next);
        tokens.push(next);
        input = vec![next];
    }
    Ok(Generation {
        tokens,
        stop_reason: StopReason::Length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(pick(&[0.1, 3.0, 3.0, -1.0], Sampling::Greedy, &mut rng), 1);
    }

    #[test]
    fn top_p_is_seeded_and_respects_nucleus() {
        let logits = [5.0, 4.9, -10.0, -10.0];
        let s = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.9,
            seed: 7,
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| pick(&logits, s, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(
            a.iter().all(|&t| t < 2),
            "tail tokens are outside the nucleus"
        );
        assert!(a.contains(&0) && a.contains(&1));
    }
}
