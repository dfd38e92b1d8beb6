//! The CubeCL kernels of the fused ops, run on Burn's wgpu backend, against the tensor-op
//! references differentiated by Burn's autodiff on Flex: values and every gradient, on odd
//! shapes, within 1e-5 relative (error over the reference's max |value|).
//!
//! They run on Mesa's software Vulkan (lavapipe, `WgpuDevice::Cpu`), which tb-testkit installs
//! (Debian's `mesa-vulkan-drivers`) when it is missing and the tests run as root on Debian.
//! Without any Vulkan adapter the tests say so and pass, unless `TB_REQUIRE_WGPU=1` (set by
//! `.ci/run`) makes that a failure.

#![allow(
    clippy::print_stderr,
    reason = "tests report measured errors and skips"
)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_unsloth::ops::IGNORE_INDEX;
use tb_unsloth::packed_base::{PackedWeight, QuantFormat};
use tb_unsloth::{ops, reference, BaseWeight, LoraWeights, Precision};

type Gpu = Autodiff<Wgpu>;
type Cpu = Autodiff<Flex>;

const TOL: f32 = 1e-5;

/// The lavapipe (CPU) adapter when one is there.
fn device() -> Option<WgpuDevice> {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let ok = *AVAILABLE.get_or_init(|| {
        // Installs Mesa's lavapipe when missing (as root on Debian) before wgpu looks for it.
        tb_testkit::vulkan_cpu_driver();
        let probe = catch_unwind(AssertUnwindSafe(|| {
            let t = Tensor::<Wgpu, 1>::from_floats([1.0, 2.0], &WgpuDevice::Cpu);
            t.sum().into_scalar()
        }));
        match probe {
            Ok(3.0) => true,
            other => {
                let why = match other {
                    Ok(v) => format!("a sum came back as {v}"),
                    Err(_) => "no Vulkan CPU adapter (install mesa-vulkan-drivers)".to_string(),
                };
                assert!(
                    std::env::var("TB_REQUIRE_WGPU").as_deref() != Ok("1"),
                    "TB_REQUIRE_WGPU=1 but wgpu on WgpuDevice::Cpu does not work: {why}"
                );
                eprintln!("SKIPPED: CubeCL kernels not run on wgpu: {why}");
                false
            }
        }
    });
    ok.then_some(WgpuDevice::Cpu)
}

/// The same random values as a leaf on both backends.
#[derive(Clone)]
struct Pair<const D: usize> {
    gpu: Tensor<Gpu, D>,
    cpu: Tensor<Cpu, D>,
}

fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn pair<const D: usize>(rng: &mut StdRng, shape: [usize; D], dev: &WgpuDevice) -> Pair<D> {
    let data = TensorData::new(values(rng, shape.iter().product()), shape);
    Pair {
        gpu: Tensor::from_data(data.clone(), dev).require_grad(),
        cpu: Tensor::from_data(data, &Default::default()).require_grad(),
    }
}

fn ints<const D: usize>(
    v: Vec<i64>,
    shape: [usize; D],
    dev: &WgpuDevice,
) -> (Tensor<Gpu, D, Int>, Tensor<Cpu, D, Int>) {
    let data = TensorData::new(v, shape);
    (
        Tensor::from_data(data.clone(), dev),
        Tensor::from_data(data, &Default::default()),
    )
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

fn close(what: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let rel = err / scale;
    eprintln!("rel_err {what:<36} {rel:.3e}");
    assert!(rel <= TOL, "{what}: relative error {rel:.3e} > {TOL:.0e}");
}

type GradsGpu = <Gpu as AutodiffBackend>::Gradients;
type GradsCpu = <Cpu as AutodiffBackend>::Gradients;

/// Compares the outputs, then runs `sum(out · r)` backward with the same random `r` on both
/// sides and returns both sets of gradients.
fn check<const D: usize>(
    what: &str,
    rng: &mut StdRng,
    out: (Tensor<Gpu, D>, Tensor<Cpu, D>),
) -> (GradsGpu, GradsCpu) {
    let dev = out.0.device();
    let shape: [usize; D] = out.1.dims();
    let data = TensorData::new(values(rng, shape.iter().product()), shape);
    let rg = Tensor::<Gpu, D>::from_data(data.clone(), &dev);
    let rc = Tensor::<Cpu, D>::from_data(data, &Default::default());
    close(
        &format!("{what} out"),
        host(out.0.clone().inner()),
        host(out.1.clone().inner()),
    );
    ((out.0 * rg).sum().backward(), (out.1 * rc).sum().backward())
}

/// Compares the gradient of one leaf.
fn grad<const D: usize>(what: &str, name: &str, p: &Pair<D>, g: &(GradsGpu, GradsCpu)) {
    let got = p
        .gpu
        .grad(&g.0)
        .unwrap_or_else(|| panic!("{what}: no d{name}"));
    let want = p
        .cpu
        .grad(&g.1)
        .unwrap_or_else(|| panic!("{what}: reference gave no d{name}"));
    close(&format!("{what} d{name}"), host(got), host(want));
}

#[test]
fn rms_norm_and_swiglu_kernels() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(1);
    for [rows, d] in [[7, 37], [3, 300], [1, 5]] {
        let x = pair(&mut rng, [rows, d], &dev);
        let w = pair::<1>(&mut rng, [d], &dev);
        let y = ops::rms_norm(x.gpu.clone(), w.gpu.clone(), 1e-6).unwrap();
        let want = reference::rms_norm(x.cpu.clone(), w.cpu.clone(), 1e-6);
        let g = check("rms_norm", &mut rng, (y, want));
        grad("rms_norm", "x", &x, &g);
        grad("rms_norm", "weight", &w, &g);

        let gate = pair(&mut rng, [rows, d], &dev);
        let up = pair(&mut rng, [rows, d], &dev);
        let h = ops::swiglu(gate.gpu.clone(), up.gpu.clone()).unwrap();
        let want = reference::swiglu(gate.cpu.clone(), up.cpu.clone());
        let g = check("swiglu", &mut rng, (h, want));
        grad("swiglu", "gate", &gate, &g);
        grad("swiglu", "up", &up, &g);
    }
}

#[test]
fn rope_kernel() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(2);
    let (b, s, h, kvh, d) = (2, 5, 3, 1, 8);
    let q = pair(&mut rng, [b, s, h, d], &dev);
    let k = pair(&mut rng, [b, s, kvh, d], &dev);
    let pos: Vec<i64> = (0..(b * s) as i64).map(|i| (i * 7) % 11).collect();
    let (pg, pc) = ints(pos, [b, s], &dev);
    let (cg, sg) = ops::rope_cos_sin(pg, d, 10_000.0).unwrap();
    let (cc, sc) = ops::rope_cos_sin(pc, d, 10_000.0).unwrap();
    let (qg, kg) = ops::rope_qk(q.gpu.clone(), k.gpu.clone(), cg, sg).unwrap();
    let qc = reference::rope(q.cpu.clone(), cc.clone(), sc.clone());
    let kc = reference::rope(k.cpu.clone(), cc, sc);
    let out_g = Tensor::cat(vec![qg, kg], 2);
    let out_c = Tensor::cat(vec![qc, kc], 2);
    let g = check("rope_qk", &mut rng, (out_g, out_c));
    grad("rope_qk", "q", &q, &g);
    grad("rope_qk", "k", &k, &g);
}

fn lora(rng: &mut StdRng, d_in: usize, r: usize, d_out: usize, dev: &WgpuDevice) -> [Pair<2>; 3] {
    [
        pair(rng, [d_in, d_out], dev),
        pair(rng, [d_in, r], dev),
        pair(rng, [r, d_out], dev),
    ]
}

fn weights_gpu(l: &[Pair<2>; 3], r: usize) -> LoraWeights<Tensor<Gpu, 2>> {
    LoraWeights {
        w: BaseWeight::Dense(l[0].gpu.clone()),
        a: l[1].gpu.clone(),
        b: l[2].gpu.clone(),
        scale: 2.0 / r as f32,
    }
}

fn weights_cpu(l: &[Pair<2>; 3], r: usize) -> LoraWeights<Tensor<Cpu, 2>> {
    LoraWeights {
        w: BaseWeight::Dense(l[0].cpu.clone()),
        a: l[1].cpu.clone(),
        b: l[2].cpu.clone(),
        scale: 2.0 / r as f32,
    }
}

#[test]
fn lora_linear_mlp_and_qkv_on_cubecl() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(3);
    let (tokens, hidden, inter, r) = (9, 37, 29, 3);
    let x = pair(&mut rng, [tokens, hidden], &dev);

    let l = lora(&mut rng, hidden, r, inter, &dev);
    let y = ops::lora_linear(x.gpu.clone(), weights_gpu(&l, r)).unwrap();
    let want = reference::lora_linear(x.cpu.clone(), &weights_cpu(&l, r));
    let g = check("lora_linear", &mut rng, (y, want));
    for (name, p) in [("x", &x), ("W", &l[0]), ("A", &l[1]), ("B", &l[2])] {
        grad("lora_linear", name, p, &g);
    }

    let mlp = [
        lora(&mut rng, hidden, r, inter, &dev),
        lora(&mut rng, hidden, r, inter, &dev),
        lora(&mut rng, inter, r, hidden, &dev),
    ];
    let y = ops::lora_mlp(x.gpu.clone(), mlp.clone().map(|l| weights_gpu(&l, r))).unwrap();
    let want = reference::lora_mlp(x.cpu.clone(), &mlp.clone().map(|l| weights_cpu(&l, r)));
    let g = check("lora_mlp", &mut rng, (y, want));
    grad("lora_mlp", "x", &x, &g);
    for (i, name) in ["gate", "up", "down"].into_iter().enumerate() {
        grad("lora_mlp", &format!("A_{name}"), &mlp[i][1], &g);
        grad("lora_mlp", &format!("B_{name}"), &mlp[i][2], &g);
    }

    let qkv = [
        lora(&mut rng, hidden, r, 12, &dev),
        lora(&mut rng, hidden, r, 4, &dev),
        lora(&mut rng, hidden, r, 4, &dev),
    ];
    let (q, k, v) = ops::lora_qkv(x.gpu.clone(), qkv.clone().map(|l| weights_gpu(&l, r))).unwrap();
    let (qc, kc, vc) = reference::lora_qkv(x.cpu.clone(), &qkv.clone().map(|l| weights_cpu(&l, r)));
    let g = check(
        "lora_qkv",
        &mut rng,
        (
            Tensor::cat(vec![q, k, v], 1),
            Tensor::cat(vec![qc, kc, vc], 1),
        ),
    );
    grad("lora_qkv", "x", &x, &g);
    for (i, name) in ["q", "k", "v"].into_iter().enumerate() {
        grad("lora_qkv", &format!("A_{name}"), &qkv[i][1], &g);
        grad("lora_qkv", &format!("B_{name}"), &qkv[i][2], &g);
    }
}

/// A LoRA projection whose frozen base is packed to 4 bits, on wgpu (the packed weight stays on
/// the device and is dequantised there per call) against the reference on Flex with the
/// dequantised base as a dense constant: output and the gradients of x, A and B.
#[test]
fn lora_linear_with_a_packed_base_on_cubecl() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(6);
    // NF4 with a padded last block (d_in 200 = 3 blocks of 64 + 8), Q4_K with 2 super-blocks.
    for (format, d_in, d_out) in [(QuantFormat::Nf4, 200, 37), (QuantFormat::Q4K, 512, 19)] {
        let (tokens, r) = (11, 4);
        let what = format!("packed {format} lora_linear");
        let w = Arc::new(
            PackedWeight::pack(
                "t.weight",
                format,
                &values(&mut rng, d_out * d_in),
                d_out,
                d_in,
            )
            .unwrap(),
        );
        let x = pair(&mut rng, [tokens, d_in], &dev);
        let a = pair(&mut rng, [d_in, r], &dev);
        let b = pair(&mut rng, [r, d_out], &dev);
        let gpu = LoraWeights {
            w: BaseWeight::Packed(w.clone()),
            a: a.gpu.clone(),
            b: b.gpu.clone(),
            scale: 0.5,
        };
        let cpu = LoraWeights {
            w: BaseWeight::Dense(
                reference::dequantized::<Cpu>(&w, &Default::default()).transpose(),
            ),
            a: a.cpu.clone(),
            b: b.cpu.clone(),
            scale: 0.5,
        };
        let y = ops::lora_linear(x.gpu.clone(), gpu).unwrap();
        let want = reference::lora_linear(x.cpu.clone(), &cpu);
        let g = check(&what, &mut rng, (y, want));
        for (name, p) in [("x", &x), ("A", &a), ("B", &b)] {
            grad(&what, name, p, &g);
        }
        // One upload to the wgpu device, reused by the forward and the backward.
        assert_eq!(w.device_copies(), 1, "{what}: device copies");
    }
}

#[test]
fn chunked_linear_cross_entropy_on_cubecl() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(4);
    for (tokens, d, vocab, chunk) in [(14, 37, 301, 5), (7, 8, 3, 7)] {
        let hidden = pair(&mut rng, [tokens, d], &dev);
        let w = pair(&mut rng, [d, vocab], &dev);
        let t: Vec<i64> = (0..tokens)
            .map(|i| {
                if i % 3 == 1 {
                    IGNORE_INDEX
                } else {
                    rng.random_range(0..vocab as i64)
                }
            })
            .collect();
        let (tg, tc) = ints(t, [tokens], &dev);
        let loss = ops::linear_cross_entropy(hidden.gpu.clone(), w.gpu.clone(), tg, chunk).unwrap();
        let want = reference::linear_cross_entropy(hidden.cpu.clone(), w.cpu.clone(), tc);
        let g = check("linear_cross_entropy", &mut rng, (loss, want));
        grad("linear_cross_entropy", "hidden", &hidden, &g);
        grad("linear_cross_entropy", "w_lm", &w, &g);
    }
}

#[test]
fn packed_gqa_attention_on_cubecl() {
    let Some(dev) = device() else { return };
    let mut rng = StdRng::seed_from_u64(5);
    for (b, s, h, kvh, d, segments) in [
        (
            2,
            7,
            4,
            2,
            6,
            vec![0, 0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 9, 9],
        ),
        (1, 13, 3, 3, 5, vec![0; 13]),
        (1, 5, 6, 1, 8, vec![0, 1, 2, 2, 3]),
    ] {
        let q = pair(&mut rng, [b, s, h, d], &dev);
        let k = pair(&mut rng, [b, s, kvh, d], &dev);
        let v = pair(&mut rng, [b, s, kvh, d], &dev);
        let (sg, sc) = ints(segments, [b, s], &dev);
        let scale = 1.0 / (d as f32).sqrt();
        let out = ops::attention(
            q.gpu.clone(),
            k.gpu.clone(),
            v.gpu.clone(),
            sg,
            None,
            Precision::F32,
        )
        .unwrap();
        let want = reference::attention(q.cpu.clone(), k.cpu.clone(), v.cpu.clone(), sc, scale);
        let g = check("attention", &mut rng, (out, want));
        for (name, p) in [("q", &q), ("k", &k), ("v", &v)] {
            grad("attention", name, p, &g);
        }
    }
}
