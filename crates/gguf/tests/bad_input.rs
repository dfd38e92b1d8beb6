//! Malformed and hostile input: every case must be an `Error` that names the problem, never a
//! panic or an unbounded allocation. Ends with a deterministic mutation run (a stand-in for
//! the cargo-fuzz target in `crates/gguf/fuzz`, which needs nightly).

mod common;

use tb_gguf::{Array, Error, GgmlType, GgufFile, GgufWriter, Metadata, TensorSpec, Value};

/// A small valid file: a few KVs of different types and four tensors.
fn valid_file() -> Vec<u8> {
    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("llama.block_count", 1u32);
    md.set(
        "tokenizer.ggml.tokens",
        vec!["a".to_string(), "b".to_string(), "<s>".to_string()],
    );
    md.set("tokenizer.ggml.scores", vec![0.0f32, -1.0, -2.0]);
    md.set("tokenizer.ggml.token_type", vec![1i32, 1, 3]);
    md.set("x.u64", Value::U64(5));
    md.set("x.bools", Value::Array(Array::Bool(vec![true, false])));
    let mut w = GgufWriter::new(md).expect("writer");
    let specs = [
        TensorSpec::new("token_embd.weight", GgmlType::Q4_K, vec![256u64, 2]),
        TensorSpec::new("blk.0.attn_norm.weight", GgmlType::F32, vec![8u64]),
        TensorSpec::new("blk.0.attn_q.weight", GgmlType::F16, vec![32u64, 2]),
        TensorSpec::new("output.weight", GgmlType::Q6_K, vec![256u64, 1]),
    ];
    for s in &specs {
        w.add_tensor(s.clone()).expect("add");
    }
    w.write_to_vec(|_, spec, sink| {
        let n = spec.n_elements() as usize;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        sink.write_f32(&v)
    })
    .expect("write")
}

fn err(bytes: Vec<u8>) -> String {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e.to_string(),
    }
}

/// Header builder for hand-made files.
struct H(Vec<u8>);

impl H {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> H {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&n_kv.to_le_bytes());
        H(b)
    }
    fn u32(mut self, v: u32) -> H {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> H {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(mut self, s: &str) -> H {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> H {
        self.0.extend_from_slice(b);
        self
    }
    /// A tensor info with the given dims, type id and offset.
    fn tensor(self, name: &str, ne: &[u64], ty: u32, offset: u64) -> H {
        let mut h = self.str(name).u32(ne.len() as u32);
        for &d in ne {
            h = h.u64(d);
        }
        h.u32(ty).u64(offset)
    }
    fn pad(mut self, total: usize) -> Vec<u8> {
        self.0.resize(total.max(self.0.len()), 0);
        self.0
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut b = valid_file();
    b[0] = b'X';
    assert!(err(b).contains("bad magic"));
    assert!(err(b"GGU".to_vec()).contains("truncated"));
    assert!(err(Vec::new()).contains("magic"));
    for v in [0u32, 4, 0x0300_0000] {
        let mut b = valid_file();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = err(b);
        assert!(
            e.contains("unsupported GGUF version") && e.contains(&v.to_string()),
            "{e}"
        );
    }
}

#[test]
fn truncated_at_every_cut_point() {
    let b = valid_file();
    let f = GgufFile::from_bytes(b.clone()).expect("valid");
    let data_end = f
        .tensors()
        .iter()
        .map(|t| t.file_offset + t.size)
        .max()
        .expect("tensors");
    for cut in 0..b.len() {
        let r = GgufFile::from_bytes(b[..cut].to_vec());
        if (cut as u64) < data_end {
            let e = r.expect_err("truncated file must fail").to_string();
            assert!(
                e.contains("truncated")
                    || e.contains("not within the file")
                    || e.contains("exceeds the limit"),
                "cut {cut}: {e}"
            );
        } else {
            assert!(r.is_ok(), "cut {cut} only removes trailing padding");
        }
    }
}

#[test]
fn absurd_counts_and_lengths_are_refused_before_allocating() {
    let e = err(H::new(3, u64::MAX, 0).pad(64));
    assert!(
        e.contains("tensor count") && e.contains("exceeds the limit"),
        "{e}"
    );
    let e = err(H::new(3, 0, 1 << 40).pad(64));
    assert!(e.contains("metadata key count"), "{e}");
    // key length 2^40
    let e = err(H::new(3, 0, 1).u64(1 << 40).pad(64));
    assert!(
        e.contains("length of key 0") && e.contains("exceeds the limit"),
        "{e}"
    );
    // string value longer than the file
    let e = err(H::new(3, 0, 1).str("k").u32(8).u64(1000).pad(64));
    assert!(
        e.contains("value of key 'k'") && e.contains("truncated"),
        "{e}"
    );
    // array of 2^29 u64 in a tiny file
    let e = err(H::new(3, 0, 1).str("k").u32(9).u32(10).u64(1 << 29).pad(64));
    assert!(e.contains("array elements of key 'k'"), "{e}");
    // array longer than the cap
    let e = err(H::new(3, 0, 1).str("k").u32(9).u32(0).u64(1 << 31).pad(64));
    assert!(
        e.contains("array length of key 'k'") && e.contains("exceeds the limit"),
        "{e}"
    );
    // string array whose count can't fit
    let e = err(H::new(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 20).pad(64));
    assert!(e.contains("key 'k'"), "{e}");
}

#[test]
fn bad_metadata_is_named() {
    let e = err(H::new(3, 0, 1).str("k").u32(13).pad(64));
    assert!(
        e.contains("'k'") && e.contains("invalid value type 13"),
        "{e}"
    );
    let e = err(H::new(3, 0, 1).str("k").u32(9).u32(9).u64(1).pad(64));
    assert!(e.contains("array of arrays"), "{e}");
    let e = err(H::new(3, 0, 1).str("").u32(4).u32(1).pad(64));
    assert!(e.contains("empty"), "{e}");
    let e = err(H::new(3, 0, 2)
        .str("k")
        .u32(4)
        .u32(1)
        .str("k")
        .u32(4)
        .u32(2)
        .pad(64));
    assert!(e.contains("duplicate key 'k'"), "{e}");
    let e = err(H::new(3, 0, 1)
        .str("k")
        .u32(8)
        .u64(2)
        .raw(&[0xff, 0xfe])
        .pad(64));
    assert!(e.contains("UTF-8") && e.contains("'k'"), "{e}");
    let e = err(H::new(3, 0, 1)
        .str("general.alignment")
        .u32(8)
        .str("32")
        .pad(64));
    assert!(
        e.contains("general.alignment") && e.contains("string"),
        "{e}"
    );
    let e = err(H::new(3, 0, 1)
        .str("general.alignment")
        .u32(4)
        .u32(24)
        .pad(64));
    assert!(e.contains("power-of-two"), "{e}");
    let e = err(H::new(3, 0, 1)
        .str("general.alignment")
        .u32(4)
        .u32(0)
        .pad(64));
    assert!(e.contains("power-of-two"), "{e}");
}

#[test]
fn bad_tensor_infos_are_named() {
    let e = err(H::new(3, 1, 0).tensor("w", &[32], 4, 0).pad(128));
    assert!(
        e.contains("'w'") && e.contains("unknown ggml type id 4"),
        "{e}"
    );
    let e = err(H::new(3, 1, 0).tensor("w", &[32], 99, 0).pad(128));
    assert!(e.contains("unknown ggml type id 99"), "{e}");
    let e = err(H::new(3, 1, 0).tensor("w", &[1, 1, 1, 1, 1], 0, 0).pad(128));
    assert!(e.contains("n_dims of tensor 'w'"), "{e}");
    let e = err(H::new(3, 1, 0).tensor("w", &[33], 2, 0).pad(128));
    assert!(e.contains("'w'") && e.contains("block size"), "{e}");
    let e = err(H::new(3, 1, 0)
        .tensor("w", &[1 << 62, 1 << 62], 0, 0)
        .pad(128));
    assert!(e.contains("'w'") && e.contains("overflow"), "{e}");
    let e = err(H::new(3, 1, 0).tensor("w", &[u64::MAX], 0, 0).pad(128));
    assert!(e.contains("'w'") && e.contains("negative"), "{e}");
    let e = err(H::new(3, 1, 0).tensor("w", &[32], 0, 1 << 40).pad(128));
    assert!(
        e.contains("'w'") && e.contains("not within the file"),
        "{e}"
    );
    let e = err(H::new(3, 1, 0)
        .tensor("w", &[32], 0, u64::MAX - 31)
        .pad(128));
    assert!(
        e.contains("'w'") && e.contains("not within the file"),
        "{e}"
    );
    let e = err(H::new(3, 1, 0).tensor("w", &[8], 0, 4).pad(128));
    assert!(e.contains("'w'") && e.contains("alignment"), "{e}");
    let e = err(H::new(3, 2, 0)
        .tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .pad(256));
    assert!(e.contains("duplicate tensor name 'w'"), "{e}");
    let long = "x".repeat(64);
    let e = err(H::new(3, 1, 0).tensor(&long, &[8], 0, 0).pad(256));
    assert!(e.contains("name length of tensor 0"), "{e}");
    // in bounds: a valid hand-made file parses, and its data is returned
    let f = GgufFile::from_bytes(H::new(3, 1, 0).tensor("w", &[8], 0, 0).pad(96)).expect("valid");
    assert_eq!(f.tensor_f32("w").expect("w"), [0.0; 8]);
    // a type without a codec can be described but not dequantized
    let f =
        GgufFile::from_bytes(H::new(3, 1, 0).tensor("w", &[256], 10, 0).pad(200)).expect("q2_k");
    assert_eq!(f.tensor("w").expect("w").ty, GgmlType::Q2_K);
    let e = f.tensor_f32("w").unwrap_err().to_string();
    assert!(e.contains("'w'") && e.contains("q2_K"), "{e}");
}

#[test]
fn wrong_metadata_types_name_the_key() {
    let f = GgufFile::from_bytes(valid_file()).expect("valid");
    let md = f.metadata();
    for (r, key) in [
        (md.get_u32("x.u64").map(|_| ()), "x.u64"),
        (
            md.get_f32("llama.block_count").map(|_| ()),
            "llama.block_count",
        ),
        (
            md.get_str_array("tokenizer.ggml.scores").map(|_| ()),
            "tokenizer.ggml.scores",
        ),
        (md.get_i32_array("x.bools").map(|_| ()), "x.bools"),
        (
            md.get_bool("general.architecture").map(|_| ()),
            "general.architecture",
        ),
    ] {
        match r {
            Err(Error::WrongType { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(matches!(md.get_u32("missing.key"), Err(Error::MissingKey(k)) if k == "missing.key"));
}

/// xorshift64*, so the run is the same every time.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parse, then touch everything a caller might: no panic allowed anywhere.
fn exercise(bytes: Vec<u8>) -> bool {
    let Ok(f) = GgufFile::from_bytes(bytes) else {
        return false;
    };
    for (k, _) in f.metadata().iter() {
        let _ = f.metadata().get_u32(k);
        let _ = f.metadata().get_str_array(k);
        let _ = f.metadata().get_u64_lenient(k);
    }
    for t in f.tensors() {
        let _ = f.tensor_data(&t.name);
        let _ = f.tensor_f32(&t.name);
    }
    true
}

#[test]
fn mutation_run_never_panics() {
    let base = valid_file();
    let header_len = GgufFile::from_bytes(base.clone())
        .expect("valid")
        .data_offset() as usize;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting: [u64; 10] = [
        0,
        1,
        2,
        31,
        32,
        255,
        1 << 31,
        u32::MAX as u64,
        1 << 62,
        u64::MAX,
    ];
    let (mut ok, mut rejected) = (0usize, 0usize);
    for iter in 0..6000 {
        let mut b = base.clone();
        match rng.below(5) {
            0 | 1 => {
                // flip 1-4 random bits, mostly in the header
                for _ in 0..1 + rng.below(4) {
                    let limit = if rng.below(5) == 0 {
                        b.len()
                    } else {
                        header_len
                    };
                    let i = rng.below(limit);
                    b[i] ^= 1 << rng.below(8);
                }
            }
            2 => {
                // overwrite a header word with an extreme value
                let i = rng.below(header_len.saturating_sub(8).max(1));
                let v = interesting[rng.below(interesting.len())];
                let w = if rng.below(2) == 0 { 4 } else { 8 };
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            3 => {
                // truncate, and sometimes also corrupt
                let cut = rng.below(b.len());
                b.truncate(cut);
                if cut > 0 {
                    let i = rng.below(cut);
                    b[i] = rng.next() as u8;
                }
            }
            _ => {
                // splice: duplicate or delete a chunk of the header
                let i = rng.below(header_len);
                let n = 1 + rng.below(16);
                if rng.below(2) == 0 {
                    let chunk: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
                    b.splice(i..i, chunk);
                } else {
                    b.drain(i..(i + n).min(b.len()));
                }
            }
        }
        let r = std::panic::catch_unwind(|| exercise(b));
        match r {
            Ok(true) => ok += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("panic on mutation iteration {iter}"),
        }
    }
    assert!(rejected > 1000 && ok > 100, "ok {ok}, rejected {rejected}");
}
