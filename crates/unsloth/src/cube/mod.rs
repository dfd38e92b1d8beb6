//! [`FusedBackend`] for CubeCL backends (`CubeBackend<R, ..>`: CUDA with feature `cuda`, wgpu
//! with feature `wgpu`): the leaf kernels run as the CubeCL kernels of [`kernels`]; the
//! composite ops (LoRA projections, chunked linear + cross-entropy) keep their default bodies,
//! which call these leaf kernels and the backend's own matmul.
//!
//! Like the Flex kernels they compute in f32: other float dtypes are cast on the way in and the
//! outputs cast back to the dtype of the op's main input. Integer inputs (targets, segment ids)
//! are cast to i32.

mod kernels;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{calculate_cube_count_elemwise, server::ComputeServer};
use burn_cubecl::kernel::{cast, into_contiguous};
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::backend::{AttentionSaved, FusedBackend, Precision};
use crate::ops::IGNORE_INDEX;

/// Units per cube of the row kernels (a power of two: the reductions halve it).
const BLOCK: usize = 256;
/// Units per cube of the elementwise and attention kernels.
const UNITS: u32 = 128;
/// Largest cube count per dimension that every runtime accepts (Vulkan's minimum limit).
const MAX_CUBES: usize = 65_535;

/// A contiguous f32 version of `t`.
fn f32_input<R: CubeRuntime>(t: CubeTensor<R>) -> CubeTensor<R> {
    let t = if t.dtype == DType::F32 {
        t
    } else {
        cast(t, DType::F32)
    };
    into_contiguous(t)
}

/// A contiguous i32 version of the integer tensor `t`.
fn i32_input<R: CubeRuntime>(t: CubeTensor<R>) -> CubeTensor<R> {
    let t = if t.dtype == DType::I32 {
        t
    } else {
        cast(t, DType::I32)
    };
    into_contiguous(t)
}

/// A new contiguous f32 tensor on the device of `like`.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: impl Into<Shape>) -> CubeTensor<R> {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        DType::F32,
    )
}

/// Casts a kernel's f32 output back to `dtype`.
fn restore<R: CubeRuntime>(t: CubeTensor<R>, dtype: DType) -> CubeTensor<R> {
    if dtype == DType::F32 {
        t
    } else {
        cast(t, dtype)
    }
}

/// The tensor's buffer as a kernel array argument (the tensor must be contiguous).
fn arg<R: CubeRuntime>(t: &CubeTensor<R>) -> ArrayArg<R> {
    t.clone().into_array_arg()
}

/// One cube per row, spread over two dimensions past the per-dimension limit.
fn row_cubes(rows: usize) -> CubeCount {
    let x = rows.clamp(1, MAX_CUBES);
    CubeCount::Static(x as u32, rows.div_ceil(x).max(1) as u32, 1)
}

/// Enough cubes of [`UNITS`] units for `n` units of work.
fn unit_cubes<R: CubeRuntime>(client: &ComputeClient<R>, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(UNITS);
    (calculate_cube_count_elemwise(client, n.max(1), dim), dim)
}

/// `dims` of a tensor of rank `D`.
fn dims<R: CubeRuntime, const D: usize>(t: &CubeTensor<R>) -> [usize; D] {
    t.shape().dims()
}

impl<R, F, I, BT> FusedBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    R::Server: ComputeServer,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn rms_norm_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let dt = x.dtype;
        let (x, w) = (f32_input(x), f32_input(weight));
        let [rows, d] = dims(&x);
        let (y, inv) = (empty(&x, [rows, d]), empty(&x, [rows]));
        kernels::rms_norm_fwd_kernel::launch::<R>(
            &x.client,
            row_cubes(rows),
            CubeDim::new_1d(BLOCK as u32),
            arg(&x),
            arg(&w),
            arg(&y),
            arg(&inv),
            rows,
            d,
            eps,
            BLOCK,
        );
        (restore(y, dt), restore(inv, dt))
    }

    fn rms_norm_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dt, wdt) = (x.dtype, weight.dtype);
        let (dy, x, w, inv) = (
            f32_input(dy),
            f32_input(x),
            f32_input(weight),
            f32_input(inv_rms),
        );
        let [rows, d] = dims(&x);
        let (dx, dw) = (empty(&x, [rows, d]), empty(&x, [d]));
        kernels::rms_norm_bwd_dx_kernel::launch::<R>(
            &x.client,
            row_cubes(rows),
            CubeDim::new_1d(BLOCK as u32),
            arg(&dy),
            arg(&x),
            arg(&w),
            arg(&inv),
            arg(&dx),
            rows,
            d,
            BLOCK,
        );
        let (count, dim) = unit_cubes(&x.client, d);
        kernels::rms_norm_bwd_dw_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            arg(&dy),
            arg(&x),
            arg(&inv),
            arg(&dw),
            rows,
            d,
        );
        (restore(dx, dt), restore(dw, wdt))
    }

    fn rope_fwd(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> FloatTensor<Self> {
        let dt = x.dtype;
        let (x, cos, sin) = (f32_input(x), f32_input(cos), f32_input(sin));
        let [b, s, h, d] = dims(&x);
        let out = empty(&x, [b, s, h, d]);
        let pairs = b * s * h * (d / 2);
        let (count, dim) = unit_cubes(&x.client, pairs);
        kernels::rope_kernel::launch::<R>(
            &x.client,
            count,
            dim,
            arg(&x),
            arg(&cos),
            arg(&sin),
            arg(&out),
            pairs,
            h,
            d / 2,
            if inverse { -1.0 } else { 1.0 },
        );
        restore(out, dt)
    }

    fn swiglu_fwd(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (dt, shape) = (gate.dtype, gate.shape());
        let (gate, up) = (f32_input(gate), f32_input(up));
        let n = shape.num_elements();
        let h = empty(&gate, shape.clone());
        let (count, dim) = unit_cubes(&gate.client, n);
        kernels::swiglu_fwd_kernel::launch::<R>(
            &gate.client,
            count,
            dim,
            arg(&gate),
            arg(&up),
            arg(&h),
            n,
        );
        restore(h, dt)
    }

    fn swiglu_bwd(
        dh: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dt, shape) = (gate.dtype, gate.shape());
        let (dh, gate, up) = (f32_input(dh), f32_input(gate), f32_input(up));
        let n = shape.num_elements();
        let (dg, du) = (empty(&gate, shape.clone()), empty(&gate, shape));
        let (count, dim) = unit_cubes(&gate.client, n);
        kernels::swiglu_bwd_kernel::launch::<R>(
            &gate.client,
            count,
            dim,
            arg(&dh),
            arg(&gate),
            arg(&up),
            arg(&dg),
            arg(&du),
            n,
        );
        (restore(dg, dt), restore(du, dt))
    }

    fn chunk_cross_entropy_fwd(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let dt = logits.dtype;
        let (logits, targets) = (f32_input(logits), i32_input(targets));
        let [rows, vocab] = dims(&logits);
        let (lse, nll) = (empty(&logits, [rows]), empty(&logits, [rows]));
        kernels::cross_entropy_fwd_kernel::launch::<R>(
            &logits.client,
            row_cubes(rows),
            CubeDim::new_1d(BLOCK as u32),
            arg(&logits),
            arg(&targets),
            arg(&lse),
            arg(&nll),
            rows,
            vocab,
            IGNORE_INDEX as i32,
            BLOCK,
        );
        (restore(lse, dt), restore(nll, dt))
    }

    fn chunk_cross_entropy_bwd(
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        targets: IntTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let dt = logits.dtype;
        let (logits, lse, scale) = (f32_input(logits), f32_input(lse), f32_input(scale));
        let targets = i32_input(targets);
        let [rows, vocab] = dims(&logits);
        let grad = empty(&logits, [rows, vocab]);
        let (count, dim) = unit_cubes(&logits.client, rows * vocab);
        kernels::cross_entropy_bwd_kernel::launch::<R>(
            &logits.client,
            count,
            dim,
            arg(&logits),
            arg(&lse),
            arg(&targets),
            arg(&scale),
            arg(&grad),
            rows,
            vocab,
            IGNORE_INDEX as i32,
        );
        restore(grad, dt)
    }

    fn attention_fwd(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        segments: IntTensor<Self>,
        scale: f32,
        _precision: Precision,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let dt = q.dtype;
        let (q, k, v) = (f32_input(q), f32_input(k), f32_input(v));
        let seg = i32_input(segments);
        let [b, s, h, d] = dims(&q);
        let kvh = dims::<R, 4>(&k)[2];
        let (out, lse) = (empty(&q, [b, s, h, d]), empty(&q, [b, s, h]));
        let units = b * s * h;
        let (count, dim) = unit_cubes(&q.client, units);
        kernels::attention_fwd_kernel::launch::<R>(
            &q.client,
            count,
            dim,
            arg(&q),
            arg(&k),
            arg(&v),
            arg(&seg),
            arg(&out),
            arg(&lse),
            units,
            s,
            h,
            kvh,
            scale,
            d,
        );
        (restore(out, dt), restore(lse, dt))
    }

    fn attention_bwd(
        dout: FloatTensor<Self>,
        saved: AttentionSaved<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let dt = saved.q.dtype;
        let (q, k, v) = (f32_input(saved.q), f32_input(saved.k), f32_input(saved.v));
        let (out, lse, dout) = (f32_input(saved.out), f32_input(saved.lse), f32_input(dout));
        let seg = i32_input(saved.segments);
        let [b, s, h, d] = dims(&q);
        let kvh = dims::<R, 4>(&k)[2];
        let client = q.client.clone();
        let units = b * s * h;
        let delta = empty(&q, [b, s, h]);
        let (count, dim) = unit_cubes(&client, units);
        kernels::attention_delta_kernel::launch::<R>(
            &client,
            count,
            dim,
            arg(&dout),
            arg(&out),
            arg(&delta),
            units,
            d,
        );
        let dq = empty(&q, [b, s, h, d]);
        let (count, dim) = unit_cubes(&client, units);
        kernels::attention_dq_kernel::launch::<R>(
            &client,
            count,
            dim,
            arg(&q),
            arg(&k),
            arg(&v),
            arg(&seg),
            arg(&dout),
            arg(&lse),
            arg(&delta),
            arg(&dq),
            units,
            s,
            h,
            kvh,
            saved.scale,
            d,
        );
        let (dk, dv) = (empty(&q, [b, s, kvh, d]), empty(&q, [b, s, kvh, d]));
        let kv_units = b * s * kvh;
        let (count, dim) = unit_cubes(&client, kv_units);
        kernels::attention_dkdv_kernel::launch::<R>(
            &client,
            count,
            dim,
            arg(&q),
            arg(&k),
            arg(&v),
            arg(&seg),
            arg(&dout),
            arg(&lse),
            arg(&delta),
            arg(&dk),
            arg(&dv),
            kv_units,
            s,
            h,
            kvh,
            saved.scale,
            d,
        );
        (restore(dq, dt), restore(dk, dt), restore(dv, dt))
    }
}
