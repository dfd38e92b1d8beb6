//! ggml block codecs: quantize f32 rows into ggml blocks and dequantize them back.
//!
//! Every quantizer is a port of llama.cpp's `quantize_row_*_ref` (ggml `src/ggml-quants.c`),
//! the functions `llama-quantize` uses when no importance matrix is given; every dequantizer is
//! a port of `dequantize_row_*`. Arithmetic is done in the same order with the same f32
//! roundings (Rust never contracts `a*b+c` into an FMA, and the C reference in the prebuilt
//! `libggml-base.so` is compiled without FMA), so output is byte-identical; the conformance tests
//! in `tests/conformance.rs` check this against the real library.
//!
//! Layout: one module per codec family. [`BlockCodec`] is the per-format trait with a scalar
//! reference (`quantize_block`/`dequantize_block`); [`quantize`]/[`dequantize`] dispatch on a
//! runtime [`GgmlType`] and run the reference over all blocks, [`quantize_par`]/
//! [`dequantize_par`] split the same work across rayon threads (blocks are independent, so the
//! bytes are the same).

pub mod float;
pub mod fp;
pub mod k_quants;
pub mod q4_0;
pub mod q4_1;
pub mod q5_0;
pub mod q5_1;
pub mod q8_0;

use bytemuck::Pod;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::types::GgmlType;

pub use float::{BlockBF16, BlockF16, BlockF32};
pub use k_quants::{q4_k::BlockQ4K, q5_k::BlockQ5K, q6_k::BlockQ6K};
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q8_0::BlockQ8_0;

/// One ggml block format. Blocks are `#[repr(C)]`, alignment 1 and exactly
/// [`GgmlType::type_size`] bytes, so a tensor's bytes can be cast to `&[Self]`.
pub trait BlockCodec: Pod + Send + Sync {
    /// The ggml type this block encodes.
    const TYPE: GgmlType;
    /// Elements per block.
    const BLOCK_SIZE: usize;

    /// Quantizes exactly `BLOCK_SIZE` values (the scalar reference, as `quantize_row_*_ref`).
    fn quantize_block(x: &[f32]) -> Self;

    /// Dequantizes into exactly `BLOCK_SIZE` values (as `dequantize_row_*`).
    fn dequantize_block(&self, y: &mut [f32]);
}

fn check_lengths(ty: GgmlType, n_values: usize, n_bytes: usize) -> Result<()> {
    let bs = ty.block_size();
    if !n_values.is_multiple_of(bs) {
        return Err(Error::InvalidArgument(format!(
            "{n_values} values is not a multiple of the {ty} block size {bs}"
        )));
    }
    let expected = n_values / bs * ty.type_size();
    if n_bytes != expected {
        return Err(Error::InvalidArgument(format!(
            "{n_values} {ty} values need {expected} bytes, buffer has {n_bytes}"
        )));
    }
    Ok(())
}

fn blocks_mut<B: BlockCodec>(dst: &mut [u8]) -> &mut [B] {
    // alignment 1 and size checked by the caller, so this cannot fail
    bytemuck::cast_slice_mut(dst)
}

fn blocks<B: BlockCodec>(src: &[u8]) -> &[B] {
    bytemuck::cast_slice(src)
}

/// Reference quantizer for one format: block after block, single-threaded.
pub fn quantize_ref<B: BlockCodec>(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_lengths(B::TYPE, src.len(), dst.len())?;
    for (x, b) in src
        .chunks_exact(B::BLOCK_SIZE)
        .zip(blocks_mut::<B>(dst).iter_mut())
    {
        *b = B::quantize_block(x);
    }
    Ok(())
}

/// Reference dequantizer for one format.
pub fn dequantize_ref<B: BlockCodec>(src: &[u8], dst: &mut [f32]) -> Result<()> {
    check_lengths(B::TYPE, dst.len(), src.len())?;
    for (b, y) in blocks::<B>(src)
        .iter()
        .zip(dst.chunks_exact_mut(B::BLOCK_SIZE))
    {
        b.dequantize_block(y);
    }
    Ok(())
}

/// Blocks handed to one rayon task: big enough to amortise scheduling.
const PAR_BLOCKS: usize = 64;

fn quantize_par_typed<B: BlockCodec>(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_lengths(B::TYPE, src.len(), dst.len())?;
    let per_task = PAR_BLOCKS * B::BLOCK_SIZE;
    blocks_mut::<B>(dst)
        .par_chunks_mut(PAR_BLOCKS)
        .zip(src.par_chunks(per_task))
        .for_each(|(bs, xs)| {
            for (b, x) in bs.iter_mut().zip(xs.chunks_exact(B::BLOCK_SIZE)) {
                *b = B::quantize_block(x);
            }
        });
    Ok(())
}

fn dequantize_par_typed<B: BlockCodec>(src: &[u8], dst: &mut [f32]) -> Result<()> {
    check_lengths(B::TYPE, dst.len(), src.len())?;
    let per_task = PAR_BLOCKS * B::BLOCK_SIZE;
    blocks::<B>(src)
        .par_chunks(PAR_BLOCKS)
        .zip(dst.par_chunks_mut(per_task))
        .for_each(|(bs, ys)| {
            for (b, y) in bs.iter().zip(ys.chunks_exact_mut(B::BLOCK_SIZE)) {
                b.dequantize_block(y);
            }
        });
    Ok(())
}

macro_rules! dispatch {
    ($ty:expr, $op:literal, $f:ident, $($arg:expr),*) => {
        match $ty {
            GgmlType::F32 => $f::<BlockF32>($($arg),*),
            GgmlType::F16 => $f::<BlockF16>($($arg),*),
            GgmlType::BF16 => $f::<BlockBF16>($($arg),*),
            GgmlType::Q4_0 => $f::<BlockQ4_0>($($arg),*),
            GgmlType::Q4_1 => $f::<BlockQ4_1>($($arg),*),
            GgmlType::Q5_0 => $f::<BlockQ5_0>($($arg),*),
            GgmlType::Q5_1 => $f::<BlockQ5_1>($($arg),*),
            GgmlType::Q8_0 => $f::<BlockQ8_0>($($arg),*),
            GgmlType::Q4_K => $f::<BlockQ4K>($($arg),*),
            GgmlType::Q5_K => $f::<BlockQ5K>($($arg),*),
            GgmlType::Q6_K => $f::<BlockQ6K>($($arg),*),
            other => Err(Error::UnsupportedType { op: $op, ty: other }),
        }
    };
}

/// Quantizes `src` into `dst` as type `ty` with the scalar reference (single thread).
/// `src.len()` must be a multiple of the block size and `dst` exactly the encoded size.
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    dispatch!(ty, "quantize", quantize_ref, src, dst)
}

/// Dequantizes `src` (type `ty`) into `dst` with the scalar reference (single thread).
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    dispatch!(ty, "dequantize", dequantize_ref, src, dst)
}

/// Same bytes as [`quantize`], computed on the rayon thread pool.
pub fn quantize_par(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    dispatch!(ty, "quantize", quantize_par_typed, src, dst)
}

/// Same values as [`dequantize`], computed on the rayon thread pool.
pub fn dequantize_par(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<()> {
    dispatch!(ty, "dequantize", dequantize_par_typed, src, dst)
}

/// Quantizes into a new buffer (parallel).
pub fn quantize_to_vec(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    let bs = ty.block_size();
    let n = src.len() / bs.max(1) * ty.type_size();
    let mut out = vec![0u8; n];
    quantize_par(ty, src, &mut out)?;
    Ok(out)
}

/// Dequantizes into a new buffer (parallel). `src.len()` must be a whole number of blocks.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8]) -> Result<Vec<f32>> {
    let ts = ty.type_size();
    if !src.len().is_multiple_of(ts) {
        return Err(Error::InvalidArgument(format!(
            "{} bytes is not a whole number of {ty} blocks ({ts} bytes each)",
            src.len()
        )));
    }
    let mut out = vec![0f32; src.len() / ts * ty.block_size()];
    dequantize_par(ty, src, &mut out)?;
    Ok(out)
}

/// Checks encoded data the way llama.cpp's `ggml_validate_row_data` does: no NaN/Inf in plain
/// floats or in block scales. Returns a description of the first problem.
pub fn validate(ty: GgmlType, data: &[u8]) -> std::result::Result<(), String> {
    let ts = ty.type_size();
    if !data.len().is_multiple_of(ts) {
        return Err(format!("size {} is not a multiple of {ts}", data.len()));
    }
    let bad_f16 = |h: u16| (h & 0x7c00) == 0x7c00;
    let check = |what: &str, n_bad: usize| {
        if n_bad > 0 {
            Err(format!("found {n_bad} NaN/Inf {what}"))
        } else {
            Ok(())
        }
    };
    match ty {
        GgmlType::F32 => check(
            "values",
            data.chunks_exact(4)
                .filter(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
                .count(),
        ),
        GgmlType::F16 => check(
            "values",
            data.chunks_exact(2)
                .filter(|c| bad_f16(u16::from_le_bytes([c[0], c[1]])))
                .count(),
        ),
        GgmlType::BF16 => check(
            "values",
            data.chunks_exact(2)
                .filter(|c| (u16::from_le_bytes([c[0], c[1]]) & 0x7f80) == 0x7f80)
                .count(),
        ),
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => check(
            "block scales",
            data.chunks_exact(ts)
                .filter(|b| bad_f16(u16::from_le_bytes([b[0], b[1]])))
                .count(),
        ),
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => check(
            "block scales",
            data.chunks_exact(ts)
                .filter(|b| {
                    bad_f16(u16::from_le_bytes([b[0], b[1]]))
                        || bad_f16(u16::from_le_bytes([b[2], b[3]]))
                })
                .count(),
        ),
        GgmlType::Q6_K => check(
            "block scales",
            data.chunks_exact(ts)
                .filter(|b| bad_f16(u16::from_le_bytes([b[208], b[209]])))
                .count(),
        ),
        _ => Ok(()),
    }
}
