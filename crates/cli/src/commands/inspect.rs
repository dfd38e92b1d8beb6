//! `tunebench inspect FILE.gguf [--json]`: metadata (long arrays summarised), the tensor table
//! (name, type, shape, bytes) and totals.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value as Json};
use tb_gguf::{Array, GgufFile, Value};

/// Arrays longer than this are summarised (length + first elements).
const ARRAY_HEAD: usize = 8;

/// Arguments of `inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn array_json(a: &Array) -> (usize, Vec<Json>) {
    fn head<T: Clone + Into<Json>>(v: &[T]) -> Vec<Json> {
        v.iter().take(ARRAY_HEAD).cloned().map(Into::into).collect()
    }
    let items = match a {
        Array::U8(v) => head(v),
        Array::I8(v) => head(v),
        Array::U16(v) => head(v),
        Array::I16(v) => head(v),
        Array::U32(v) => head(v),
        Array::I32(v) => head(v),
        Array::F32(v) => head(v),
        Array::Bool(v) => head(v),
        Array::String(v) => head(v),
        Array::U64(v) => head(v),
        Array::I64(v) => head(v),
        Array::F64(v) => head(v),
    };
    (a.len(), items)
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => {
            let (len, items) = array_json(a);
            if len <= ARRAY_HEAD {
                Json::Array(items)
            } else {
                json!({"len": len, "head": items})
            }
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let one_line = s.replace('\n', "\\n");
            if one_line.chars().count() > 120 {
                let cut: String = one_line.chars().take(117).collect();
                format!("{cut:?}... ({} chars)", s.chars().count())
            } else {
                format!("{one_line:?}")
            }
        }
        Value::Array(a) => {
            let (len, items) = array_json(a);
            let shown: Vec<String> = items.iter().map(Json::to_string).collect();
            if len <= ARRAY_HEAD {
                format!("[{}]", shown.join(", "))
            } else {
                format!("[{}, ...] ({len} elements)", shown.join(", "))
            }
        }
        other => value_json(other).to_string(),
    }
}

/// Prints the file's metadata and tensor table.
pub fn run_inspect(args: InspectArgs) -> Result<()> {
    let f =
        GgufFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let total_bytes: u64 = f.tensors().iter().map(|t| t.size).sum();
    let total_elems: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    let mut by_type: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in f.tensors() {
        let e = by_type.entry(t.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.size;
    }
    let file_size = f.as_bytes().len() as u64;
    if args.json {
        let metadata: Vec<Json> = f
            .metadata()
            .iter()
            .map(|(k, v)| json!({"key": k, "type": v.type_description(), "value": value_json(v)}))
            .collect();
        let tensors: Vec<Json> = f
            .tensors()
            .iter()
            .map(|t| json!({"name": t.name, "type": t.ty.name(), "shape": t.shape(), "ne": t.ne, "bytes": t.size}))
            .collect();
        let types: BTreeMap<&String, Json> = by_type
            .iter()
            .map(|(k, (n, b))| (k, json!({"tensors": n, "bytes": b})))
            .collect();
        let doc = json!({
            "file": args.file, "version": f.version(), "alignment": f.alignment(),
            "file_bytes": file_size, "metadata": metadata, "tensors": tensors,
            "totals": {"tensors": f.tensors().len(), "elements": total_elems, "bytes": total_bytes, "by_type": types},
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{}: GGUF v{}, alignment {}, {} bytes",
        args.file.display(),
        f.version(),
        f.alignment(),
        file_size
    );
    println!("\nmetadata ({} keys):", f.metadata().len());
    for (k, v) in f.metadata().iter() {
        println!("  {k:<44} {:<16} {}", v.type_description(), value_text(v));
    }
    let width = f
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("\ntensors ({}):", f.tensors().len());
    println!(
        "  {:<width$}  {:<6}  {:<20}  {:>12}",
        "name", "type", "shape", "bytes"
    );
    for t in f.tensors() {
        let shape = format!("{:?}", t.shape());
        println!(
            "  {:<width$}  {:<6}  {shape:<20}  {:>12}",
            t.name,
            t.ty.name(),
            t.size
        );
    }
    println!(
        "\ntotals: {} tensors, {total_elems} elements, {total_bytes} bytes of tensor data",
        f.tensors().len()
    );
    for (ty, (n, b)) in &by_type {
        println!("  {ty:<6} {n:>5} tensors {b:>14} bytes");
    }
    Ok(())
}
