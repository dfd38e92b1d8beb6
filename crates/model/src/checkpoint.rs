//! HF safetensors checkpoints: single file or sharded (`model.safetensors.index.json`),
//! memory-mapped, F32/F16/BF16.
//!
//! Opening a checkpoint maps the shards and parses their headers only; tensor data is converted
//! to f32 one tensor at a time when asked for, so a 15 GB bf16 checkpoint is never held in RAM
//! twice (the pages of the map are the OS's cache, not our heap).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorInfo};

use crate::error::{Error, Result};

/// Name of the shard index file written by `save_pretrained`.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

struct Shard {
    path: PathBuf,
    /// The open file, for [`SafetensorsCheckpoint::tensor_f32`]'s positioned reads.
    file: File,
    map: Mmap,
    header_len: usize,
    metadata: Metadata,
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
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if dir.is_file() {
            return Self::from_files(vec![dir.to_path_buf()], None);
        }
        let index_path = dir.join(INDEX_FILE);
        if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: index_path.clone(),
                    source,
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::WeightFile {
                    path: index_path.clone(),
                    message: "field `weight_map`: missing or not an object".into(),
                })?;
            let mut files: Vec<String> = Vec::new();
            let mut expected = BTreeMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| Error::WeightFile {
                    path: index_path.clone(),
                    message: format!("field `weight_map.{name}`: expected a file name"),
                })?;
                if file.contains('/') || file.contains("..") {
                    return Err(Error::WeightFile {
                        path: index_path.clone(),
                        message: format!(
                            "field `weight_map.{name}`: shard `{file}` must be a plain file name"
                        ),
                    });
                }
                if !files.iter().any(|f| f == file) {
                    files.push(file.to_owned());
                }
                expected.insert(name.clone(), file.to_owned());
            }
            files.sort();
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
            let (header_len, metadata) =
                SafeTensors::read_metadata(&map).map_err(|e| Error::WeightFile {
                    path: path.clone(),
                    message: format!("not a valid safetensors file: {e}"),
                })?;
            for name in metadata.tensors().keys() {
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
                header_len,
                metadata,
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
            for (name, file) in &expected {
                match names.get(name) {
                    Some(&i)
                        if shards[i].path.file_name().and_then(|f| f.to_str()) == Some(file) => {}
                    Some(&i) => {
                        return Err(Error::WeightFile {
                            path: index_path,
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
                    path: index_path,
                    message: format!("tensor `{extra}` is in a shard but not in the index"),
                });
            }
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

    fn info(&self, name: &str) -> Result<(&Shard, &TensorInfo)> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_owned(),
                location: self.location.clone(),
            })?;
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_owned(),
                location: shard.path.display().to_string(),
            })?;
        Ok((shard, info))
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name)?.1.shape.clone())
    }

    /// Stored dtype of a tensor (an error for dtypes other than F32/F16/BF16).
    pub fn dtype(&self, name: &str) -> Result<StoredDtype> {
        let (shard, info) = self.info(name)?;
        match info.dtype {
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

    /// The raw little-endian bytes of a tensor, borrowed from the map.
    pub fn raw(&self, name: &str) -> Result<&[u8]> {
        let (shard, info) = self.info(name)?;
        let (start, end) = info.data_offsets;
        let base = 8 + shard.header_len;
        shard
            .map
            .get(base + start..base + end)
            .ok_or_else(|| Error::WeightFile {
                path: shard.path.clone(),
                message: format!("tensor `{name}` data lies outside the file (truncated?)"),
            })
    }

    /// A tensor converted to f32, checking its shape.
    pub fn tensor_f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let shape = self.shape(name)?;
        if shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                found: shape,
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
            let (shard, info) = self.info(name)?;
            let offset = (8 + shard.header_len + info.data_offsets.0) as u64;
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
