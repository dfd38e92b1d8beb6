//! The smoothed training-loss line: an exponential moving average with the start-up bias
//! removed (as TensorBoard's smoothing and Adam's moments do), so the first points are not
//! pulled towards zero.

/// The EMA span for a curve of `points` logged steps: about a sixth of the curve, at least 2
/// and at most 50 (α = 2 / (span + 1)).
pub fn ema_span(points: usize) -> usize {
    (points as f64 / 6.0).round().clamp(2.0, 50.0) as usize
}

/// Bias-corrected EMA of `values` with span `span`: `m_t = β·m_{t-1} + (1-β)·x_t`, `m_0 = 0`,
/// output `m_t / (1 - β^t)`, `β = 1 - 2/(span+1)`. Non-finite values are skipped (their output
/// repeats the previous smoothed value, or is NaN before the first finite one).
pub fn ema(values: &[f64], span: usize) -> Vec<f64> {
    let alpha = 2.0 / (span.max(1) as f64 + 1.0);
    let beta = 1.0 - alpha;
    let mut m = 0.0;
    let mut weight = 0.0;
    values
        .iter()
        .map(|&x| {
            if x.is_finite() {
                m = beta * m + alpha * x;
                weight = beta * weight + alpha;
            }
            if weight > 0.0 {
                m / weight
            } else {
                f64::NAN
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_is_unbiased_at_the_start_and_follows_a_step() {
        let s = ema(&[3.0, 3.0, 3.0], 5);
        assert!(s.iter().all(|v| (v - 3.0).abs() < 1e-12), "{s:?}");
        let s = ema(&[1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0], 3);
        assert_eq!(s[1], 1.0);
        assert!(s[2] > 1.0 && s[2] < 5.0);
        assert!(s.windows(2).skip(1).all(|w| w[1] >= w[0]));
        assert!((s[7] - 5.0).abs() < 0.05, "{s:?}");
    }

    #[test]
    fn ema_skips_non_finite_values_and_span_is_clamped() {
        let s = ema(&[f64::NAN, 2.0, f64::INFINITY, 4.0], 1);
        assert!(s[0].is_nan());
        assert_eq!(&s[1..], &[2.0, 2.0, 4.0]);
        assert_eq!(ema_span(4), 2);
        assert_eq!(ema_span(24), 4);
        assert_eq!(ema_span(60), 10);
        assert_eq!(ema_span(100_000), 50);
        assert!(ema(&[], 3).is_empty());
    }
}
