//! A [`PackedWeight`] kept on the device of a backend without its own tiled 4-bit kernel (the
//! CubeCL backends on CUDA and wgpu): the codes, eight 4-bit codes per 32-bit word, a 16-entry
//! lookup table and one scale and offset per group are uploaded **once** and cached in the
//! weight ([`PackedWeight::device_copy`]). Each matmul then dequantises the weight on the device
//! with tensor ops, `lut[q] · scale − offset`, into a transient dense copy dropped when the op
//! returns. That is what bitsandbytes' and Unsloth's 4-bit matmuls do on a GPU (dequantise the
//! one weight, then a dense GEMM); what never happens is a host → device copy per call or a
//! dense copy of the base kept between calls.
//!
//! The two formats map onto one layout:
//! - **NF4**: group = one 64-value block, `lut` = the NF4 codebook, `scale` = the block's
//!   `absmax`, no offset (`codebook[q] · absmax`, as [`super::BlockNf4::dequantize`]).
//! - **Q4_K**: group = one 32-value sub-block, `lut` = `0..16`, `scale = d·sc_j`,
//!   `offset = dmin·m_j` (as `dequantize_row_q4_K`).
//!
//! Rows keep their padding (whole blocks) on the device and are cut to `d_in` after the
//! dequantisation.

use burn::prelude::*;
use burn::tensor::{ElementConversion, Int, TensorData};

use super::nf4::{NF4_BLOCK, NF4_CODEBOOK};
use super::{Blocks, PackedWeight};

/// Codes per 32-bit word.
const CODES_PER_WORD: usize = 8;

/// The device layout built on the host: see the module docs.
pub(crate) struct HostLayout {
    /// Codes in natural order (row after row, padded rows), eight per word, code `i` of a
    /// word in bits `4i..4i+4`.
    words: Vec<i32>,
    /// Value of each code before scaling.
    lut: [f32; 16],
    /// Values per group.
    group: usize,
    /// One scale per group.
    scale: Vec<f32>,
    /// One offset per group (subtracted), when the format has one.
    offset: Option<Vec<f32>>,
}

impl HostLayout {
    /// Lays `w` out for the device.
    pub(crate) fn of(w: &PackedWeight) -> Self {
        let padded = w.blocks_per_row * w.format().block_size();
        let mut codes = Vec::with_capacity(w.d_out * padded);
        let layout = match &w.blocks {
            Blocks::Nf4(blocks) => {
                let mut scale = Vec::with_capacity(blocks.len());
                for b in blocks {
                    codes.extend((0..NF4_BLOCK).map(|i| b.code(i)));
                    scale.push(b.absmax);
                }
                (NF4_CODEBOOK, NF4_BLOCK, scale, None)
            }
            Blocks::Q4K(blocks) => {
                let subs = blocks.len() * tb_gguf::QK_K / 32;
                let (mut scale, mut offset) = (Vec::with_capacity(subs), Vec::with_capacity(subs));
                for b in blocks {
                    codes.extend((0..tb_gguf::QK_K).map(|i| b.code(i)));
                    for (d, m) in b.sub_block_scales() {
                        scale.push(d);
                        offset.push(m);
                    }
                }
                (std::array::from_fn(|q| q as f32), 32, scale, Some(offset))
            }
        };
        let words = codes
            .chunks_exact(CODES_PER_WORD)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u32, |word, (i, &q)| word | (u32::from(q) << (4 * i)))
                    as i32
            })
            .collect();
        let (lut, group, scale, offset) = layout;
        Self {
            words,
            lut,
            group,
            scale,
            offset,
        }
    }
}

/// A packed weight resident on one device of backend `B` (see the module docs).
#[derive(Debug)]
pub struct DevicePacked<B: Backend> {
    device: B::Device,
    d_out: usize,
    d_in: usize,
    group: usize,
    /// `[words]`.
    words: Tensor<B, 1, Int>,
    /// `[16]`.
    lut: Tensor<B, 1>,
    /// `[groups, 1]`.
    scale: Tensor<B, 2>,
    /// `[groups, 1]`.
    offset: Option<Tensor<B, 2>>,
}

impl<B: Backend> DevicePacked<B> {
    /// Uploads `w` to `device`.
    pub fn upload(w: &PackedWeight, device: &B::Device) -> Self {
        let host = HostLayout::of(w);
        let groups = host.scale.len();
        let column =
            |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [groups, 1]), device);
        let n_words = host.words.len();
        Self {
            device: device.clone(),
            d_out: w.d_out,
            d_in: w.d_in,
            group: host.group,
            words: Tensor::from_data(TensorData::new(host.words, [n_words]), device),
            lut: Tensor::from_data(TensorData::new(host.lut.to_vec(), [16]), device),
            scale: column(host.scale),
            offset: host.offset.map(column),
        }
    }

    /// The device it lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The weight dequantised on the device: a dense f32 tensor, HF layout.
    ///
    /// # Shapes
    /// - output: `[d_out, d_in]`
    pub fn dense(&self) -> Tensor<B, 2> {
        let n_words = self.words.dims()[0];
        let nibbles: Vec<Tensor<B, 1, Int>> = (0..CODES_PER_WORD)
            .map(|i| {
                self.words
                    .clone()
                    .bitwise_right_shift_scalar(((4 * i) as i32).elem())
                    .bitwise_and_scalar(15i32.elem())
            })
            .collect();
        let codes = Tensor::stack::<2>(nibbles, 1).reshape([n_words * CODES_PER_WORD]);
        let groups = self.scale.dims()[0];
        let values = self
            .lut
            .clone()
            .select(0, codes)
            .reshape([groups, self.group]);
        let values = values * self.scale.clone();
        let values = match &self.offset {
            Some(offset) => values - offset.clone(),
            None => values,
        };
        let padded = groups * self.group / self.d_out;
        let dense = values.reshape([self.d_out, padded]);
        if padded == self.d_in {
            dense
        } else {
            dense.narrow(1, 0, self.d_in)
        }
    }
}
