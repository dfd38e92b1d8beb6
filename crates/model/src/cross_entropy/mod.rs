//! The causal-LM loss op shared by the PEFT-style trainer and evaluation: per-row
//! cross-entropy of logits against target ids, `nll[r] = logsumexp(logits[r]) −
//! logits[r, target[r]]`, with 0 (and no gradient) for a row whose target is outside
//! `[0, vocab)` (HF's `ignore_index = -100` among them).
//!
//! It is one op, as PyTorch's `F.cross_entropy` is one fused log-softmax + NLL kernel, rather
//! than Burn's `log_softmax` + `gather` chain (which writes the `[rows, vocab]` log-probabilities,
//! then a zero-filled scatter and four more full passes in the backward). The backward is
//! `dlogits[r] = dnll[r]·(softmax(logits[r]) − onehot(target[r]))`, written in one pass per row.
//! On Flex (the CPU) both passes run tb-kernels' SIMD softmax primitives, one rayon task per
//! row; other backends (CubeCL) use the default bodies, plain Burn tensor ops. Under
//! [`Autodiff`] the op records a single backward node whose parent is the logits.
//!
//! [`Autodiff`]: burn::backend::Autodiff

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
mod flex;

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{IndexingUpdateOp, TensorPrimitive};

/// Backends with the cross-entropy op (see the module docs). The default bodies are plain Burn
/// tensor ops, correct on any backend.
pub trait CrossEntropyBackend: Backend {
    /// Per-row logsumexp and negative log-likelihood.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, targets: `[rows]`
    /// - output: `(lse [rows], nll [rows])`
    fn cross_entropy_fwd(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        default_fwd::<Self>(logits, targets)
    }

    /// `dlogits[r] = dnll[r]·(exp(logits[r] − lse[r]) − onehot(target[r]))`, zero rows where
    /// the target is outside the vocabulary.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, lse, dnll: `[rows]`, targets: `[rows]`
    /// - output: `[rows, vocab]`
    fn cross_entropy_bwd(
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        targets: IntTensor<Self>,
        dnll: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        default_bwd::<Self>(logits, lse, targets, dnll)
    }

    /// The per-row NLL for the model: under autodiff it records the backward above; elsewhere
    /// it is [`Self::cross_entropy_fwd`]'s NLL.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, targets: `[rows]`
    /// - output: `[rows]`
    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        Self::cross_entropy_fwd(logits, targets).1
    }
}

/// Per-row cross-entropy of `logits` against `targets` through the backend's op (0 where the
/// target is outside `[0, vocab)`).
///
/// # Shapes
/// - logits: `[rows, vocab]`, targets: `[rows]`
/// - output: `[rows]`
pub fn cross_entropy<B: CrossEntropyBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    Tensor::from_primitive(TensorPrimitive::Float(B::cross_entropy(
        logits.into_primitive().tensor(),
        targets.into_primitive(),
    )))
}

/// The rows' target columns clamped into range, and 1 where the target is in range, 0 where
/// it is not.
fn in_range<B: Backend>(targets: IntTensor<B>, vocab: usize) -> (Tensor<B, 2, Int>, Tensor<B, 1>) {
    let t = Tensor::<B, 1, Int>::from_primitive(targets);
    let rows = t.dims()[0];
    let valid = t
        .clone()
        .greater_equal_elem(0)
        .bool_and(t.clone().lower_elem(vocab as i64));
    let weight = valid.clone().float();
    let column = t.mask_fill(valid.bool_not(), 0).reshape([rows, 1]);
    (column, weight)
}

/// Max-shifted logsumexp and `lse − logit[target]` with Burn's ops.
fn default_fwd<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let [rows, vocab] = x.dims();
    let (column, weight) = in_range::<B>(targets, vocab);
    let max = x.clone().max_dim(1);
    let lse = (x.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let picked = x.gather(1, column);
    let nll = (lse.clone() - picked).reshape([rows]) * weight;
    let lse = lse.reshape([rows]);
    (lse.into_primitive().tensor(), nll.into_primitive().tensor())
}

/// The softmax minus the one-hot target, scaled per row, with Burn's ops.
fn default_bwd<B: Backend>(
    logits: FloatTensor<B>,
    lse: FloatTensor<B>,
    targets: IntTensor<B>,
    dnll: FloatTensor<B>,
) -> FloatTensor<B> {
    let x = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let [rows, vocab] = x.dims();
    let lse = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(lse)).reshape([rows, 1]);
    let dnll = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(dnll));
    let (column, weight) = in_range::<B>(targets, vocab);
    let scale = (dnll * weight).reshape([rows, 1]);
    let probs = (x - lse).exp();
    let onehot = probs.zeros_like().scatter(
        1,
        column,
        Tensor::ones([rows, 1], &probs.device()),
        IndexingUpdateOp::Add,
    );
    ((probs - onehot) * scale).into_primitive().tensor()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values::assert_close;
    use burn::backend::Flex;

    /// The default bodies (what CubeCL backends run) agree with Flex's row kernels.
    #[test]
    fn default_bodies_agree_with_the_flex_kernels() {
        let (rows, vocab) = (5, 37);
        let x: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let targets = vec![3i64, -100, 36, 37, 0];
        let dnll = vec![1.0f32, 2.0, 0.5, 1.0, -1.5];
        let device = Default::default();
        let logits = || {
            Tensor::<Flex, 2>::from_data(TensorData::new(x.clone(), [rows, vocab]), &device)
                .into_primitive()
                .tensor()
        };
        let t = || {
            Tensor::<Flex, 1, Int>::from_data(TensorData::new(targets.clone(), [rows]), &device)
                .into_primitive()
        };
        let values = |p: FloatTensor<Flex>| {
            Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(p))
                .flatten::<1>(0, 0)
                .into_data()
                .into_vec::<f32>()
                .expect("f32 values")
        };
        let (lse_d, nll_d) = default_fwd::<Flex>(logits(), t());
        let (lse_f, nll_f) = <Flex as CrossEntropyBackend>::cross_entropy_fwd(logits(), t());
        let (lse_d, lse_f) = (values(lse_d), values(lse_f));
        assert_close(&lse_d, &lse_f, 1e-5, "lse");
        let (nll_d, nll_f) = (values(nll_d), values(nll_f));
        assert_close(&nll_d, &nll_f, 1e-5, "nll");
        assert_eq!((nll_d[1], nll_d[3]), (0.0, 0.0));
        let lse = || {
            Tensor::<Flex, 1>::from_data(TensorData::new(lse_f.clone(), [rows]), &device)
                .into_primitive()
                .tensor()
        };
        let g = || {
            Tensor::<Flex, 1>::from_data(TensorData::new(dnll.clone(), [rows]), &device)
                .into_primitive()
                .tensor()
        };
        let flat = |p: FloatTensor<Flex>| {
            Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(p))
                .into_data()
                .into_vec::<f32>()
                .expect("f32 values")
        };
        let d_default = flat(default_bwd::<Flex>(logits(), lse(), t(), g()));
        let d_flex = flat(<Flex as CrossEntropyBackend>::cross_entropy_bwd(
            logits(),
            lse(),
            t(),
            g(),
        ));
        assert_close(&d_default, &d_flex, 1e-5, "dlogits");
        // Logits someone else still holds are left as they were (the gradient gets its own
        // buffer); logits nobody else holds become the gradient in place: the same values.
        let held = logits();
        let d_shared = flat(<Flex as CrossEntropyBackend>::cross_entropy_bwd(
            held.clone(),
            lse(),
            t(),
            g(),
        ));
        assert_eq!(d_shared, d_flex);
        assert_eq!(flat(held), x);
        let row_sum: f32 = d_flex[..vocab].iter().sum();
        assert!(
            row_sum.abs() < 1e-5,
            "softmax − onehot sums to 0 per row: {row_sum}"
        );
        assert!(d_flex[vocab..2 * vocab].iter().all(|&v| v == 0.0));
    }
}
