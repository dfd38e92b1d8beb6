//! Small command-line helper around tb-gguf, for checking files by hand.
//!
//! ```sh
//! cargo run -p tb-gguf --release --example gguf_tool -- info model.gguf
//! cargo run -p tb-gguf --release --example gguf_tool -- to-f16 in.gguf out-f16.gguf
//! cargo run -p tb-gguf --release --example gguf_tool -- quantize in-f16.gguf out.gguf Q4_K_M 2
//! ```
#![expect(clippy::print_stdout, reason = "a CLI example")]

use std::time::Instant;

use tb_gguf::{quantize_gguf, GgmlType, GgufFile, GgufWriter, QuantMix, TensorSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["info", path] => info(path)?,
        ["to-f16", inp, out] => to_f16(inp, out)?,
        ["quantize", inp, out, mix, threads] => {
            let t = Instant::now();
            let r = quantize_gguf(inp, out, mix.parse::<QuantMix>()?, threads.parse()?)?;
            println!(
                "quantized {} tensors: {} -> {} bytes in {:.2} s",
                r.tensors.len(),
                r.bytes_in,
                r.bytes_out,
                t.elapsed().as_secs_f64()
            );
        }
        _ => println!("usage: gguf_tool info FILE | to-f16 IN OUT | quantize IN OUT MIX THREADS"),
    }
    Ok(())
}

fn info(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let f = GgufFile::open(path)?;
    println!(
        "GGUF v{}, alignment {}, data at {}",
        f.version(),
        f.alignment(),
        f.data_offset()
    );
    for (k, v) in f.metadata().iter() {
        let s = format!("{v:?}");
        println!(
            "  {k}: {} = {}",
            v.type_description(),
            &s[..s.len().min(80)]
        );
    }
    for t in f.tensors() {
        println!("  {:<32} {:>6} {:?}", t.name, t.ty.name(), t.ne);
    }
    Ok(())
}

/// Dequantizes every non-F32 tensor to F16 (what a converter's F16 output would hold).
fn to_f16(inp: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let f = GgufFile::open(inp)?;
    let mut md = f.metadata().clone();
    md.set("general.file_type", 1u32);
    md.remove("general.quantization_version");
    let mut w = GgufWriter::new(md)?;
    let types: Vec<GgmlType> = f
        .tensors()
        .iter()
        .map(|t| {
            if t.ty == GgmlType::F32 {
                GgmlType::F32
            } else {
                GgmlType::F16
            }
        })
        .collect();
    for (t, ty) in f.tensors().iter().zip(&types) {
        w.add_tensor(TensorSpec::new(t.name.clone(), *ty, t.ne.clone()))?;
    }
    w.write_to_file(out, |i, _, sink| {
        let v = f.tensor_f32(&f.tensors()[i].name)?;
        sink.write_f32(&v)
    })?;
    println!("wrote {out} in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(())
}
