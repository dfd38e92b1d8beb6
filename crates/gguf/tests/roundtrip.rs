//! Write → read round trips, writer guarantees, and independent parsing by PyPI `gguf`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{gguf_python, Gen, TinyLlama};
use serde_json::json;
use tb_gguf::codec;
use tb_gguf::{Array, Error, GgmlType, GgufFile, GgufWriter, Metadata, TensorSpec, Value};

const CODECS: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn all_types_metadata() -> Metadata {
    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("test.u8", Value::U8(200));
    md.set("test.i8", Value::I8(-100));
    md.set("test.u16", Value::U16(60000));
    md.set("test.i16", Value::I16(-30000));
    md.set("test.u32", Value::U32(4_000_000_000));
    md.set("test.i32", Value::I32(-2_000_000_000));
    md.set("test.f32", Value::F32(0.1));
    md.set("test.bool", Value::Bool(true));
    md.set(
        "test.string",
        Value::String("merhaba dünya ▁ <|im_start|>".into()),
    );
    md.set("test.u64", Value::U64(u64::MAX - 1));
    md.set("test.i64", Value::I64(i64::MIN + 1));
    md.set("test.f64", Value::F64(-1.0e300));
    md.set("test.arr.u8", Value::Array(Array::U8(vec![0, 1, 255])));
    md.set("test.arr.i8", Value::Array(Array::I8(vec![-128, 0, 127])));
    md.set("test.arr.u16", Value::Array(Array::U16(vec![1, 65535])));
    md.set("test.arr.i16", Value::Array(Array::I16(vec![-1, 2])));
    md.set("test.arr.u32", Value::Array(Array::U32(vec![7, 8, 9])));
    md.set(
        "test.arr.i32",
        Value::Array(Array::I32(vec![1, 2, 3, 6, -5])),
    );
    md.set(
        "test.arr.f32",
        Value::Array(Array::F32(vec![0.5, -1.25, 1e-30])),
    );
    md.set(
        "test.arr.bool",
        Value::Array(Array::Bool(vec![true, false, true])),
    );
    md.set(
        "test.arr.string",
        Value::Array(Array::String(vec!["a".into(), "".into(), "çğış".into()])),
    );
    md.set("test.arr.u64", Value::Array(Array::U64(vec![u64::MAX])));
    md.set("test.arr.i64", Value::Array(Array::I64(vec![-9])));
    md.set("test.arr.f64", Value::Array(Array::F64(vec![3.5])));
    md.set("test.arr.empty", Value::Array(Array::U32(vec![])));
    md
}

struct Written {
    bytes: Vec<u8>,
    tensors: Vec<(TensorSpec, Vec<f32>)>,
}

fn write_all_codecs(path: Option<&std::path::Path>) -> Written {
    let mut g = Gen::new(11);
    let mut tensors = Vec::new();
    for (i, ty) in CODECS.iter().enumerate() {
        let ne = vec![512u64, 3];
        let data = g.vec(512 * 3, |g| g.normal());
        tensors.push((
            TensorSpec::new(format!("t{i}.{}", ty.name()), *ty, ne),
            data,
        ));
    }
    tensors.push((
        TensorSpec::new("vec.f32", GgmlType::F32, vec![7u64]),
        g.vec(7, |g| g.normal()),
    ));
    tensors.push((
        TensorSpec::new("cube.q8_0", GgmlType::Q8_0, vec![64u64, 3, 2]),
        g.vec(384, |g| g.normal()),
    ));
    let mut w = GgufWriter::new(all_types_metadata()).expect("writer");
    for (spec, _) in &tensors {
        w.add_tensor(spec.clone()).expect("add");
    }
    let fill = |i: usize, _: &TensorSpec, sink: &mut tb_gguf::TensorSink<'_>| {
        // feed in two pieces to exercise partial writes
        let v = &tensors[i].1;
        let bs = tensors[i].0.ty.block_size();
        let half = v.len() / bs / 2 * bs;
        sink.write_f32(&v[..half])?;
        sink.write_f32(&v[half..])
    };
    let bytes = w.write_to_vec(fill).expect("write_to_vec");
    assert_eq!(bytes.len() as u64, w.file_size().expect("size"));
    if let Some(p) = path {
        let n = w.write_to_file(p, fill).expect("write_to_file");
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(
            std::fs::read(p).expect("read"),
            bytes,
            "file and vec writers agree"
        );
    }
    Written { bytes, tensors }
}

#[test]
fn round_trip_every_value_type_and_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("all.gguf");
    let written = write_all_codecs(Some(&path));
    for f in [
        GgufFile::open(&path).expect("open"),
        GgufFile::from_bytes(written.bytes.clone()).expect("parse"),
    ] {
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset() % 32, 0);
        let mut want = all_types_metadata();
        want.set("general.alignment", 32u32);
        let got: Vec<_> = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let exp: Vec<_> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, exp);
        assert_eq!(f.metadata().get("general.alignment"), Some(&Value::U32(32)));
        assert_eq!(f.tensors().len(), written.tensors.len());
        let mut expected_offset = 0;
        for (info, (spec, data)) in f.tensors().iter().zip(&written.tensors) {
            assert_eq!(info.name, spec.name);
            assert_eq!(info.ty, spec.ty);
            assert_eq!(info.ne, spec.ne);
            assert_eq!(info.offset, expected_offset, "contiguous, in info order");
            assert_eq!(info.file_offset % 32, 0);
            expected_offset += info.size.div_ceil(32) * 32;
            let encoded = codec::quantize_to_vec(spec.ty, data).expect("q");
            assert_eq!(f.tensor_data(&spec.name).expect("data"), &encoded[..]);
            let deq = codec::dequantize_to_vec(spec.ty, &encoded).expect("dq");
            assert_eq!(f.tensor_f32(&spec.name).expect("f32"), deq);
        }
        // padding after the last tensor
        assert_eq!(f.as_bytes().len() as u64 % 32, 0);
        assert!(matches!(f.tensor("nope"), Err(Error::TensorNotFound(_))));
    }
}

#[test]
fn versions_1_and_2_are_read() {
    // v2 has the v3 layout
    let mut v2 = write_all_codecs(None).bytes;
    v2[4] = 2;
    let f = GgufFile::from_bytes(v2).expect("v2");
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensors().len(), 13);
    // v1: u32 counts, lengths and dims
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // tensors
    b.extend_from_slice(&2u32.to_le_bytes()); // kvs
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    s(&mut b, "general.name");
    b.extend_from_slice(&8u32.to_le_bytes());
    s(&mut b, "old");
    s(&mut b, "list");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&2u32.to_le_bytes());
    s(&mut b, "x");
    s(&mut b, "yz");
    s(&mut b, "w");
    b.extend_from_slice(&1u32.to_le_bytes()); // n_dims
    b.extend_from_slice(&4u32.to_le_bytes()); // ne0
    b.extend_from_slice(&0u32.to_le_bytes()); // F32
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    while b.len() % 32 != 0 {
        b.push(0);
    }
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let f = GgufFile::from_bytes(b).expect("v1");
    assert_eq!(f.version(), 1);
    assert_eq!(f.metadata().get_str("general.name").expect("name"), "old");
    assert_eq!(
        f.metadata().get_str_array("list").expect("list"),
        ["x", "yz"]
    );
    assert_eq!(f.tensor_f32("w").expect("w"), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn writer_never_leaves_partial_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("out.gguf");
    let mut w = GgufWriter::new(Metadata::new()).expect("writer");
    w.add_tensor(TensorSpec::new("a", GgmlType::F32, vec![32u64]))
        .expect("a");
    w.add_tensor(TensorSpec::new("b", GgmlType::Q8_0, vec![32u64, 2]))
        .expect("b");
    // producer error on the second tensor
    let err = w
        .write_to_file(&dest, |i, _, sink| {
            if i == 1 {
                return Err(Error::InvalidArgument("boom".into()));
            }
            sink.write_f32(&[0.5; 32])
        })
        .unwrap_err();
    assert!(err.to_string().contains("boom"));
    // producer writes too little / too much
    let err = w
        .write_to_file(&dest, |_, _, sink| sink.write_bytes(&[0u8; 4]))
        .unwrap_err();
    assert!(err.to_string().contains("expected 128"), "{err}");
    let err = w
        .write_to_file(&dest, |_, _, sink| sink.write_bytes(&[0u8; 1000]))
        .unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // an existing destination survives a failed write untouched
    std::fs::write(&dest, b"old").expect("write");
    assert!(w.write_to_file(&dest, |_, _, _| Ok(())).is_err());
    assert_eq!(std::fs::read(&dest).expect("read"), b"old");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
}

#[test]
fn writer_rejects_bad_tensor_tables() {
    let mut w = GgufWriter::new(Metadata::new()).expect("writer");
    w.add_tensor(TensorSpec::new("a", GgmlType::F32, vec![4u64]))
        .expect("a");
    assert!(w
        .add_tensor(TensorSpec::new("a", GgmlType::F32, vec![4u64]))
        .is_err());
    assert!(w
        .add_tensor(TensorSpec::new("b", GgmlType::Q4_K, vec![255u64]))
        .is_err());
    assert!(w
        .add_tensor(TensorSpec::new("c".repeat(64), GgmlType::F32, vec![1u64]))
        .is_err());
    assert!(w
        .add_tensor(TensorSpec::new("d", GgmlType::F32, vec![1u64; 5]))
        .is_err());
    let mut md = Metadata::new();
    md.set("general.alignment", Value::U64(32));
    assert!(GgufWriter::new(md).is_err());
    let mut md = Metadata::new();
    md.set("general.alignment", 48u32);
    assert!(GgufWriter::new(md).is_err());
}

#[test]
fn llama_metadata_getters_on_a_model_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.gguf");
    let m = TinyLlama {
        n_embd: 64,
        n_ff: 128,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 300,
        tied: true,
        weight_type: GgmlType::BF16,
        seed: 3,
    };
    m.write(&path);
    let f = GgufFile::open(&path).expect("open");
    let md = f.metadata();
    assert_eq!(md.get_u32("llama.block_count").expect("n_layer"), 2);
    assert_eq!(
        md.get_f32("llama.attention.layer_norm_rms_epsilon")
            .expect("eps"),
        1e-5
    );
    assert!(md.get_bool("tokenizer.ggml.add_bos_token").expect("bos"));
    assert_eq!(
        md.get_str_array("tokenizer.ggml.tokens")
            .expect("tokens")
            .len(),
        300
    );
    assert_eq!(
        md.get_f32_array("tokenizer.ggml.scores")
            .expect("scores")
            .len(),
        300
    );
    assert_eq!(
        md.get_i32_array("tokenizer.ggml.token_type")
            .expect("types")[3],
        6
    );
    assert_eq!(md.opt_u32("llama.expert_count").expect("opt"), None);
    let e = md.get_u32("tokenizer.ggml.tokens").unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("array of string"),
        "{e}"
    );
    let emb = f.tensor("token_embd.weight").expect("emb");
    assert_eq!(
        (emb.ty, emb.ne.clone(), emb.shape()),
        (GgmlType::BF16, vec![64, 300], vec![300, 64])
    );
    let v = f.tensor_f32("token_embd.weight").expect("f32");
    let src = &m.tensors()[0].3;
    assert_eq!(v.len(), src.len());
    // bf16 keeps 8 bits of mantissa
    assert!(v
        .iter()
        .zip(src)
        .all(|(a, b)| (a - b).abs() <= b.abs() / 128.0));
}

fn type_name(v: &Value) -> (&'static str, Option<&'static str>) {
    let n = |t: tb_gguf::ValueType| match t {
        tb_gguf::ValueType::U8 => "UINT8",
        tb_gguf::ValueType::I8 => "INT8",
        tb_gguf::ValueType::U16 => "UINT16",
        tb_gguf::ValueType::I16 => "INT16",
        tb_gguf::ValueType::U32 => "UINT32",
        tb_gguf::ValueType::I32 => "INT32",
        tb_gguf::ValueType::F32 => "FLOAT32",
        tb_gguf::ValueType::Bool => "BOOL",
        tb_gguf::ValueType::String => "STRING",
        tb_gguf::ValueType::Array => "ARRAY",
        tb_gguf::ValueType::U64 => "UINT64",
        tb_gguf::ValueType::I64 => "INT64",
        tb_gguf::ValueType::F64 => "FLOAT64",
    };
    match v {
        Value::Array(a) => ("ARRAY", Some(n(a.elem_type()))),
        v => (n(v.value_type()), None),
    }
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(*x as f64),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(Array::String(a)) => json!(a),
        Value::Array(Array::I32(a)) => json!(a),
        Value::Array(Array::F32(a)) => json!(a.iter().map(|&x| x as f64).collect::<Vec<_>>()),
        _ => serde_json::Value::Null,
    }
}

fn check_with_gguf_py(path: &std::path::Path, work: &std::path::Path) {
    let f = GgufFile::open(path).expect("open");
    let mut kv = Vec::new();
    for (k, v) in f.metadata().iter() {
        let (t, e) = type_name(v);
        let mut e = e;
        if v.as_array().is_some_and(|a| a.is_empty()) {
            // gguf-py records no element type for an empty array
            e = None;
        }
        kv.push(json!([k, t, e, json_value(v)]));
    }
    let mut tensors = Vec::new();
    for t in f.tensors() {
        let raw = work.join(format!("{}.f32", t.name));
        let v = f.tensor_f32(&t.name).expect("f32");
        std::fs::write(&raw, bytemuck::cast_slice::<f32, u8>(&v)).expect("write raw");
        tensors.push(json!({
            "name": t.name,
            "type": t.ty.name().to_ascii_uppercase(),
            "shape": t.shape(),
            "f32": raw,
        }));
    }
    let exp = json!({"path": path, "version": f.version(), "alignment": f.alignment(), "kv": kv, "tensors": tensors});
    let exp_path = work.join("expect.json");
    std::fs::write(&exp_path, serde_json::to_vec(&exp).expect("json")).expect("write json");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_py_check.py");
    let out = Command::new(gguf_python())
        .arg(&script)
        .arg(&exp_path)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "gguf-py check failed on {}:\n{text}",
        path.display()
    );
    assert!(text.contains("0 problems"), "{text}");
}

#[test]
fn gguf_py_parses_and_dequantizes_our_files_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = dir.path().join("all.gguf");
    write_all_codecs(Some(&all));
    check_with_gguf_py(&all, dir.path());

    let model = dir.path().join("model.gguf");
    TinyLlama {
        n_embd: 256,
        n_ff: 512,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 320,
        tied: false,
        weight_type: GgmlType::F16,
        seed: 9,
    }
    .write(&model);
    let q = dir.path().join("model-q4km.gguf");
    tb_gguf::quantize_gguf(&model, &q, tb_gguf::QuantMix::Q4_K_M, 2).expect("quantize");
    let sub = dir.path().join("q");
    std::fs::create_dir(&sub).expect("mkdir");
    check_with_gguf_py(&q, &sub);
    let types: BTreeMap<_, _> = GgufFile::open(&q)
        .expect("open")
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.ty))
        .collect();
    assert_eq!(types["output.weight"], GgmlType::Q6_K);
}
