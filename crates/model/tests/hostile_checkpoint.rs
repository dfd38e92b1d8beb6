//! Hostile safetensors checkpoints: every malformed header, offset table, truncation and shard
//! index is an error naming the file and the position (byte offset, tensor and field), never a
//! panic; a deterministic mutation campaign over single and sharded checkpoints checks that
//! `open` and every accessor afterwards hold to that.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde_json::{json, Map, Value};
use tb_model::checkpoint::{SafetensorsCheckpoint, INDEX_FILE, SINGLE_FILE};
use tb_testkit::mutation::{mutate_bytes, panic_message, Rng, EXTREME_U64};

/// (name, dtype, shape) of the tensors of the test checkpoint: the three loadable dtypes, an
/// empty tensor and an integer one the loader lists but refuses to convert.
const TENSORS: &[(&str, &str, &[usize])] = &[
    ("a.weight", "F32", &[2, 3]),
    ("b.weight", "F16", &[4]),
    ("c.weight", "BF16", &[2, 2]),
    ("d.bias", "F32", &[0]),
    ("e.ids", "I64", &[2]),
];

fn dtype_size(dtype: &str) -> usize {
    match dtype {
        "F32" => 4,
        "F16" | "BF16" => 2,
        _ => 8,
    }
}

/// A header for `tensors`, laid out back to back, and the matching data.
fn header_and_data(tensors: &[(&str, &str, &[usize])]) -> (Value, Vec<u8>) {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, dtype, shape) in tensors {
        let n = shape.iter().product::<usize>() * dtype_size(dtype);
        let start = data.len();
        data.extend((0..n).map(|i| (i * 37 + start) as u8));
        header.insert(
            (*name).into(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    (Value::Object(header), data)
}

/// A safetensors file: 8-byte header length, the header (space-padded to 8 bytes), the data.
fn file_bytes(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut text = header.to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&text);
    bytes.extend_from_slice(data);
    bytes
}

fn single_file() -> Vec<u8> {
    let (h, d) = header_and_data(TENSORS);
    file_bytes(&h, &d)
}

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// The two shards and the index of a sharded checkpoint.
fn sharded() -> (Vec<u8>, Vec<u8>, Value) {
    let (h1, d1) = header_and_data(&TENSORS[..2]);
    let (h2, d2) = header_and_data(&TENSORS[2..]);
    let mut map = Map::new();
    for (i, (name, _, _)) in TENSORS.iter().enumerate() {
        let shard = if i < 2 { SHARDS[0] } else { SHARDS[1] };
        map.insert((*name).into(), json!(shard));
    }
    let index = json!({"metadata": {"total_size": 56}, "weight_map": map});
    (file_bytes(&h1, &d1), file_bytes(&h2, &d2), index)
}

const SHARDS: [&str; 2] = [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];

fn write_sharded(dir: &Path, s1: &[u8], s2: &[u8], index: &[u8]) {
    std::fs::write(dir.join(SHARDS[0]), s1).unwrap();
    std::fs::write(dir.join(SHARDS[1]), s2).unwrap();
    std::fs::write(dir.join(INDEX_FILE), index).unwrap();
}

/// Opens `dir` and reads every tensor every way a caller can. Returns whether it opened and
/// every error met on the way.
fn exercise(dir: &Path) -> (bool, Vec<String>) {
    let ck = match SafetensorsCheckpoint::open(dir) {
        Ok(ck) => ck,
        Err(e) => return (false, vec![e.to_string()]),
    };
    let mut errors = Vec::new();
    let names: Vec<String> = ck.names().map(str::to_owned).collect();
    for name in &names {
        assert!(ck.contains(name));
        let shape = match ck.shape(name) {
            Ok(s) => s,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let dtype = ck.dtype(name).map_err(|e| errors.push(e.to_string())).ok();
        match (ck.raw(name), ck.read_raw(name)) {
            (Ok(mapped), Ok(read)) => assert_eq!(mapped, &read[..], "{name}: map and read differ"),
            (r1, r2) => errors.extend(r1.err().into_iter().chain(r2.err()).map(|e| e.to_string())),
        }
        match ck.tensor_f32(name, &shape) {
            Ok(v) => {
                assert!(dtype.is_some(), "{name}: converted an unsupported dtype");
                assert_eq!(v.len(), shape.iter().product::<usize>(), "{name}");
            }
            Err(e) => errors.push(e.to_string()),
        }
        let wrong: Vec<usize> = shape.iter().copied().chain([3]).collect();
        match ck.tensor_f32(name, &wrong) {
            Ok(_) => panic!("{name}: shape {shape:?} accepted as {wrong:?}"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Err(e) = ck.dominant_dtype() {
        errors.push(e.to_string());
    }
    match ck.shape("no.such.tensor") {
        Ok(_) => panic!("a tensor that is not there has a shape"),
        Err(e) => errors.push(e.to_string()),
    }
    (true, errors)
}

/// The error of opening (or reading) a checkpoint that must fail.
fn open_err(dir: &Path) -> String {
    match SafetensorsCheckpoint::open(dir) {
        Err(e) => e.to_string(),
        Ok(_) => {
            let (_, errors) = exercise(dir);
            panic!("{} opened; accessor errors {errors:?}", dir.display())
        }
    }
}

fn single_err(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(SINGLE_FILE), bytes).unwrap();
    let e = open_err(tmp.path());
    assert!(e.contains(SINGLE_FILE), "the error names the file: {e}");
    e
}

/// `single_file()` with the header edited by `edit` (and the header length rewritten).
fn with_header(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let (mut h, d) = header_and_data(TENSORS);
    edit(h.as_object_mut().unwrap());
    file_bytes(&h, &d)
}

#[test]
fn valid_checkpoints_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(SINGLE_FILE), single_file()).unwrap();
    let (opened, errors) = exercise(tmp.path());
    assert!(opened);
    // Only the I64 tensor's conversions, the wrong shapes and the missing name fail.
    assert_eq!(errors.len(), 3 + TENSORS.len() + 1, "{errors:?}");
    let ck = SafetensorsCheckpoint::open(tmp.path()).unwrap();
    assert_eq!(ck.tensor_f32("b.weight", &[4]).unwrap().len(), 4);
    assert!(ck.dtype("e.ids").unwrap_err().to_string().contains("I64"));

    let tmp = tempfile::tempdir().unwrap();
    let (s1, s2, index) = sharded();
    write_sharded(tmp.path(), &s1, &s2, index.to_string().as_bytes());
    assert!(exercise(tmp.path()).0);

    // JSON order does not matter: only the offsets must tile the data.
    let (h, d) = header_and_data(TENSORS);
    let mut reversed: Vec<(String, Value)> = h.as_object().unwrap().clone().into_iter().collect();
    reversed.reverse();
    let text = format!(
        "{{{}}}",
        reversed
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&d);
    std::fs::write(tmp.path().join("reversed.safetensors"), bytes).unwrap();
    SafetensorsCheckpoint::open(tmp.path().join("reversed.safetensors")).unwrap();
}

#[test]
fn header_length_and_truncation_name_the_byte_offset() {
    let base = single_file();
    let n = header_len(&base);
    for len in [u64::MAX, 1 << 40, 100_000_001] {
        let mut b = base.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        let e = single_err(&b);
        assert!(
            e.contains(&format!("header length {len} (bytes 0..8)")),
            "{e}"
        );
    }
    // Lengths that cut the JSON short or run into the data fail as JSON or layout errors.
    for len in [0, 1, n as u64 - 1, n as u64 + 1, n as u64 + 8] {
        let mut b = base.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        let e = single_err(&b);
        assert!(e.contains("header") || e.contains("data"), "{len}: {e}");
    }
    for cut in 0..base.len() {
        let e = single_err(&base[..cut]);
        let named = match cut {
            0..8 => e.contains("too short for the 8-byte header length"),
            _ if cut < 8 + n => e.contains("runs past the end of the"),
            _ => e.contains("run past the end of the data") && e.contains("tensor `"),
        };
        assert!(named, "cut {cut}: {e}");
    }
    let mut b = base.clone();
    b.push(0);
    let e = single_err(&b);
    assert!(e.contains("data ends at byte offset"), "{e}");
}

/// An edit of a parsed header.
type HeaderEdit = Box<dyn FnOnce(&mut Map<String, Value>)>;

#[test]
fn header_fields_name_the_tensor_and_field() {
    let cases: Vec<(HeaderEdit, &str)> = vec![
        (
            Box::new(|h| h["a.weight"]["dtype"] = json!("F33")),
            "tensor `a.weight`: field `dtype`: unknown variant `F33`",
        ),
        (
            Box::new(|h| h["a.weight"]["dtype"] = json!(4)),
            "tensor `a.weight`: field `dtype`: invalid type",
        ),
        (
            Box::new(|h| h["b.weight"]["shape"] = json!([-4])),
            "tensor `b.weight`: field `shape`: expected a list of non-negative integers",
        ),
        (
            Box::new(|h| h["b.weight"]["shape"] = json!([1u64 << 40, 1u64 << 40])),
            "tensor `b.weight`: shape [1099511627776, 1099511627776] of F16: the byte size overflows",
        ),
        (
            Box::new(|h| h["b.weight"]["shape"] = json!([u64::MAX])),
            "tensor `b.weight`: shape [18446744073709551615] of F16: the byte size overflows",
        ),
        (
            Box::new(|h| h["b.weight"]["shape"] = json!([5])),
            "tensor `b.weight`: shape [5] of F16 needs 10 bytes, but data_offsets [24, 32] span 8",
        ),
        (
            Box::new(|h| h["c.weight"]["data_offsets"] = json!([40, 32])),
            "tensor `c.weight`: field `data_offsets`: start 40 is after end 32",
        ),
        (
            Box::new(|h| h["c.weight"]["data_offsets"] = json!([32])),
            "tensor `c.weight`: field `data_offsets`: expected [start, end]",
        ),
        (
            Box::new(|h| h["c.weight"]["data_offsets"] = json!([u64::MAX - 8, u64::MAX])),
            "tensor `c.weight`: data_offsets [18446744073709551607, 18446744073709551615] run past the end of the data",
        ),
        (
            Box::new(|h| h["c.weight"]["data_offsets"] = json!([28, 36])),
            "tensor `c.weight`: data_offsets [28, 36] overlap tensor `b.weight`, which ends at 32",
        ),
        (
            Box::new(|h| h["a.weight"]["data_offsets"] = json!([8, 32])),
            "tensor `a.weight`: data_offsets [8, 32] leave a gap at the start of the data",
        ),
        (
            Box::new(|h| {
                h.remove("e.ids");
            }),
            "data ends at byte offset",
        ),
        (
            Box::new(|h| {
                h["a.weight"].as_object_mut().unwrap().remove("shape");
            }),
            "tensor `a.weight`: field `shape`: missing",
        ),
        (
            Box::new(|h| h["a.weight"] = json!([1, 2])),
            "tensor `a.weight`: expected an object",
        ),
        (
            Box::new(|h| h["__metadata__"] = json!({"format": 1})),
            "header field `__metadata__`",
        ),
    ];
    for (edit, want) in cases {
        let e = single_err(&with_header(edit));
        assert!(e.contains(want), "want {want:?}, got {e}");
    }
    // Not UTF-8, not JSON, not an object: byte offsets or the JSON position.
    let base = single_file();
    let mut b = base.clone();
    b[20] = 0xFF;
    let e = single_err(&b);
    assert!(e.contains("header is not UTF-8 at byte offset 20"), "{e}");
    let mut b = base.clone();
    b[8] = b'[';
    let e = single_err(&b);
    assert!(
        e.contains("header JSON (from byte offset 8)") && e.contains("column"),
        "{e}"
    );
    let mut text = b"[1, 2, 3]".to_vec();
    text.resize(16, b' ');
    let mut b = 16u64.to_le_bytes().to_vec();
    b.extend_from_slice(&text);
    let e = single_err(&b);
    assert!(e.contains("expected a map"), "{e}");
}

#[test]
fn shard_index_problems_name_the_file() {
    let (s1, s2, index) = sharded();
    let run = |edit: &dyn Fn(&mut Value) -> Option<Vec<u8>>, remove: Option<&str>| {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx = index.clone();
        let text = edit(&mut idx).unwrap_or_else(|| idx.to_string().into_bytes());
        write_sharded(tmp.path(), &s1, &s2, &text);
        if let Some(f) = remove {
            std::fs::remove_file(tmp.path().join(f)).unwrap();
        }
        open_err(tmp.path())
    };
    let e = run(&|_| None, Some(SHARDS[1]));
    assert!(e.contains(SHARDS[1]) && e.contains("No such file"), "{e}");
    let e = run(
        &|i| {
            i["weight_map"]["c.weight"] = json!(SHARDS[0]);
            None
        },
        None,
    );
    assert!(
        e.contains(INDEX_FILE) && e.contains("index puts `c.weight` in model-00001"),
        "{e}"
    );
    let e = run(
        &|i| {
            i["weight_map"]["c.weight"] = json!("model-00009-of-00009.safetensors");
            None
        },
        None,
    );
    assert!(e.contains("model-00009-of-00009.safetensors"), "{e}");
    let e = run(
        &|i| {
            i["weight_map"].as_object_mut().unwrap().remove("e.ids");
            None
        },
        None,
    );
    assert!(
        e.contains("`e.ids` is in a shard but not in the index"),
        "{e}"
    );
    let e = run(
        &|i| {
            i["weight_map"]["x"] = json!("model-00001-of-00002.safetensors");
            None
        },
        None,
    );
    assert!(
        e.contains("missing tensor `x`") && e.contains(INDEX_FILE),
        "{e}"
    );
    let e = run(&|i| Some(i.to_string().as_bytes()[..40].to_vec()), None);
    assert!(
        e.contains(INDEX_FILE) && e.contains("invalid JSON") && e.contains("line 1 column"),
        "{e}"
    );
    let e = run(&|_| Some(vec![0xFF, 0xFE, b'{']), None);
    assert!(e.contains(INDEX_FILE), "{e}");
    for (value, want) in [
        (
            json!([SHARDS[0]]),
            "field `weight_map`: missing or not an object",
        ),
        (json!({}), "field `weight_map`: lists no tensors"),
        (
            json!({"a.weight": 3}),
            "field `weight_map.a.weight`: expected a file name",
        ),
        (
            json!({"a.weight": "../x.safetensors"}),
            "must be a plain file name",
        ),
        (
            json!({"a.weight": "/etc/passwd"}),
            "must be a plain file name",
        ),
        (json!({"a.weight": ""}), "must be a plain file name"),
        (json!({"a.weight": "."}), "must be a plain file name"),
        (
            json!({"a.weight": "sub\\x.safetensors"}),
            "must be a plain file name",
        ),
    ] {
        let e = run(
            &|i| {
                i["weight_map"] = value.clone();
                None
            },
            None,
        );
        assert!(
            e.contains(INDEX_FILE) && e.contains(want),
            "want {want:?}, got {e}"
        );
    }
    // A tensor in two shards.
    let tmp = tempfile::tempdir().unwrap();
    write_sharded(tmp.path(), &s1, &s1, index.to_string().as_bytes());
    let e = open_err(tmp.path());
    assert!(e.contains("appears in more than one shard"), "{e}");
}

/// Replaces one field of one tensor (or the tensor, or the whole header) with a hostile value.
fn mutate_header(rng: &mut Rng, header: &mut Map<String, Value>) {
    let names: Vec<String> = header.keys().cloned().collect();
    let name = rng.pick(&names).clone();
    let extreme = || json!(EXTREME_U64[(name.len() * 7) % EXTREME_U64.len()]);
    let values = [
        json!("F32"),
        json!("BF16"),
        json!("I64"),
        json!("U8"),
        json!("F4"),
        json!("F8_E4M3"),
        json!("f32"),
        json!(""),
        json!(null),
        json!(-1),
        json!(1.5),
        json!([]),
        json!([0]),
        json!([1, 1, 1, 1, 1, 1]),
        json!([u64::MAX]),
        json!([1u64 << 32, 1u64 << 32]),
        json!([0, 0]),
        json!([8, 0]),
        json!([0, u64::MAX]),
        json!([u64::MAX, u64::MAX]),
        json!([16, 40]),
        json!([24, 32]),
        json!([0, 8, 16]),
        json!(["0", "8"]),
        json!({}),
        extreme(),
    ];
    let value = rng.pick(&values).clone();
    match rng.below(8) {
        0 => {
            header.insert(name, value);
        }
        1 => {
            header.remove(&name);
        }
        2 => {
            let other = rng.pick(&names).clone();
            if let Some(v) = header.get(&other).cloned() {
                header.insert(format!("{name}.copy"), v);
            }
        }
        _ => {
            let field = *rng.pick(&["dtype", "shape", "data_offsets", "extra"]);
            match header.get_mut(&name).and_then(Value::as_object_mut) {
                Some(obj) if rng.one_in(6) => {
                    obj.remove(field);
                }
                Some(obj) => {
                    obj.insert(field.into(), value);
                }
                None => {
                    header.insert(name, json!({ field: value }));
                }
            }
        }
    }
}

/// A hostile variant of `bytes` (a whole safetensors file): a header edit, a byte-level
/// mutation (mostly of the length field and header), or junk in the tensor data.
fn mutate_file(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let n = header_len(bytes);
    match rng.below(5) {
        0 | 1 => {
            let mut header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
            for _ in 0..1 + rng.below(2) {
                mutate_header(rng, &mut header);
            }
            let mut out = file_bytes(&Value::Object(header), &bytes[8 + n..]);
            if rng.one_in(4) {
                let v = *rng.pick(&EXTREME_U64);
                out[..8].copy_from_slice(&v.to_le_bytes());
            }
            out
        }
        2 | 3 => {
            let mut out = bytes.to_vec();
            mutate_bytes(rng, &mut out, 0..8 + n);
            out
        }
        _ => {
            let mut out = bytes.to_vec();
            for _ in 0..4 {
                let i = 8 + n + rng.below(bytes.len() - 8 - n);
                out[i] = rng.next_u64() as u8;
            }
            out
        }
    }
}

/// Runs `exercise` on `dir` under `catch_unwind`; every error must name a file in `dir`.
fn check_case(dir: &Path, case: &str, tally: &mut (usize, usize)) {
    let r = catch_unwind(AssertUnwindSafe(|| exercise(dir)));
    let (opened, errors) = r.unwrap_or_else(|p| panic!("{case}: panicked: {}", panic_message(&*p)));
    let dir_name = dir.display().to_string();
    for e in &errors {
        assert!(
            e.contains(&dir_name),
            "{case}: error does not name the file: {e}"
        );
    }
    if opened {
        tally.0 += 1;
    } else {
        tally.1 += 1;
    }
}

#[test]
fn mutation_run_over_single_file_never_panics() {
    let base = single_file();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5AFE_7E45_0125_0001);
    let mut tally = (0, 0);
    for iter in 0..4000 {
        let bytes = mutate_file(&mut rng, &base);
        std::fs::write(tmp.path().join(SINGLE_FILE), &bytes).unwrap();
        check_case(tmp.path(), &format!("single, iteration {iter}"), &mut tally);
    }
    let (opened, rejected) = tally;
    assert!(
        opened > 400 && rejected > 2000,
        "opened {opened}, rejected {rejected}"
    );
}

#[test]
fn mutation_run_over_sharded_checkpoint_never_panics() {
    let (s1, s2, index) = sharded();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5AFE_7E45_0125_0002);
    let mut tally = (0, 0);
    for iter in 0..3000 {
        let (mut a, mut b) = (s1.clone(), s2.clone());
        let mut idx = index.to_string().into_bytes();
        match rng.below(4) {
            0 => a = mutate_file(&mut rng, &a),
            1 => b = mutate_file(&mut rng, &b),
            2 => {
                let mut v = index.clone();
                let map = v["weight_map"].as_object_mut().unwrap();
                let mut header = map.clone();
                mutate_header(&mut rng, &mut header);
                *map = header;
                if rng.one_in(3) {
                    let names: Vec<String> = map.keys().cloned().collect();
                    let shard = *rng.pick(&[SHARDS[0], SHARDS[1], "", "..", "model.safetensors"]);
                    map.insert(rng.pick(&names).clone(), json!(shard));
                }
                idx = v.to_string().into_bytes();
            }
            _ => {
                mutate_bytes(&mut rng, &mut idx, 0..usize::MAX);
            }
        }
        write_sharded(tmp.path(), &a, &b, &idx);
        check_case(
            tmp.path(),
            &format!("sharded, iteration {iter}"),
            &mut tally,
        );
    }
    let (opened, rejected) = tally;
    assert!(
        opened > 200 && rejected > 1500,
        "opened {opened}, rejected {rejected}"
    );
}
