//! GGUF metadata: typed values and an ordered key → value map with strict typed getters.
//!
//! llama.cpp checks metadata types strictly (`llama-model-loader` throws "key %s has wrong
//! type"), so the getters here do the same: `get_u32` accepts only `UINT32`. Use
//! [`Metadata::get_u64_lenient`] where any non-negative integer should do.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// GGUF value type ids (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `GGUF_TYPE_UINT8`
    U8 = 0,
    /// `GGUF_TYPE_INT8`
    I8 = 1,
    /// `GGUF_TYPE_UINT16`
    U16 = 2,
    /// `GGUF_TYPE_INT16`
    I16 = 3,
    /// `GGUF_TYPE_UINT32`
    U32 = 4,
    /// `GGUF_TYPE_INT32`
    I32 = 5,
    /// `GGUF_TYPE_FLOAT32`
    F32 = 6,
    /// `GGUF_TYPE_BOOL` (one byte, 0 or 1)
    Bool = 7,
    /// `GGUF_TYPE_STRING` (u64 length + UTF-8 bytes)
    String = 8,
    /// `GGUF_TYPE_ARRAY` (u32 element type + u64 count + elements)
    Array = 9,
    /// `GGUF_TYPE_UINT64`
    U64 = 10,
    /// `GGUF_TYPE_INT64`
    I64 = 11,
    /// `GGUF_TYPE_FLOAT64`
    F64 = 12,
}

impl ValueType {
    /// The type with id `id`, if valid.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Short name ("u32", "string", ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Encoded size of a scalar of this type (`None` for strings and arrays).
    pub fn scalar_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A homogeneous GGUF array (arrays of arrays are rejected, as by llama.cpp's gguf.cpp).
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// u8 elements.
    U8(Vec<u8>),
    /// i8 elements.
    I8(Vec<i8>),
    /// u16 elements.
    U16(Vec<u16>),
    /// i16 elements.
    I16(Vec<i16>),
    /// u32 elements.
    U32(Vec<u32>),
    /// i32 elements (e.g. `tokenizer.ggml.token_type`).
    I32(Vec<i32>),
    /// f32 elements (e.g. `tokenizer.ggml.scores`).
    F32(Vec<f32>),
    /// bool elements.
    Bool(Vec<bool>),
    /// string elements (e.g. `tokenizer.ggml.tokens`).
    String(Vec<String>),
    /// u64 elements.
    U64(Vec<u64>),
    /// i64 elements.
    I64(Vec<i64>),
    /// f64 elements.
    F64(Vec<f64>),
}

impl Array {
    /// Element type.
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// u8
    U8(u8),
    /// i8
    I8(i8),
    /// u16
    U16(u16),
    /// i16
    I16(i16),
    /// u32: llama.cpp's type for all `llama.*` integers and token ids.
    U32(u32),
    /// i32
    I32(i32),
    /// f32: llama.cpp's type for all `llama.*` floats.
    F32(f32),
    /// bool
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array.
    Array(Array),
    /// u64
    U64(u64),
    /// i64
    I64(i64),
    /// f64
    F64(f64),
}

impl Value {
    /// The value's GGUF type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A readable type name: "u32", "array of string", ...
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.elem_type().name()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value if it is exactly `U32`.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// The value if it is exactly `F32`.
    pub fn as_f32(&self) -> Option<f32> {
        match self {
            Value::F32(v) => Some(*v),
            _ => None,
        }
    }

    /// The value if it is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// The value if it is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is an `Array`.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Any integer type that holds a non-negative value, widened to u64.
    pub fn as_u64_lenient(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U32(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I32(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::F32(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::Array(Array::String(v))
    }
}
impl From<Vec<f32>> for Value {
    fn from(v: Vec<f32>) -> Self {
        Value::Array(Array::F32(v))
    }
}
impl From<Vec<i32>> for Value {
    fn from(v: Vec<i32>) -> Self {
        Value::Array(Array::I32(v))
    }
}
impl From<Vec<u32>> for Value {
    fn from(v: Vec<u32>) -> Self {
        Value::Array(Array::U32(v))
    }
}

/// Ordered metadata: keys keep their file (or insertion) order, lookups are by hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
    Error::WrongType {
        key: key.to_string(),
        expected,
        found: v.type_description(),
    }
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether `key` exists.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Sets `key`: replaces the value in place if the key exists, else appends it.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// Removes `key` (if present) and appends it with the new value, moving it to the end;
    /// what gguf.cpp's `gguf_set_val_*` does, and so what llama-quantize does for
    /// `general.file_type` and `general.quantization_version`.
    pub fn set_last(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        self.remove(&key);
        self.set(key, value);
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for (j, (k, _)) in self.entries.iter().enumerate().skip(i) {
            self.index.insert(k.clone(), j);
        }
        Some(v)
    }

    /// Inserts a key read from a file; fails on a duplicate (as llama.cpp does).
    pub(crate) fn insert_new(
        &mut self,
        key: String,
        value: Value,
    ) -> std::result::Result<(), String> {
        if self.index.contains_key(&key) {
            return Err(format!("duplicate key '{key}'"));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    /// `key` as a `UINT32` (strict, like llama.cpp for `llama.*` keys).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_u32().ok_or_else(|| wrong(key, "u32", v))
    }

    /// `key` as a `FLOAT32`.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| wrong(key, "f32", v))
    }

    /// `key` as a `BOOL`.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| wrong(key, "bool", v))
    }

    /// `key` as a `STRING`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong(key, "string", v))
    }

    /// `key` as an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::String(a)) => Ok(a),
            _ => Err(wrong(key, "array of string", v)),
        }
    }

    /// `key` as an array of f32.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::F32(a)) => Ok(a),
            _ => Err(wrong(key, "array of f32", v)),
        }
    }

    /// `key` as an array of i32.
    pub fn get_i32_array(&self, key: &str) -> Result<&[i32]> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::I32(a)) => Ok(a),
            _ => Err(wrong(key, "array of i32", v)),
        }
    }

    /// `key` as any non-negative integer type, widened to u64.
    pub fn get_u64_lenient(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64_lenient()
            .ok_or_else(|| wrong(key, "non-negative integer", v))
    }

    /// Optional `UINT32`: `Ok(None)` if absent, an error if present with another type.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.opt(key, Self::get_u32)
    }

    /// Optional `FLOAT32`.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.opt(key, Self::get_f32)
    }

    /// Optional `BOOL`.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.opt(key, Self::get_bool)
    }

    /// Optional `STRING`.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.opt(key, Self::get_str)
    }

    /// Optional array of strings.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<&[String]>> {
        self.opt(key, Self::get_str_array)
    }

    /// Optional array of f32.
    pub fn opt_f32_array(&self, key: &str) -> Result<Option<&[f32]>> {
        self.opt(key, Self::get_f32_array)
    }

    /// Optional array of i32.
    pub fn opt_i32_array(&self, key: &str) -> Result<Option<&[i32]>> {
        self.opt(key, Self::get_i32_array)
    }

    /// A `UINT32`, or a per-layer `INT32`/`UINT32` array (llama.cpp's `get_key_or_arr`, used for
    /// `feed_forward_length` and `head_count`), as one value per entry.
    pub fn get_u32_or_array(&self, key: &str) -> Result<Vec<u32>> {
        let v = self.require(key)?;
        match v {
            Value::U32(x) => Ok(vec![*x]),
            Value::Array(Array::U32(a)) => Ok(a.clone()),
            Value::Array(Array::I32(a)) => a
                .iter()
                .map(|&x| u32::try_from(x).map_err(|_| wrong(key, "u32 or array of u32/i32", v)))
                .collect(),
            _ => Err(wrong(key, "u32 or array of u32/i32", v)),
        }
    }

    fn opt<'a, T>(
        &'a self,
        key: &str,
        f: impl FnOnce(&'a Self, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.contains_key(key) {
            f(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_are_strict_and_name_the_key() {
        let mut m = Metadata::new();
        m.set("llama.block_count", Value::U64(2));
        m.set("llama.embedding_length", 64u32);
        let e = m.get_u32("llama.block_count").unwrap_err().to_string();
        assert!(
            e.contains("llama.block_count") && e.contains("u64") && e.contains("u32"),
            "{e}"
        );
        assert_eq!(m.get_u64_lenient("llama.block_count").unwrap(), 2);
        assert_eq!(m.get_u32("llama.embedding_length").unwrap(), 64);
        let e = m.get_f32("nope").unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("nope"), "{e}");
        assert_eq!(m.opt_u32("nope").unwrap(), None);
        assert!(m.opt_f32("llama.embedding_length").is_err());
    }

    #[test]
    fn set_last_moves_key_to_end_and_remove_reindexes() {
        let mut m = Metadata::new();
        m.set("a", 1u32);
        m.set("b", 2u32);
        m.set("c", 3u32);
        m.set_last("a", 9u32);
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "c", "a"]);
        assert_eq!(m.get_u32("a").unwrap(), 9);
        m.remove("b");
        assert_eq!(m.get_u32("c").unwrap(), 3);
        assert_eq!(m.get_u32("a").unwrap(), 9);
        assert_eq!(m.len(), 2);
    }
}
