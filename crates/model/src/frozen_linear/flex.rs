//! [`FrozenLinearBackend`] for Flex: tb-kernels' GEMM on the tensors' storage. The weight is
//! read in place (any non-negative strides, f32 or bf16); the activations are f32.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{DType, TensorData, TensorMetadata};
use half::bf16;
use tb_kernels::vector::zeros;
use tb_kernels::{MatMut, MatRef, Precision};

use super::{default_bwd, default_bwd_add, default_fwd, default_fwd_add, FrozenLinearBackend};
use crate::flex_f32::{contiguous_f32, into_dtype};

impl FrozenLinearBackend for Flex {
    fn frozen_linear_fwd(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        match WeightView::of(&w) {
            Some(view) => multiply(x, view, None),
            None => default_fwd::<Self>(x, w),
        }
    }

    fn frozen_linear_bwd(dy: FlexTensor, w: FlexTensor) -> FlexTensor {
        match WeightView::of(&w) {
            Some(view) => multiply(dy, view.t(), None),
            None => default_bwd::<Self>(dy, w),
        }
    }

    fn frozen_linear_fwd_add(x: FlexTensor, w: FlexTensor, c: FlexTensor) -> FlexTensor {
        match WeightView::of(&w) {
            Some(view) => multiply(x, view, Some(c)),
            None => default_fwd_add::<Self>(x, w, c),
        }
    }

    fn frozen_linear_bwd_add(dy: FlexTensor, w: FlexTensor, c: FlexTensor) -> FlexTensor {
        match WeightView::of(&w) {
            Some(view) => multiply(dy, view.t(), Some(c)),
            None => default_bwd_add::<Self>(dy, w, c),
        }
    }
}

/// Where a 2-D weight's elements lie in its storage: `(i, j)` at
/// `offset + i·row_stride + j·col_stride`, read as f32 or bf16.
#[derive(Clone, Copy)]
struct WeightView<'a> {
    data: Storage<'a>,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A weight's storage from its view's first element on.
#[derive(Clone, Copy)]
enum Storage<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl<'a> WeightView<'a> {
    /// The view of an f32 or bf16 matrix with non-negative strides; `None` for anything else
    /// (those go through Burn's matmul).
    fn of(w: &'a FlexTensor) -> Option<Self> {
        let layout = w.layout();
        let (rows, cols, rs, cs) = layout.as_2d_strides()?;
        let (row_stride, col_stride) = (usize::try_from(rs).ok()?, usize::try_from(cs).ok()?);
        let offset = layout.start_offset();
        let data = match w.dtype() {
            DType::F32 => Storage::F32(w.storage::<f32>().get(offset..)?),
            DType::BF16 => Storage::Bf16(w.storage::<bf16>().get(offset..)?),
            _ => return None,
        };
        Some(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// The transpose (same storage).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `lhs·W` with lhs `[rows, W.rows]`, returned in lhs's dtype; with `acc`, `acc + lhs·W`
/// accumulated into acc's buffer (in place when nothing else holds it) and returned in acc's
/// dtype.
///
/// An f32 weight multiplies in f32. A bf16 weight multiplies with [`Precision::for_bf16_model`]'s
/// arithmetic: bf16 products (`vdpbf16ps`, activations rounded to bf16 as PyTorch's bf16
/// autocast does) where tb-kernels chose its AVX512_BF16 kernel for this CPU, else f32 products
/// of the exactly widened weight.
fn multiply(lhs: FlexTensor, w: WeightView<'_>, acc: Option<FlexTensor>) -> FlexTensor {
    let dtype = acc.as_ref().map_or(lhs.dtype(), FlexTensor::dtype);
    let lhs = contiguous_f32(lhs);
    let [rows, inner] = lhs.shape().dims::<2>();
    assert_eq!(
        inner, w.rows,
        "invariant: frozen_linear input width {inner} matches the weight's {}",
        w.rows
    );
    let a_values = lhs
        .as_slice::<f32>()
        .expect("invariant: a contiguous f32 tensor");
    let accumulate = acc.is_some();
    let mut out = match acc {
        Some(c) => {
            assert_eq!(
                c.shape().dims::<2>(),
                [rows, w.cols],
                "invariant: the accumulator has the product's shape"
            );
            contiguous_f32(c)
        }
        None => FlexTensor::from_data(TensorData::new(zeros(rows * w.cols), [rows, w.cols])),
    };
    let a = MatRef::row_major(a_values, rows, inner);
    let c = MatMut::row_major(out.storage_mut::<f32>(), rows, w.cols);
    let done = a.and_then(|a| {
        let c = c?;
        match w.data {
            Storage::F32(data) => {
                let b = MatRef::new(data, w.rows, w.cols, w.row_stride, w.col_stride)?;
                tb_kernels::gemm(a, b, c, 1.0, accumulate, Precision::F32)
            }
            Storage::Bf16(data) => {
                let b = MatRef::new(data, w.rows, w.cols, w.row_stride, w.col_stride)?;
                tb_kernels::gemm(a, b, c, 1.0, accumulate, Precision::for_bf16_model())
            }
        }
    });
    if let Err(e) = done {
        panic!("frozen_linear on Flex: {e}");
    }
    into_dtype(out, dtype)
}
