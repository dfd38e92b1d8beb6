//! The GGUF header parser: a bounds-checked cursor over the file bytes.

use std::collections::HashMap;

use super::{
    TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, KEY_ALIGNMENT, MAX_DIMS, MAX_STRING_OR_ARRAY_LEN,
    MAX_TENSOR_NAME_LEN,
};
use crate::error::{Error, Result};
use crate::metadata::{Array, Metadata, Value, ValueType};
use crate::types::GgmlType;

pub(super) struct Parsed {
    pub(super) version: u32,
    pub(super) metadata: Metadata,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) alignment: u64,
    pub(super) data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// v1 files use u32 for counts and lengths.
    v1: bool,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining(),
            });
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length: u64 (v2+) or u32 (v1).
    fn len(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        if self.v1 {
            Ok(self.u32(what)? as u64)
        } else {
            self.u64(what)
        }
    }

    fn limit(
        &self,
        what: impl FnOnce() -> String,
        value: u64,
        limit: u64,
        at: usize,
    ) -> Result<()> {
        if value > limit {
            return Err(Error::LimitExceeded {
                what: what(),
                value,
                limit,
                offset: at as u64,
            });
        }
        Ok(())
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let n = self.len(|| format!("length of {}", what()))?;
        self.limit(
            || format!("length of {}", what()),
            n,
            MAX_STRING_OR_ARRAY_LEN,
            at,
        )?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Malformed {
            offset: at as u64,
            message: format!("{} is not valid UTF-8: {e}", what()),
        })
    }

    fn value_type(&mut self, what: &dyn Fn() -> String) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32(|| format!("type of {}", what()))?;
        ValueType::from_id(id).ok_or_else(|| Error::Malformed {
            offset: at as u64,
            message: format!("{} has invalid value type {id}", what()),
        })
    }

    fn scalar(&mut self, ty: ValueType, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(what)?[0] != 0),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                return Err(Error::Malformed {
                    offset: self.pos as u64,
                    message: format!("{}: nested arrays are not allowed", what()),
                })
            }
        })
    }

    fn value(&mut self, key: &str) -> Result<Value> {
        let what = || format!("value of key '{key}'");
        let ty = self.value_type(&what)?;
        if ty != ValueType::Array {
            return self.scalar(ty, &what);
        }
        let elem_what = || format!("array element of key '{key}'");
        let elem = self.value_type(&elem_what)?;
        if elem == ValueType::Array {
            return Err(Error::Malformed {
                offset: self.pos as u64 - 4,
                message: format!("key '{key}' is an array of arrays, which GGUF does not allow"),
            });
        }
        let at = self.pos;
        let n = self.len(|| format!("array length of key '{key}'"))?;
        self.limit(
            || format!("array length of key '{key}'"),
            n,
            MAX_STRING_OR_ARRAY_LEN,
            at,
        )?;
        // every element needs at least this many bytes: refuse before allocating
        let min_size = elem.scalar_size().unwrap_or(if self.v1 { 4 } else { 8 }) as u64;
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(Error::Truncated {
                what: format!("{n} array elements of key '{key}'"),
                offset: self.pos as u64,
                needed: n.saturating_mul(min_size),
                available: self.remaining(),
            });
        }
        let n = n as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let size = std::mem::size_of::<$t>();
                let bytes = self.take((n * size) as u64, &elem_what)?;
                Array::$variant(
                    bytes
                        .chunks_exact(size)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
            }};
        }
        let arr = match elem {
            ValueType::U8 => Array::U8(self.take(n as u64, elem_what)?.to_vec()),
            ValueType::I8 => Array::I8(
                self.take(n as u64, elem_what)?
                    .iter()
                    .map(|&b| b as i8)
                    .collect(),
            ),
            ValueType::Bool => Array::Bool(
                self.take(n as u64, elem_what)?
                    .iter()
                    .map(|&b| b != 0)
                    .collect(),
            ),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(&|| format!("string {i} of array '{key}'"))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                return Err(Error::Malformed {
                    offset: at as u64,
                    message: format!("key '{key}' is an array of arrays"),
                })
            }
        };
        Ok(Value::Array(arr))
    }
}

pub(super) fn parse_header(buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor {
        buf,
        pos: 0,
        v1: false,
    };
    let (version, n_tensors, n_kv) = parse_preamble(&mut c)?;
    let metadata = parse_metadata(&mut c, n_kv)?;
    let alignment = alignment_of(&metadata)?;
    let mut infos = Vec::with_capacity(n_tensors as usize);
    let mut names = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        infos.push(parse_tensor_info(&mut c, i, &mut names)?);
    }
    let data_offset = place_tensors(&mut infos, c.pos as u64, alignment, buf.len() as u64)?;
    Ok(Parsed {
        version,
        metadata,
        tensors: infos,
        alignment,
        data_offset,
    })
}

/// Magic, version, tensor count and metadata key count; the counts are bounded by what the
/// rest of the file could hold (a tensor info takes at least 24 bytes, v1: 16; a key-value pair
/// at least 13, v1: 9).
fn parse_preamble(c: &mut Cursor<'_>) -> Result<(u32, u64, u64)> {
    let magic: [u8; 4] = c.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    let version = c.u32(|| "version".into())?;
    if !(1..=3).contains(&version) {
        return Err(Error::UnsupportedVersion(version));
    }
    c.v1 = version == 1;

    let at = c.pos;
    let n_tensors = c.len(|| "tensor count".into())?;
    let min_info = if c.v1 { 16 } else { 24 };
    c.limit(
        || "tensor count".into(),
        n_tensors,
        c.remaining() / min_info,
        at,
    )?;
    let at = c.pos;
    let n_kv = c.len(|| "metadata key count".into())?;
    let min_kv = if c.v1 { 9 } else { 13 };
    c.limit(
        || "metadata key count".into(),
        n_kv,
        c.remaining() / min_kv,
        at,
    )?;
    Ok((version, n_tensors, n_kv))
}

/// `n_kv` key-value pairs: keys non-empty and unique.
fn parse_metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<Metadata> {
    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let at = c.pos;
        let key = c.string(&|| format!("key {i}"))?;
        if key.is_empty() {
            return Err(Error::Malformed {
                offset: at as u64,
                message: format!("key {i} is empty"),
            });
        }
        let value = c.value(&key)?;
        metadata
            .insert_new(key, value)
            .map_err(|message| Error::Malformed {
                offset: at as u64,
                message,
            })?;
    }
    Ok(metadata)
}

/// `general.alignment` (a power-of-two u32), or the default.
fn alignment_of(metadata: &Metadata) -> Result<u64> {
    match metadata.get(KEY_ALIGNMENT) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(v) => Err(Error::Malformed {
            offset: 0,
            message: format!(
                "'{KEY_ALIGNMENT}' must be a power-of-two u32, found {} {v:?}",
                v.type_description()
            ),
        }),
    }
}

/// Tensor info `i`: a unique name within the length limit, at most [`MAX_DIMS`] dimensions
/// whose product fits int64, a known type whose block size divides the rows, and the data
/// offset (placed in the file by [`place_tensors`]).
fn parse_tensor_info(
    c: &mut Cursor<'_>,
    i: u64,
    names: &mut HashMap<String, u64>,
) -> Result<TensorInfo> {
    let at = c.pos;
    let name = c.string(&|| format!("name of tensor {i}"))?;
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(Error::LimitExceeded {
            what: format!("name length of tensor {i} ('{name}')"),
            value: name.len() as u64,
            limit: MAX_TENSOR_NAME_LEN as u64,
            offset: at as u64,
        });
    }
    if names.insert(name.clone(), i).is_some() {
        return Err(Error::Malformed {
            offset: at as u64,
            message: format!("duplicate tensor name '{name}'"),
        });
    }
    let at = c.pos;
    let n_dims = c.u32(|| format!("n_dims of tensor '{name}'"))?;
    c.limit(
        || format!("n_dims of tensor '{name}'"),
        n_dims as u64,
        MAX_DIMS as u64,
        at,
    )?;
    let mut ne = Vec::with_capacity(n_dims as usize);
    for j in 0..n_dims {
        let d = c.len(|| format!("dim {j} of tensor '{name}'"))?;
        if d > i64::MAX as u64 {
            return Err(Error::tensor(
                &name,
                format!("dimension {j} = {d} is negative as int64"),
            ));
        }
        ne.push(d);
    }
    let n_el = ne
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    if n_el.is_none() {
        return Err(Error::tensor(
            &name,
            format!("element count of shape {ne:?} overflows int64"),
        ));
    }
    let type_id = c.u32(|| format!("type of tensor '{name}'"))?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownGgmlType {
        tensor: name.clone(),
        type_id,
    })?;
    let size = ty.tensor_size(&ne).ok_or_else(|| {
        Error::tensor(
            &name,
            format!(
                "shape {ne:?}: row length {} is not a multiple of the {ty} block size {} (or the size overflows)",
                ne.first().copied().unwrap_or(1),
                ty.block_size()
            ),
        )
    })?;
    let offset = c.u64(|| format!("data offset of tensor '{name}'"))?;
    Ok(TensorInfo {
        name,
        ty,
        ne,
        offset,
        file_offset: 0,
        size,
    })
}

/// Sets each tensor's `file_offset` after the aligned end of the header and checks its data is
/// aligned and inside the file; returns the data section's offset.
fn place_tensors(
    infos: &mut [TensorInfo],
    header_end: u64,
    alignment: u64,
    file_len: u64,
) -> Result<u64> {
    let data_offset = header_end.div_ceil(alignment) * alignment;
    if !infos.is_empty() && data_offset > file_len {
        return Err(Error::Truncated {
            what: "padding before the tensor data section".into(),
            offset: header_end,
            needed: data_offset - header_end,
            available: file_len - header_end,
        });
    }
    let mut expected = 0u64;
    for t in infos.iter_mut() {
        if t.offset % alignment != 0 {
            return Err(Error::tensor(
                &t.name,
                format!(
                    "data offset {} is not a multiple of the alignment {alignment}",
                    t.offset
                ),
            ));
        }
        if t.offset != expected {
            tracing::debug!(tensor = %t.name, offset = t.offset, expected, "tensor data not contiguous (llama.cpp would reject this file)");
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len => t.file_offset = s,
            _ => {
                return Err(Error::tensor(
                    &t.name,
                    format!(
                        "data (offset {} + {} bytes after the data section at {data_offset}) is not within the file of {file_len} bytes",
                        t.offset, t.size
                    ),
                ))
            }
        }
        expected = t
            .offset
            .saturating_add(t.size.div_ceil(alignment).saturating_mul(alignment));
    }
    Ok(data_offset)
}
