//! Streaming GGUF v3 writer.
//!
//! The tensor table (names, types, shapes) is declared up front, so every offset is known
//! before any data is written; tensor bytes are then produced one tensor at a time by a
//! callback, so a 7B model never has to sit in memory twice. Layout, as gguf.cpp
//! `gguf_write_out`: header, KVs, tensor infos, zero padding to the alignment, then each tensor
//! followed by zero padding to the alignment (the last one too). `general.alignment` is written
//! as u32 32 unless the metadata already holds a valid one. Offsets follow tensor-info order,
//! and the writer checks its stream position against the computed offset before each tensor.
//!
//! [`GgufWriter::write_to_file`] writes atomically ([`crate::fsio`]), so an error never leaves
//! a half-written file behind.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsio::write_atomic_with;
use crate::metadata::{Array, Metadata, Value};
use crate::reader::{DEFAULT_ALIGNMENT, KEY_ALIGNMENT, MAX_DIMS, MAX_TENSOR_NAME_LEN};
use crate::types::GgmlType;

/// The GGUF version this writer produces.
pub const GGUF_VERSION: u32 = 3;

/// A tensor to write: name, type and dims in ggml order (`ne[0]` = row length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name (at most 63 bytes).
    pub name: String,
    /// Element type of the stored data.
    pub ty: GgmlType,
    /// Dims in ggml order; a PyTorch `[out, in]` matrix is `[in, out]`.
    pub ne: Vec<u64>,
}

impl TensorSpec {
    /// A tensor description.
    pub fn new(name: impl Into<String>, ty: GgmlType, ne: impl Into<Vec<u64>>) -> Self {
        TensorSpec {
            name: name.into(),
            ty,
            ne: ne.into(),
        }
    }

    /// Encoded size in bytes, if the shape fits the type.
    pub fn size(&self) -> Option<u64> {
        self.ty.tensor_size(&self.ne)
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }
}

/// Where a tensor's bytes go; checks that exactly the declared size is written.
pub struct TensorSink<'a> {
    out: &'a mut dyn Write,
    spec: &'a TensorSpec,
    expected: u64,
    written: u64,
}

impl TensorSink<'_> {
    /// The tensor being written.
    pub fn spec(&self) -> &TensorSpec {
        self.spec
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.expected - self.written
    }

    /// Writes encoded bytes (any chunking; the total must equal the tensor's size).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.remaining() {
            return Err(Error::Writer(format!(
                "tensor '{}': producer wrote more than the declared {} bytes",
                self.spec.name, self.expected
            )));
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::Writer(format!("tensor '{}': {e}", self.spec.name)))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Encodes f32 values as the tensor's type (quantizing in parallel) and writes them.
    /// `values.len()` must be a whole number of blocks; whole rows keep the layout obvious.
    pub fn write_f32(&mut self, values: &[f32]) -> Result<()> {
        let bytes = crate::codec::quantize_to_vec(self.spec.ty, values)?;
        self.write_bytes(&bytes)
    }
}

struct Counting<W: Write> {
    inner: W,
    pos: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A GGUF v3 file being assembled: metadata plus a declared tensor table.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<TensorSpec>,
    sizes: Vec<u64>,
    names: HashSet<String>,
    alignment: u64,
}

impl GgufWriter {
    /// A writer for `metadata`. Adds `general.alignment = 32` (u32) if absent; an existing one
    /// must be a power-of-two u32.
    pub fn new(mut metadata: Metadata) -> Result<Self> {
        let alignment = match metadata.get(KEY_ALIGNMENT) {
            None => {
                metadata.set(KEY_ALIGNMENT, DEFAULT_ALIGNMENT as u32);
                DEFAULT_ALIGNMENT
            }
            Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(v) => {
                return Err(Error::InvalidArgument(format!(
                    "'{KEY_ALIGNMENT}' must be a power-of-two u32, got {} {v:?}",
                    v.type_description()
                )))
            }
        };
        for (k, _) in metadata.iter() {
            if k.is_empty() {
                return Err(Error::InvalidArgument("empty metadata key".into()));
            }
        }
        Ok(GgufWriter {
            metadata,
            tensors: Vec::new(),
            sizes: Vec::new(),
            names: HashSet::new(),
            alignment,
        })
    }

    /// The metadata to be written.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Declared tensors, in write order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// Declares the next tensor. Checks the name (unique, ≤ 63 bytes), dims (1–4) and that
    /// the row length is a multiple of the type's block size.
    pub fn add_tensor(&mut self, spec: TensorSpec) -> Result<()> {
        if spec.name.is_empty() || spec.name.len() > MAX_TENSOR_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "tensor name '{}' must be 1..={MAX_TENSOR_NAME_LEN} bytes",
                spec.name
            )));
        }
        if spec.ne.is_empty() || spec.ne.len() > MAX_DIMS {
            return Err(Error::tensor(
                &spec.name,
                format!("{} dims (must be 1..=4)", spec.ne.len()),
            ));
        }
        let size = spec.size().ok_or_else(|| {
            Error::tensor(
                &spec.name,
                format!(
                    "shape {:?} does not fit type {} (row length must be a multiple of {})",
                    spec.ne,
                    spec.ty,
                    spec.ty.block_size()
                ),
            )
        })?;
        if !self.names.insert(spec.name.clone()) {
            return Err(Error::tensor(&spec.name, "declared twice"));
        }
        self.sizes.push(size);
        self.tensors.push(spec);
        Ok(())
    }

    fn pad(&self, x: u64) -> u64 {
        x.div_ceil(self.alignment) * self.alignment
    }

    /// Offsets of each tensor relative to the data section.
    pub fn offsets(&self) -> Vec<u64> {
        let mut off = 0;
        self.sizes
            .iter()
            .map(|&s| {
                let o = off;
                off += self.pad(s);
                o
            })
            .collect()
    }

    /// Encodes the header: magic, version, counts, KVs and tensor infos (without padding).
    pub fn header_bytes(&self) -> Result<Vec<u8>> {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in self.metadata.iter() {
            put_str(&mut h, k);
            put_value(&mut h, v);
        }
        for (t, off) in self.tensors.iter().zip(self.offsets()) {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&off.to_le_bytes());
        }
        Ok(h)
    }

    /// Total file size this writer will produce.
    pub fn file_size(&self) -> Result<u64> {
        let h = self.header_bytes()?.len() as u64;
        Ok(self.pad(h) + self.sizes.iter().map(|&s| self.pad(s)).sum::<u64>())
    }

    /// Writes the file to `out`, calling `fill(index, spec, sink)` once per tensor, in order.
    /// Returns the number of bytes written.
    pub fn write_to<W: Write>(
        &self,
        out: W,
        mut fill: impl FnMut(usize, &TensorSpec, &mut TensorSink<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut w = Counting { inner: out, pos: 0 };
        let io = |e: std::io::Error| Error::Writer(e.to_string());
        let header = self.header_bytes()?;
        w.write_all(&header).map_err(io)?;
        let data_start = self.pad(w.pos);
        let pad = data_start - w.pos;
        write_zeros(&mut w, pad).map_err(io)?;
        for (i, (spec, off)) in self.tensors.iter().zip(self.offsets()).enumerate() {
            if w.pos != data_start + off {
                return Err(Error::Writer(format!(
                    "stream at {} before tensor '{}', expected {}",
                    w.pos,
                    spec.name,
                    data_start + off
                )));
            }
            let expected = self.sizes[i];
            let mut sink = TensorSink {
                out: &mut w,
                spec,
                expected,
                written: 0,
            };
            fill(i, spec, &mut sink)?;
            if sink.written != expected {
                return Err(Error::Writer(format!(
                    "tensor '{}': producer wrote {} bytes, expected {expected}",
                    spec.name, sink.written
                )));
            }
            let end = self.pad(w.pos);
            let pad = end - w.pos;
            write_zeros(&mut w, pad).map_err(io)?;
        }
        w.flush().map_err(io)?;
        Ok(w.pos)
    }

    /// Writes the file into memory (tests and small files).
    pub fn write_to_vec(
        &self,
        fill: impl FnMut(usize, &TensorSpec, &mut TensorSink<'_>) -> Result<()>,
    ) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write_to(&mut v, fill)?;
        Ok(v)
    }

    /// Writes the file to `path` atomically ([`crate::fsio::write_atomic_with`]): a temporary
    /// file in the same directory, renamed into place only after everything was written and
    /// synced.
    pub fn write_to_file(
        &self,
        path: impl AsRef<Path>,
        fill: impl FnMut(usize, &TensorSpec, &mut TensorSink<'_>) -> Result<()>,
    ) -> Result<u64> {
        let path = path.as_ref();
        if path.file_name().is_none() {
            return Err(Error::InvalidArgument(format!(
                "{} has no file name",
                path.display()
            )));
        }
        let n = write_atomic_with(path, |file| {
            let mut bw = BufWriter::with_capacity(1 << 20, file);
            let n = self.write_to(&mut bw, fill)?;
            bw.flush().map_err(|e| Error::io("write", path, e))?;
            Ok::<_, Error>(n)
        })?;
        tracing::debug!(path = %path.display(), bytes = n, tensors = self.tensors.len(), "wrote GGUF");
        Ok(n)
    }
}

fn write_zeros(w: &mut impl Write, n: u64) -> std::io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(64) as usize;
        w.write_all(&ZEROS[..k])?;
        left -= k as u64;
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    h.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.push(*x as u8),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(*x as u8),
        Value::String(s) => put_str(h, s),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            h.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
            h.extend_from_slice(&(a.len() as u64).to_le_bytes());
            put_array(h, a);
        }
    }
}

fn put_array(h: &mut Vec<u8>, a: &Array) {
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                h.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => h.extend_from_slice(v),
        Array::I8(v) => h.extend(v.iter().map(|&x| x as u8)),
        Array::Bool(v) => h.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::String(v) => {
            for s in v {
                put_str(h, s);
            }
        }
    }
}
