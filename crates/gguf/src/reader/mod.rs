//! GGUF reader: versions 1–3, memory-mapped, every length and offset bounds-checked.
//!
//! Layout (ggml `docs/gguf.md`, `src/gguf.cpp`): magic `GGUF`, u32 version, tensor count, KV
//! count, the KVs, the tensor infos, padding to `general.alignment` (default 32), then the
//! tensor data. v2 and v3 use u64 counts and lengths; v1 used u32.
//!
//! Hostile input: counts and lengths are checked against the bytes actually left before
//! anything is allocated (a string needs its length in bytes, an array element at least its
//! encoded size, a tensor info at least 24 bytes), so memory use stays proportional to the
//! file size. Strings and arrays are also capped at 2^30 (gguf.cpp's limits), tensor names at 63
//! bytes, dims at 4, and every tensor must lie inside the file.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::types::GgmlType;

mod parse;

/// `GGUF` as it appears on disk.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest string or array this reader accepts (gguf.cpp `GGUF_MAX_STRING_LENGTH` and
/// `GGUF_MAX_ARRAY_ELEMENTS`).
pub const MAX_STRING_OR_ARRAY_LEN: u64 = 1 << 30;
/// Longest tensor name in bytes (`GGML_MAX_NAME - 1`).
pub const MAX_TENSOR_NAME_LEN: usize = 63;
/// Most tensor dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// The `general.alignment` key.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// One tensor's description from the tensor-info table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Dimensions in ggml order: `ne[0]` is the row length (fastest-varying). A PyTorch
    /// `[out, in]` weight has `ne = [in, out]`.
    pub ne: Vec<u64>,
    /// Offset of the data relative to the start of the data section (as stored in the file).
    pub offset: u64,
    /// Absolute offset of the data in the file.
    pub file_offset: u64,
    /// Size of the data in bytes (without padding).
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Row length `ne[0]` (1 for a 0-d tensor).
    pub fn row_len(&self) -> u64 {
        self.ne.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of `ne[1..]`.
    pub fn n_rows(&self) -> u64 {
        self.ne.iter().skip(1).product()
    }

    /// Dimensions in PyTorch/numpy order (`ne` reversed).
    pub fn shape(&self) -> Vec<u64> {
        self.ne.iter().rev().copied().collect()
    }
}

enum Data {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mmap(m) => m,
            Data::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the mapping until asked for.
pub struct GgufFile {
    data: Data,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses `path`, memory-mapping it.
    ///
    /// The mapping assumes nobody truncates or rewrites the file while it is open.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let data = if len == 0 {
            Data::Owned(Vec::new())
        } else {
            // SAFETY: read-only mapping; the caller must not modify the file while it is open
            // (documented above). All reads are bounds-checked against the mapping's length.
            let map =
                unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
            Data::Mmap(map)
        };
        tracing::debug!(path = %path.display(), len, "opening GGUF");
        Self::parse(data)
    }

    /// Parses a GGUF held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(Data::Owned(bytes))
    }

    fn parse(data: Data) -> Result<GgufFile> {
        let parsed = parse::parse_header(data.bytes())?;
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            data,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    /// GGUF version (1, 2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Alignment of the data section and of each tensor.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))
    }

    /// The raw bytes of `info` (must come from this file).
    pub fn data_of(&self, info: &TensorInfo) -> Result<&[u8]> {
        let start = usize::try_from(info.file_offset)
            .map_err(|_| Error::tensor(&info.name, "offset does not fit in memory"))?;
        let len = usize::try_from(info.size)
            .map_err(|_| Error::tensor(&info.name, "size does not fit in memory"))?;
        self.as_bytes()
            .get(start..start.saturating_add(len))
            .ok_or_else(|| Error::tensor(&info.name, "data is not within the file"))
    }

    /// The raw (encoded) bytes of tensor `name`.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        self.data_of(self.tensor(name)?)
    }

    /// Tensor `name` dequantized to f32, row-major with `ne[0]` fastest: a 2-D weight comes
    /// back as `ne[1]` rows of `ne[0]` values (PyTorch `[out, in]` order).
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name)?;
        let bytes = self.data_of(info)?;
        crate::codec::dequantize_to_vec(info.ty, bytes).map_err(|e| match e {
            Error::UnsupportedType { .. } => Error::tensor(
                &info.name,
                format!("cannot dequantize type {} (no codec)", info.ty),
            ),
            other => other,
        })
    }
}
