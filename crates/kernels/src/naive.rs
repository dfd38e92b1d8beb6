//! The triple-loop reference: what every blocked path is tested against.

use crate::mat::{Element, MatMut, MatRef};
use crate::{check_shapes, Result};

/// `C = alpha·A·B (+ C if accumulate)` by the textbook triple loop, summing each dot product in
/// f64 and rounding once (a reference more accurate than any f32 path, so the tests measure
/// the blocked paths' own error). Same shape checks as [`crate::gemm`]. Slow: tests only.
pub fn gemm_naive<T: Element>(
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    c: MatMut<'_>,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    check_shapes(&a, b.rows(), b.cols(), &c)?;
    let k = a.cols();
    for (i, row) in c.into_rows().into_iter().enumerate() {
        for (j, out) in row.iter_mut().enumerate() {
            let mut sum = 0.0f64;
            for p in 0..k {
                sum += f64::from(a.at(i, p)) * f64::from(b.at(p, j).to_f32());
            }
            let prod = f64::from(alpha) * sum;
            *out = if accumulate {
                (f64::from(*out) + prod) as f32
            } else {
                prod as f32
            };
        }
    }
    Ok(())
}
