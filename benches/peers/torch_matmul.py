#!/usr/bin/env python3
"""PyTorch matmul peer for tb-kernels' GEMM bench (`cargo bench -p tb-kernels --bench gemm`).

Times `torch.matmul(x, w.t())` — y = x·Wᵀ with W a row-major [out, in] weight, the layout the
Rust bench uses — at the same m×k×n shapes, in f32 and in bf16 (both operands bf16, as under
CPU autocast; PyTorch accumulates in f32 and returns bf16), with torch.set_num_threads(2).
Prints one line per (shape, dtype): the median of --repeats timed calls after --warmup
untimed ones, as GFLOP/s with FLOP = 2·m·n·k (the Rust bench's elem/s is the same unit).

usage: benches/peers/torch_matmul.py [--threads 2] [--repeats 7] [--warmup 2] [--skip-big]
       [--json]
Needs torch (CPU wheel is enough); prints how to install it if missing. Never run it beside a
build or another benchmark (2 cores: the figure drops several-fold).
"""
import argparse
import json
import statistics
import sys
import time

# (name, m, k, n): y[m, n] = x[m, k] · W[n, k]ᵀ — same list as crates/kernels/benches/gemm.rs.
SHAPES = [
    ("smollm2_up_1024x576x1536", 1024, 576, 1536),
    ("smollm2_down_1024x1536x576", 1024, 1536, 576),
    ("smollm2_head_1024x576x49152", 1024, 576, 49152),
    ("turkcell_mlp_2048x4096x14336", 2048, 4096, 14336),
]


def time_matmul(torch, x, w, warmup, repeats):
    """Median seconds of one `torch.matmul(x, w.t())` (output buffer reused via out=)."""
    wt = w.t()  # a strided view, no copy: the Rust bench's B is the same view
    out = torch.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    for _ in range(warmup):
        torch.matmul(x, wt, out=out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(x, wt, out=out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per case (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    ap.add_argument("--skip-big", action="store_true", help="leave out the 2048×4096×14336 shape")
    ap.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        print(
            "torch_matmul peer: PyTorch is not installed for "
            f"{sys.executable}; install the CPU wheel, e.g.\n"
            "  python3 -m pip install torch --index-url https://download.pytorch.org/whl/cpu\n"
            "and run this script again.",
            file=sys.stderr,
        )
        return 2

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not args.json:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"median of {args.repeats} (after {args.warmup} warm-up); GFLOP/s = 2·m·n·k / s"
        )
    for name, m, k, n in SHAPES:
        if args.skip_big and m * n * k > 1 << 34:
            continue
        flop = 2.0 * m * n * k
        x32 = torch.rand((m, k), dtype=torch.float32) * 2 - 1
        w32 = torch.rand((n, k), dtype=torch.float32) * 2 - 1
        for dtype_name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            x, w = x32.to(dtype), w32.to(dtype)
            with torch.inference_mode():
                secs = time_matmul(torch, x, w, args.warmup, args.repeats)
            gflops = flop / secs / 1e9
            if args.json:
                print(json.dumps({"shape": name, "m": m, "k": k, "n": n, "dtype": dtype_name,
                                  "threads": args.threads, "median_s": secs, "gflops": gflops}))
            else:
                print(f"{name:32} {dtype_name:5} {secs * 1e3:10.2f} ms  {gflops:8.1f} GFLOP/s")
            sys.stdout.flush()
            del x, w
    return 0


if __name__ == "__main__":
    sys.exit(main())
