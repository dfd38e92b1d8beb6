//! Packed 4-bit frozen base weights, like Unsloth's and QLoRA's `load_in_4bit`: the base of
//! every LoRA-adapted projection is stored as 4-bit blocks and dequantised one tile at a time
//! inside the matmuls ([`crate::FusedBackend::packed_linear_fwd`] and
//! [`crate::FusedBackend::packed_linear_bwd`]); the dense weight is dropped.
//!
//! A [`PackedWeight`] holds one projection in HF layout `[d_out, d_in]`, row by row, each row
//! cut into blocks along `d_in`, in one of two formats ([`QuantFormat`]):
//! - **NF4**: bitsandbytes' 4-bit NormalFloat, 64 values per block with one f32 `absmax` (see
//!   [`nf4`] for what matches bnb and what does not). Any `d_in`: a row's last block is padded.
//! - **Q4_K**: llama.cpp's Q4_K super-blocks of 256 values, quantised and dequantised by
//!   tb-gguf's port of `quantize_row_q4_K_ref`/`dequantize_row_q4_K` (bit-exact with
//!   llama.cpp). Needs `d_in % 256 == 0`; other widths are a [`FusedError::Pack`] naming the
//!   tensor (llama.cpp falls back to another type there; here NF4 is the format to pick).
//!
//! [`PackingSink`] packs a model's adapted projections while the loader reads them and leaves
//! their weights empty in the module; [`PackedBases`] carries the packed copies to
//! [`crate::fused_model`].

mod device;
mod model;
pub mod nf4;

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use burn::prelude::Backend;

use rayon::prelude::*;
use tb_gguf::codec::{BlockCodec, BlockQ4K};
use tb_gguf::QK_K;

use crate::error::{FusedError, Result};
pub use device::DevicePacked;
pub use model::{LayerBases, PackedBases, PackingSink};
pub use nf4::{BlockNf4, NF4_BLOCK, NF4_CODEBOOK, NF4_MIDPOINTS};

/// The 4-bit format of a packed base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// bitsandbytes NF4, blocks of 64 values with an f32 absmax.
    Nf4,
    /// llama.cpp Q4_K, super-blocks of 256 values.
    Q4K,
}

impl QuantFormat {
    /// Values per block along a row.
    pub fn block_size(self) -> usize {
        match self {
            Self::Nf4 => NF4_BLOCK,
            Self::Q4K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Nf4 => std::mem::size_of::<BlockNf4>(),
            Self::Q4K => std::mem::size_of::<BlockQ4K>(),
        }
    }

    /// Checks that rows of `d_in` values can be packed in this format (Q4_K needs whole
    /// super-blocks; NF4 pads). `tensor` names the weight in the error.
    ///
    /// # Errors
    /// [`FusedError::Pack`] for Q4_K when `d_in % 256 != 0`.
    pub fn check_width(self, tensor: &str, d_in: usize) -> Result<()> {
        if self == Self::Q4K && !d_in.is_multiple_of(QK_K) {
            return Err(FusedError::Pack {
                tensor: tensor.to_string(),
                format: self.name(),
                reason: format!(
                    "its input width {d_in} is not a multiple of the {QK_K}-value Q4_K \
                     super-block (base_quant = \"nf4\" packs any width)"
                ),
            });
        }
        Ok(())
    }

    /// Display name (`NF4`, `Q4_K`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nf4 => "NF4",
            Self::Q4K => "Q4_K",
        }
    }
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The blocks of all rows, row after row.
#[derive(Clone)]
enum Blocks {
    Nf4(Vec<BlockNf4>),
    Q4K(Vec<BlockQ4K>),
}

/// Copies of a weight on backend devices ([`DevicePacked`] of any backend), made on first use.
#[derive(Default)]
struct DeviceCopies(Mutex<Vec<Arc<dyn Any + Send + Sync>>>);

impl Clone for DeviceCopies {
    /// A clone starts without device copies (they are a cache).
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// One frozen projection weight packed to 4 bits, HF layout `[d_out, d_in]`: row `o` is the
/// `blocks_per_row` blocks starting at block `o · blocks_per_row`.
#[derive(Clone)]
pub struct PackedWeight {
    name: String,
    d_out: usize,
    d_in: usize,
    blocks_per_row: usize,
    blocks: Blocks,
    device_copies: DeviceCopies,
}

impl fmt::Debug for PackedWeight {
    /// Name, format and sizes only (the blocks would be megabytes of text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedWeight")
            .field("name", &self.name)
            .field("format", &self.format())
            .field("d_out", &self.d_out)
            .field("d_in", &self.d_in)
            .field("bytes", &self.packed_bytes())
            .finish()
    }
}

impl PackedWeight {
    /// Packs a weight given in HF layout (`values` row-major `[d_out, d_in]`); `name` is the
    /// tensor's name, used in errors (e.g. `model.layers.0.self_attn.q_proj.weight`).
    /// Rows are quantised in parallel.
    ///
    /// # Errors
    /// [`FusedError::Pack`] when the shape is empty or does not match `values`, a value is NaN or
    /// infinite, or (Q4_K) `d_in` is not a multiple of 256.
    pub fn pack(
        name: impl Into<String>,
        format: QuantFormat,
        values: &[f32],
        d_out: usize,
        d_in: usize,
    ) -> Result<Self> {
        let name = name.into();
        let fail = |reason: String| FusedError::Pack {
            tensor: name.clone(),
            format: format.name(),
            reason,
        };
        if d_out == 0 || d_in == 0 || d_out.checked_mul(d_in) != Some(values.len()) {
            return Err(fail(format!(
                "{} values do not make a non-empty [{d_out}, {d_in}] weight",
                values.len()
            )));
        }
        format.check_width(&name, d_in)?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!(
                "value {} at [{}, {}] is not finite",
                values[i],
                i / d_in,
                i % d_in
            )));
        }
        let bs = format.block_size();
        let rows = values.par_chunks(d_in);
        let blocks = match format {
            QuantFormat::Nf4 => Blocks::Nf4(
                rows.flat_map_iter(|row| row.chunks(bs).map(BlockNf4::quantize))
                    .collect(),
            ),
            QuantFormat::Q4K => Blocks::Q4K(
                rows.flat_map_iter(|row| row.chunks_exact(bs).map(BlockQ4K::quantize_block))
                    .collect(),
            ),
        };
        Ok(Self {
            name,
            d_out,
            d_in,
            blocks_per_row: d_in.div_ceil(bs),
            blocks,
            device_copies: DeviceCopies::default(),
        })
    }

    /// This weight on `device` of backend `B`, still packed: uploaded on the first call, then
    /// the same copy for every later call on that device (see [`DevicePacked`]). The default
    /// [`crate::FusedBackend::packed_linear_fwd`]/[`crate::FusedBackend::packed_linear_bwd`]
    /// dequantise it there.
    pub fn device_copy<B: Backend>(&self, device: &B::Device) -> Arc<DevicePacked<B>> {
        let mut copies = self
            .device_copies
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for copy in copies.iter() {
            if let Ok(copy) = Arc::clone(copy).downcast::<DevicePacked<B>>() {
                if copy.device() == device {
                    return copy;
                }
            }
        }
        let copy = Arc::new(DevicePacked::<B>::upload(self, device));
        copies.push(copy.clone());
        copy
    }

    /// How many device copies [`Self::device_copy`] has made.
    pub fn device_copies(&self) -> usize {
        self.device_copies
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The format.
    pub fn format(&self) -> QuantFormat {
        match self.blocks {
            Blocks::Nf4(_) => QuantFormat::Nf4,
            Blocks::Q4K(_) => QuantFormat::Q4K,
        }
    }

    /// Output width (rows).
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Input width (values per row).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Blocks per row (`ceil(d_in / block_size)`).
    pub fn blocks_per_row(&self) -> usize {
        self.blocks_per_row
    }

    /// Bytes the blocks take (4.5 bits per value for NF4, 4.5 for Q4_K, plus NF4 padding).
    pub fn packed_bytes(&self) -> usize {
        self.d_out * self.blocks_per_row * self.format().block_bytes()
    }

    /// The NF4 blocks (row after row), when the format is NF4.
    pub fn nf4_blocks(&self) -> Option<&[BlockNf4]> {
        match &self.blocks {
            Blocks::Nf4(b) => Some(b),
            Blocks::Q4K(_) => None,
        }
    }

    /// The Q4_K blocks (row after row), when the format is Q4_K.
    pub fn q4k_blocks(&self) -> Option<&[BlockQ4K]> {
        match &self.blocks {
            Blocks::Q4K(b) => Some(b),
            Blocks::Nf4(_) => None,
        }
    }

    /// Dequantises row `row` into `out` (`d_in` values) with the scalar reference codecs
    /// ([`BlockNf4::dequantize`], tb-gguf's `dequantize_row_q4_K` port).
    ///
    /// # Panics
    /// When `row >= d_out` or `out.len() != d_in` (caller bugs).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        assert!(row < self.d_out, "row {row} of {}", self.d_out);
        assert_eq!(out.len(), self.d_in, "output row width");
        let first = row * self.blocks_per_row;
        let bs = self.format().block_size();
        match &self.blocks {
            Blocks::Nf4(b) => {
                for (blk, y) in b[first..first + self.blocks_per_row]
                    .iter()
                    .zip(out.chunks_mut(bs))
                {
                    blk.dequantize(y);
                }
            }
            Blocks::Q4K(b) => {
                for (blk, y) in b[first..first + self.blocks_per_row]
                    .iter()
                    .zip(out.chunks_exact_mut(bs))
                {
                    blk.dequantize_block(y);
                }
            }
        }
    }

    /// The whole weight dequantised (scalar reference), row-major `[d_out, d_in]`. For tests
    /// and for backends without a tiled kernel; the Flex kernels never call it.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.d_out * self.d_in];
        for (row, y) in out.chunks_exact_mut(self.d_in).enumerate() {
            self.dequantize_row(row, y);
        }
        out
    }

    /// Columns covered by the blocks `blocks` of a row (the last block may be padded).
    pub(crate) fn block_columns(&self, blocks: &Range<usize>) -> Range<usize> {
        let bs = self.format().block_size();
        (blocks.start * bs).min(self.d_in)..(blocks.end * bs).min(self.d_in)
    }

    /// Dequantises the tile `rows × block_columns(blocks)` into `out`, row-major with
    /// `block_columns(blocks).len()` values per row (the fast path of the tiled matmuls; same
    /// values as [`Self::dequantize_row`]).
    ///
    /// # Panics
    /// When the ranges are out of bounds or `out` has the wrong length (caller bugs).
    pub(crate) fn dequantize_tile(
        &self,
        rows: Range<usize>,
        blocks: Range<usize>,
        out: &mut [f32],
    ) {
        let cols = self.block_columns(&blocks);
        let width = cols.len();
        assert!(rows.end <= self.d_out && blocks.end <= self.blocks_per_row);
        assert_eq!(out.len(), rows.len() * width, "tile buffer size");
        if width == 0 {
            return;
        }
        let bs = self.format().block_size();
        for (row, y) in rows.zip(out.chunks_exact_mut(width)) {
            let first = row * self.blocks_per_row;
            let range = first + blocks.start..first + blocks.end;
            match &self.blocks {
                Blocks::Nf4(b) => {
                    for (blk, y) in b[range].iter().zip(y.chunks_mut(bs)) {
                        blk.dequantize_fast(y);
                    }
                }
                Blocks::Q4K(b) => {
                    for (blk, y) in b[range].iter().zip(y.chunks_exact_mut(bs)) {
                        blk.dequantize_block(y);
                    }
                }
            }
        }
    }
}
