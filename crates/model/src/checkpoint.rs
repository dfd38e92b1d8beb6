//! HF safetensors checkpoints: single file or sharded (`model.safetensors.index.json`),
//! memory-mapped, F32/F16/BF16.
//!
//! Opening a checkpoint maps the shards and parses their headers only; tensor data is converted
//! to f32 one tensor at a time when asked for, so a 15 GB bf16 checkpoint is never held in RAM
//! twice (the pages of the map are the OS's cache, not our heap).
//!
//! Headers are parsed and checked here, with the safetensors crate's rules (data ranges tile the
//! data section exactly, byte counts match dtype and shape, a 100 MB header limit), so that every
//! error on a hostile file names the file and the byte offset, or the tensor and field.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::Dtype;

use crate::error::{Error, Result};

/// Name of the shard index file written by `save_pretrained`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// The safetensors reference implementation's limit on the JSON header.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor of a shard's header, checked against the file.
struct TensorEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range of the data, relative to the end of the header.
    offsets: (usize, usize),
}

struct Shard {
    path: PathBuf,
    /// The open file, for [`SafetensorsCheckpoint::tensor_f32`]'s positioned reads.
    file: File,
    map: Mmap,
    /// Offset of the tensor data in the file: the 8-byte length plus the header.
    data_start: usize,
    tensors: HashMap<String, TensorEntry>,
}

/// A memory-mapped safetensors checkpoint.
pub struct SafetensorsCheckpoint {
    shards: Vec<Shard>,
    /// tensor name -> shard index
    index: BTreeMap<String, usize>,
    location: String,
}

/// The dtype of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    BF16,
}

impl StoredDtype {
    /// The HF `torch_dtype` name.
    pub fn torch_name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "float32",
            StoredDtype::F16 => "float16",
            StoredDtype::BF16 => "bfloat16",
        }
    }
}

impl SafetensorsCheckpoint {
    /// Opens `dir/model.safetensors.index.json` if present, else `dir/model.safetensors`; `dir`
    /// may also be a single `.safetensors` file.
    ///
    /// Every shard's header is checked in full here (dtypes, shapes, data offsets that tile the
    /// data exactly up to the end of the file), so the accessors below cannot read out of range.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if dir.is_file() {
            return Self::from_files(vec![dir.to_path_buf()], None);
        }
        let index_path = dir.join(INDEX_FILE);
        if index_path.exists() {
            let expected = read_index(&index_path)?;
            let mut files: Vec<&String> = expected.values().collect();
            files.sort();
            files.dedup();
            let paths = files.iter().map(|f| dir.join(f)).collect();
            return Self::from_files(paths, Some((index_path, expected)));
        }
        let single = dir.join(SINGLE_FILE);
        if single.exists() {
            return Self::from_files(vec![single], None);
        }
        Err(Error::WeightFile {
            path: dir.to_path_buf(),
            message: format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory"),
        })
    }

    fn from_files(
        paths: Vec<PathBuf>,
        index: Option<(PathBuf, BTreeMap<String, String>)>,
    ) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut names = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only; a checkpoint modified while we read it may give wrong
            // values but cannot break memory safety of the slices we hand out (they stay mapped).
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let (data_start, tensors) = parse_header(path, &map)?;
            for name in tensors.keys() {
                if names.insert(name.clone(), i).is_some() {
                    return Err(Error::WeightFile {
                        path: path.clone(),
                        message: format!("tensor `{name}` appears in more than one shard"),
                    });
                }
            }
            shards.push(Shard {
                path: path.clone(),
                file,
                map,
                data_start,
                tensors,
            });
        }
        let location = match &index {
            Some((p, _)) => p.display().to_string(),
            None => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        if let Some((index_path, expected)) = index {
            check_index(&index_path, &expected, &names, &shards)?;
        }
        Ok(Self {
            shards,
            index: names,
            location,
        })
    }

    /// Where the checkpoint was read from (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn info(&self, name: &str) -> Result<(&Shard, &TensorEntry)> {
        let missing = || Error::MissingTensor {
            name: name.to_owned(),
            location: self.location.clone(),
        };
        let shard = self
            .index
            .get(name)
            .and_then(|&i| self.shards.get(i))
            .ok_or_else(missing)?;
        let entry = shard.tensors.get(name).ok_or_else(missing)?;
        Ok((shard, entry))
    }

    /// The shard file holding a tensor.
    pub fn path_of(&self, name: &str) -> Result<&Path> {
        Ok(self.info(name)?.0.path.as_path())
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name)?.1.shape.clone())
    }

    /// Stored dtype of a tensor (an error for dtypes other than F32/F16/BF16).
    pub fn dtype(&self, name: &str) -> Result<StoredDtype> {
        let (shard, entry) = self.info(name)?;
        match entry.dtype {
            Dtype::F32 => Ok(StoredDtype::F32),
            Dtype::F16 => Ok(StoredDtype::F16),
            Dtype::BF16 => Ok(StoredDtype::BF16),
            other => Err(Error::UnsupportedDtype {
                name: name.to_owned(),
                path: shard.path.clone(),
                dtype: format!("{other:?}"),
            }),
        }
    }

    /// Byte range of a tensor's data in its shard file.
    fn file_range(shard: &Shard, entry: &TensorEntry) -> std::ops::Range<usize> {
        shard.data_start + entry.offsets.0..shard.data_start + entry.offsets.1
    }

    /// The raw little-endian bytes of a tensor, borrowed from the map.
    pub fn raw(&self, name: &str) -> Result<&[u8]> {
        let (shard, entry) = self.info(name)?;
        shard
            .map
            .get(Self::file_range(shard, entry))
            .ok_or_else(|| Error::WeightFile {
                path: shard.path.clone(),
                message: format!("tensor `{name}` data lies outside the file (truncated?)"),
            })
    }

    /// A tensor converted to f32, checking its shape.
    pub fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (shard, entry) = self.info(name)?;
        if entry.shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                location: shard.path.display().to_string(),
                found: entry.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        let dtype = self.dtype(name)?;
        Ok(decode_f32(&self.read_raw(name)?, dtype))
    }

    /// A tensor's little-endian bytes, copied out of the file.
    ///
    /// A positioned read instead of touching the map: mapped pages would otherwise stay
    /// resident (and count in the process's RSS) for as long as the checkpoint is open, so a
    /// pass over a 15 GB checkpoint would appear to take 15 GB.
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>> {
        let raw = self.raw(name)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let (shard, entry) = self.info(name)?;
            let offset = Self::file_range(shard, entry).start as u64;
            let mut bytes = vec![0u8; raw.len()];
            shard
                .file
                .read_exact_at(&mut bytes, offset)
                .map_err(|e| Error::io(&shard.path, e))?;
            Ok(bytes)
        }
        #[cfg(not(unix))]
        Ok(raw.to_vec())
    }

    /// Dtype shared by the floating-point weights (the most common one).
    pub fn dominant_dtype(&self) -> Result<StoredDtype> {
        let mut counts: HashMap<&'static str, (StoredDtype, usize)> = HashMap::new();
        for name in self.index.keys() {
            let d = self.dtype(name)?;
            counts.entry(d.torch_name()).or_insert((d, 0)).1 += 1;
        }
        counts
            .into_values()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d)
            .ok_or_else(|| Error::WeightFile {
                path: PathBuf::from(&self.location),
                message: "checkpoint holds no tensors".into(),
            })
    }
}

/// Reads `model.safetensors.index.json`: tensor name -> shard file name.
fn read_index(index_path: &Path) -> Result<BTreeMap<String, String>> {
    let bad = |message: String| Error::WeightFile {
        path: index_path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index_path.to_path_buf(),
        source,
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("field `weight_map`: missing or not an object".into()))?;
    if map.is_empty() {
        return Err(bad("field `weight_map`: lists no tensors".into()));
    }
    let mut expected = BTreeMap::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("field `weight_map.{name}`: expected a file name")))?;
        // One normal path component: no folders, no `..`, no absolute or empty names.
        let mut parts = Path::new(file).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !plain || file.contains(['/', '\\']) {
            return Err(bad(format!(
                "field `weight_map.{name}`: shard `{file}` must be a plain file name"
            )));
        }
        expected.insert(name.clone(), file.to_owned());
    }
    Ok(expected)
}

/// Checks that the shards hold exactly the tensors the index lists, each in its listed file.
fn check_index(
    index_path: &Path,
    expected: &BTreeMap<String, String>,
    names: &BTreeMap<String, usize>,
    shards: &[Shard],
) -> Result<()> {
    for (name, file) in expected {
        match names.get(name) {
            Some(&i) if shards[i].path.file_name().and_then(|f| f.to_str()) == Some(file) => {}
            Some(&i) => {
                return Err(Error::WeightFile {
                    path: index_path.to_path_buf(),
                    message: format!(
                        "index puts `{name}` in {file}, but it is in {}",
                        shards[i].path.display()
                    ),
                })
            }
            None => {
                return Err(Error::MissingTensor {
                    name: name.clone(),
                    location: format!("{file} (listed in {})", index_path.display()),
                })
            }
        }
    }
    if let Some(extra) = names.keys().find(|n| !expected.contains_key(*n)) {
        return Err(Error::WeightFile {
            path: index_path.to_path_buf(),
            message: format!("tensor `{extra}` is in a shard but not in the index"),
        });
    }
    Ok(())
}

/// Parses and checks a safetensors header against the whole file `bytes`: returns where the
/// tensor data starts and the tensors. Errors name the byte offset or the tensor and field.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, HashMap<String, TensorEntry>)> {
    let bad = |message: String| Error::WeightFile {
        path: path.to_path_buf(),
        message,
    };
    let len_field: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            bad(format!(
                "not a safetensors file: {} bytes, too short for the 8-byte header length (truncated?)",
                bytes.len()
            ))
        })?;
    let n = u64::from_le_bytes(len_field);
    if n > MAX_HEADER_LEN {
        return Err(bad(format!(
            "header length {n} (bytes 0..8) exceeds the limit of {MAX_HEADER_LEN} bytes"
        )));
    }
    // n <= MAX_HEADER_LEN, so this neither truncates nor overflows.
    let data_start = 8 + n as usize;
    let header = bytes.get(8..data_start).ok_or_else(|| {
        bad(format!(
            "header length {n} (bytes 0..8) runs past the end of the {}-byte file (truncated?)",
            bytes.len()
        ))
    })?;
    let text = std::str::from_utf8(header).map_err(|e| {
        bad(format!(
            "header is not UTF-8 at byte offset {}",
            8 + e.valid_up_to()
        ))
    })?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| bad(format!("header JSON (from byte offset 8): {e}")))?;
    let mut tensors = HashMap::with_capacity(json.len());
    for (name, value) in json {
        if name == "__metadata__" {
            let strings = value
                .as_object()
                .is_some_and(|m| m.values().all(serde_json::Value::is_string));
            if !strings {
                return Err(bad(
                    "header field `__metadata__`: expected an object of strings".into(),
                ));
            }
            continue;
        }
        let entry = parse_entry(&value).map_err(|m| bad(format!("tensor `{name}`: {m}")))?;
        tensors.insert(name, entry);
    }
    check_layout(&tensors, data_start, bytes.len()).map_err(bad)?;
    Ok((data_start, tensors))
}

/// One header entry: `{"dtype": "F32", "shape": [..], "data_offsets": [start, end]}`, with
/// the byte count checked against dtype and shape.
fn parse_entry(value: &serde_json::Value) -> std::result::Result<TensorEntry, String> {
    let obj = value
        .as_object()
        .ok_or("expected an object with dtype, shape and data_offsets")?;
    let field = |key: &str| obj.get(key).ok_or(format!("field `{key}`: missing"));
    let dtype: Dtype = serde_json::from_value(field("dtype")?.clone())
        .map_err(|e| format!("field `dtype`: {e}"))?;
    let shape = field("shape")?
        .as_array()
        .and_then(|dims| dims.iter().map(as_usize).collect::<Option<Vec<_>>>())
        .ok_or("field `shape`: expected a list of non-negative integers")?;
    let offsets = match field("data_offsets")?.as_array().map(Vec::as_slice) {
        Some([s, e]) => as_usize(s).zip(as_usize(e)),
        _ => None,
    }
    .ok_or("field `data_offsets`: expected [start, end], two non-negative integers")?;
    if offsets.0 > offsets.1 {
        return Err(format!(
            "field `data_offsets`: start {} is after end {}",
            offsets.0, offsets.1
        ));
    }
    let bits = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.bitsize()))
        .ok_or_else(|| format!("shape {shape:?} of {dtype:?}: the byte size overflows"))?;
    if bits % 8 != 0 {
        return Err(format!(
            "shape {shape:?} of {dtype:?} is not a whole number of bytes"
        ));
    }
    let span = offsets.1 - offsets.0;
    if span != bits / 8 {
        return Err(format!(
            "shape {shape:?} of {dtype:?} needs {} bytes, but data_offsets [{}, {}] span {span}",
            bits / 8,
            offsets.0,
            offsets.1
        ));
    }
    Ok(TensorEntry {
        dtype,
        shape,
        offsets,
    })
}

fn as_usize(v: &serde_json::Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Checks that the tensors' data ranges tile the data section exactly: sorted by offset, each
/// starts where the previous ends, and the last ends at the end of the file.
fn check_layout(
    tensors: &HashMap<String, TensorEntry>,
    data_start: usize,
    file_len: usize,
) -> std::result::Result<(), String> {
    let mut sorted: Vec<(&String, &TensorEntry)> = tensors.iter().collect();
    sorted.sort_by(|a, b| (a.1.offsets, a.0).cmp(&(b.1.offsets, b.0)));
    let data_len = file_len - data_start;
    if let Some((name, entry)) = sorted.iter().find(|(_, t)| t.offsets.1 > data_len) {
        let (s, e) = entry.offsets;
        return Err(format!(
            "tensor `{name}`: data_offsets [{s}, {e}] run past the end of the data ({data_len} bytes from byte offset {data_start}; truncated?)"
        ));
    }
    let mut end = 0usize;
    let mut previous: Option<&str> = None;
    for (name, entry) in sorted {
        let (s, e) = entry.offsets;
        if s != end {
            let what = match previous {
                Some(p) if s < end => format!("overlap tensor `{p}`, which ends at {end}"),
                Some(p) => format!("leave a gap after tensor `{p}`, which ends at {end}"),
                None => "leave a gap at the start of the data".to_owned(),
            };
            return Err(format!("tensor `{name}`: data_offsets [{s}, {e}] {what}"));
        }
        end = e;
        previous = Some(name);
    }
    if end != data_len {
        return Err(format!(
            "the tensors' data ends at byte offset {} but the file has {file_len} bytes",
            data_start + end
        ));
    }
    Ok(())
}

/// Converts little-endian F32/F16/BF16 bytes to f32.
pub fn decode_f32(raw: &[u8], dtype: StoredDtype) -> Vec<f32> {
    match dtype {
        StoredDtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StoredDtype::F16 => raw
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StoredDtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Converts f32 values to little-endian bytes of `dtype` (round to nearest even).
pub fn encode_f32(values: &[f32], dtype: StoredDtype) -> Vec<u8> {
    match dtype {
        StoredDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        StoredDtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        StoredDtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}
