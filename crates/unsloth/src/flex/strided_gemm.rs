//! A strided f32 matrix view and the single-threaded GEMM over such views (the `gemm` crate
//! behind a bounds-checked wrapper), for the Flex kernel that multiplies small blocks: the
//! per-example attention (head-sized products).

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
/// row-major `[lhs.rows, rhs.cols]` buffer.
pub(crate) fn gemm(
    dst: &mut [f32],
    accumulate: bool,
    lhs: Strided<'_>,
    rhs: Strided<'_>,
    alpha: f32,
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
    let isz = |x: usize| isize::try_from(x).expect("invariant: strides fit in isize");
    // SAFETY: `Strided::new` checked that every element of lhs and rhs is inside its slice;
    // dst is an exclusively borrowed [m, n] row-major buffer (checked above); the three do not
    // alias because dst is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            isz(n),
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            isz(lhs.cs),
            isz(lhs.rs),
            rhs.data.as_ptr().add(rhs.offset),
            isz(rhs.cs),
            isz(rhs.rs),
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_gemm_matches_a_plain_triple_loop() {
        let a: Vec<f32> = (0..24).map(|x| x as f32 * 0.25 - 2.0).collect();
        let b: Vec<f32> = (0..30).map(|x| (x as f32 * 0.7).sin()).collect();
        // lhs: rows 1, 3, 5 of a 6×4 row-major matrix, columns 0..3 → [3, 3] with rs 8
        let lhs = Strided::new(&a, 4, [3, 3], [8, 1]);
        // rhs: the transpose of a 5×6 row-major block → [3, 5] read column-wise
        let rhs = Strided::new(&b, 0, [5, 3], [6, 1]).t();
        let mut dst = vec![1.0f32; 15];
        gemm(&mut dst, true, lhs, rhs, 0.5);
        for i in 0..3 {
            for j in 0..5 {
                let mut want = 1.0f32;
                for t in 0..3 {
                    want += 0.5 * a[4 + i * 8 + t] * b[j * 6 + t];
                }
                assert!((dst[i * 5 + j] - want).abs() < 1e-5, "({i},{j})");
            }
        }
    }
}
