//! Writes HF safetensors files atomically (temp file in the same directory, then rename).
//!
//! [`write_safetensors_streamed`] writes the header from names, dtypes and shapes alone and then
//! asks for each tensor's bytes in turn, so a file of any size is written while holding one
//! tensor in memory; [`write_safetensors`] is the same for tensors already in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::checkpoint::StoredDtype;
use crate::error::{Error, Result};

/// One tensor to write: HF name, dtype, shape and little-endian bytes.
pub struct OwnedTensor {
    /// HF name.
    pub name: String,
    /// Stored dtype.
    pub dtype: StoredDtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes (`shape.product() * dtype size`).
    pub bytes: Vec<u8>,
}

/// Name, dtype and shape of a tensor whose bytes come later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorHeader {
    /// HF name.
    pub name: String,
    /// Stored dtype.
    pub dtype: StoredDtype,
    /// Shape.
    pub shape: Vec<usize>,
}

impl TensorHeader {
    /// Bytes of the tensor's data.
    pub fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

impl StoredDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StoredDtype::F32 => 4,
            StoredDtype::F16 | StoredDtype::BF16 => 2,
        }
    }

    /// The dtype's name in a safetensors header.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "F32",
            StoredDtype::F16 => "F16",
            StoredDtype::BF16 => "BF16",
        }
    }
}

/// The safetensors header for `tensors` in this order (data laid out back to back), with
/// `{"format": "pt"}` metadata, padded with spaces to a multiple of 8 bytes as `safetensors`
/// writes it.
fn header_json(path: &Path, tensors: &[TensorHeader]) -> Result<Vec<u8>> {
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.byte_len();
        let entry = json!({
            "dtype": t.dtype.safetensors_name(),
            "shape": t.shape,
            "data_offsets": [offset, end],
        });
        if map.insert(t.name.clone(), entry).is_some() || t.name == "__metadata__" {
            return Err(Error::WeightFile {
                path: path.to_path_buf(),
                message: format!("tensor `{}` is listed twice", t.name),
            });
        }
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&Value::Object(map)).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    Ok(bytes)
}

/// Writes a safetensors file at `path` whose tensors are `tensors` in this order, calling
/// `bytes_of(i, header)` for each tensor's little-endian bytes as it is written (one tensor in
/// memory at a time). Nothing is left at `path` if writing fails, if `bytes_of` fails (its
/// error is returned) or if it returns a wrong number of bytes.
pub fn write_safetensors_streamed<E: From<Error>, B: AsRef<[u8]>>(
    path: &Path,
    tensors: &[TensorHeader],
    mut bytes_of: impl FnMut(usize, &TensorHeader) -> std::result::Result<B, E>,
) -> std::result::Result<(), E> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let header = header_json(path, tensors)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let io_err = |e| Error::io(path, e);
    {
        let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io_err)?;
        out.write_all(&header).map_err(io_err)?;
        for (i, t) in tensors.iter().enumerate() {
            let produced = bytes_of(i, t)?;
            let bytes = produced.as_ref();
            if bytes.len() != t.byte_len() {
                return Err(Error::WeightFile {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor `{}` {:?} {:?}: {} bytes given, {} expected",
                        t.name,
                        t.dtype,
                        t.shape,
                        bytes.len(),
                        t.byte_len()
                    ),
                }
                .into());
            }
            out.write_all(bytes).map_err(io_err)?;
        }
        out.flush().map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `tensors` to `path` as one safetensors file with `{"format": "pt"}` metadata.
/// Nothing is left at `path` if writing fails.
pub fn write_safetensors(path: &Path, tensors: &[OwnedTensor]) -> Result<()> {
    let headers: Vec<TensorHeader> = tensors
        .iter()
        .map(|t| TensorHeader {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    write_safetensors_streamed(path, &headers, |i, _| {
        Ok::<_, Error>(tensors[i].bytes.as_slice())
    })
}
