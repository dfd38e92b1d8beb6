//! A strided f32 matrix view and the single-threaded GEMM over such views (tb-kernels'
//! caller-thread product), for the Flex kernel that multiplies small blocks: the per-example
//! attention (head-sized products), whose tasks already run in parallel.

use tb_kernels::{MatMut, MatRef, Precision};

/// A strided f32 matrix inside a slice: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Strided<'a> {
    /// Checks that every element lies inside `data` (the GEMM reads through raw pointers).
    pub(crate) fn new(
        data: &'a [f32],
        offset: usize,
        [rows, cols]: [usize; 2],
        [rs, cs]: [usize; 2],
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = offset + (rows - 1) * rs + (cols - 1) * cs;
            assert!(
                last < data.len(),
                "invariant: strided view ends at {last}, past {}",
                data.len()
            );
        }
        Self {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Rows `rows` (a range inside the view) as a view of the same data.
    pub(crate) fn rows(self, rows: std::ops::Range<usize>) -> Self {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "invariant: row range inside the view"
        );
        Self {
            offset: self.offset + rows.start * self.rs,
            rows: rows.len(),
            ..self
        }
    }

    /// The same non-empty view as tb-kernels' matrix reference.
    fn mat(self) -> MatRef<'a, f32> {
        MatRef::new(
            &self.data[self.offset..],
            self.rows,
            self.cols,
            self.rs,
            self.cs,
        )
        .expect("invariant: Strided::new checked the view")
    }

    /// The transpose (a view of the same data).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst = alpha·lhs·rhs` (`accumulate == false`) or `dst += alpha·lhs·rhs`, with `dst` a
/// row-major `[lhs.rows, rhs.cols]` buffer, on the calling thread, in `precision`'s arithmetic
/// (f32 sums either way).
pub(crate) fn gemm(
    dst: &mut [f32],
    accumulate: bool,
    lhs: Strided<'_>,
    rhs: Strided<'_>,
    alpha: f32,
    precision: Precision,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "invariant: inner dimensions agree");
    assert_eq!(dst.len(), m * n, "invariant: destination is [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let c = MatMut::row_major(dst, m, n).expect("invariant: destination is [m, n]");
    if let Err(e) = tb_kernels::gemm_serial(lhs.mat(), rhs.mat(), c, alpha, accumulate, precision) {
        panic!("attention product on Flex: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lhs·rhs` of a strided view pair by a plain triple loop, each operand through `round`.
    fn triple_loop(a: &[f32], b: &[f32], round: fn(f32) -> f32) -> Vec<f32> {
        let mut want = vec![0.0f32; 15];
        for i in 0..3 {
            for j in 0..5 {
                let mut acc = 1.0f32;
                for t in 0..3 {
                    acc += 0.5 * round(a[4 + i * 8 + t]) * round(b[j * 6 + t]);
                }
                want[i * 5 + j] = acc;
            }
        }
        want
    }

    #[test]
    fn strided_gemm_matches_a_plain_triple_loop_in_both_precisions() {
        let a: Vec<f32> = (0..24).map(|x| x as f32 * 0.2371 - 2.0).collect();
        let b: Vec<f32> = (0..30).map(|x| (x as f32 * 0.7).sin()).collect();
        for (precision, round) in [
            (Precision::F32, (|x| x) as fn(f32) -> f32),
            (Precision::Bf16, tb_kernels::round_bf16 as fn(f32) -> f32),
        ] {
            // lhs: rows 1, 3, 5 of a 6×4 row-major matrix, columns 0..3 → [3, 3] with rs 8
            let lhs = Strided::new(&a, 4, [3, 3], [8, 1]);
            // rhs: the transpose of a 5×6 row-major block → [3, 5] read column-wise
            let rhs = Strided::new(&b, 0, [5, 3], [6, 1]).t();
            let mut dst = vec![1.0f32; 15];
            gemm(&mut dst, true, lhs, rhs, 0.5, precision);
            let want = triple_loop(&a, &b, round);
            for (n, (got, want)) in dst.iter().zip(&want).enumerate() {
                assert!(
                    (got - want).abs() < 1e-5,
                    "{precision:?} ({n}): {got} vs {want}"
                );
            }
        }
        // The bf16 arithmetic really rounds the operands (0.2371 steps are not bf16 values).
        let f32_want = triple_loop(&a, &b, |x| x);
        let bf16_want = triple_loop(&a, &b, tb_kernels::round_bf16);
        assert!(f32_want
            .iter()
            .zip(&bf16_want)
            .any(|(x, y)| (x - y).abs() > 1e-4));
    }
}
