//! Helpers the op tests in this crate share: a tensor's values as f32 and an element-wise
//! closeness assertion that names the first element off.

use burn::prelude::*;

/// The tensor's values as f32, row-major.
pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 values")
}

/// Every `got[i]` within `tol·max(|want[i]|, 1)` of `want[i]`.
pub(crate) fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}
