//! [`FrozenLinearBackend`] for CubeCL backends (wgpu, CUDA): Burn's matmul in the input's dtype
//! (the trait's default bodies), which is the backend's tuned GEMM.

use burn_cubecl::cubecl::server::ComputeServer;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::FrozenLinearBackend;

impl<R, F, I, BT> FrozenLinearBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    R::Server: ComputeServer,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
}
