//! [`SoftmaxBackend`] for CubeCL backends (wgpu, CUDA): the trait's default bodies, Burn's
//! tensor ops on the device.

use burn_cubecl::cubecl::server::ComputeServer;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::SoftmaxBackend;

impl<R, F, I, BT> SoftmaxBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    R::Server: ComputeServer,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
}
