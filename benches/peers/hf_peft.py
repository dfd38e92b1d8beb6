#!/usr/bin/env python3
"""HF transformers + PEFT training peer for `tunebench`'s benchmarks (torch on CPU, f32).

Same model, data and settings as an experiment file's PEFT-style run: the HF model folder of
[model].base, the chat template and tokenizer in it, completion-only labels (prompt tokens
-100), right truncation to [data].max_seq_len, [train].micro_batch examples per step padded to
the longest, LoRA r/alpha/dropout/targets from [lora], AdamW with [optimizer] lr/betas/eps/
weight_decay, global-norm clipping. Runs --steps optimizer steps after one warm-up step and
prints one JSON line: trained tokens/s (real and loss-bearing), peak RSS (ru_maxrss), losses.

First use creates a venv at target/pyenv-hf-peer (or $TB_PEER_VENV) and pip-installs torch (CPU
wheel), transformers, peft and safetensors into it, saying so on stderr.

usage: benches/peers/hf_peft.py --config configs/smollm2-135m.toml [--steps 10] [--threads N]
Never run it beside a build or another benchmark (2 cores: the figure drops several-fold).
"""
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV = os.environ.get("TB_PEER_VENV", os.path.join(ROOT, "target", "pyenv-hf-peer"))
PACKAGES = ["torch", "transformers", "peft", "safetensors"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        return
    if not os.path.exists(py):
        print(f"hf_peft peer: creating {VENV} and installing {', '.join(PACKAGES)} (CPU torch; once)", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + PACKAGES, stdout=sys.stderr)
    os.execv(py, [py] + sys.argv)


def main():
    ensure_venv()
    import argparse
    import random
    import resource
    import time
    import tomllib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg_dir = os.path.dirname(os.path.abspath(args.config))
    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)

    def path(p):
        cand = os.path.join(cfg_dir, p)
        return p if os.path.exists(p) or not os.path.exists(cand) else cand

    base = path(cfg["model"]["base"])
    data = cfg["data"]
    train = cfg.get("train", {})
    opt = cfg.get("optimizer", {})
    lora = cfg.get("lora", {})
    max_len = data.get("max_seq_len", 512)
    micro = train.get("micro_batch", 4)
    seed = train.get("seed", 3407)
    torch.manual_seed(seed)

    tok = AutoTokenizer.from_pretrained(base)
    # `[model] dtype = "bf16"`: the frozen base in bf16, the adapters in f32 (PEFT's
    # autocast_adapter_dtype), the step under CPU bf16 autocast; as our trainers do.
    dtype = cfg["model"].get("dtype", "f32")
    if dtype not in ("f32", "bf16"):
        raise SystemExit(f"{args.config}: [model] dtype {dtype!r} is not one of f32, bf16")
    bf16 = dtype == "bf16"
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if bf16 else torch.float32)
    targets = lora.get("targets", "all-linear")
    peft_cfg = LoraConfig(r=lora.get("r", 16), lora_alpha=lora.get("alpha", 32), lora_dropout=lora.get("dropout", 0.0),
                          target_modules=targets, use_rslora=lora.get("rslora", False), task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_cfg)
    model.train()

    def encode(messages, add_generation_prompt=False):
        out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    examples = []
    with open(path(data["train"]), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if "messages" in r:
                msgs = r["messages"]
            else:
                user = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
                msgs = ([{"role": "system", "content": r["system"]}] if r.get("system") else []) + [
                    {"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]
            full = encode(msgs)
            labels = [-100] * len(full)
            for i, m in enumerate(msgs):
                if m["role"] != "assistant":
                    continue
                start = len(encode(msgs[:i], add_generation_prompt=True))
                end = len(encode(msgs[: i + 1]))
                for t in range(start, min(end, len(full))):
                    labels[t] = full[t]
            examples.append((full[:max_len], labels[:max_len]))
    random.Random(seed).shuffle(examples)

    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opt.get("lr", 2e-4), betas=tuple(opt.get("betas", [0.9, 0.999])),
                              eps=opt.get("eps", 1e-8), weight_decay=opt.get("weight_decay", 0.0))
    clip = opt.get("max_grad_norm", 1.0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def batch(k):
        chunk = [examples[(k * micro + j) % len(examples)] for j in range(micro)]
        n = max(len(ids) for ids, _ in chunk)
        ids = torch.full((micro, n), pad, dtype=torch.long)
        lab = torch.full((micro, n), -100, dtype=torch.long)
        att = torch.zeros((micro, n), dtype=torch.long)
        for j, (x, y) in enumerate(chunk):
            ids[j, : len(x)] = torch.tensor(x)
            lab[j, : len(y)] = torch.tensor(y)
            att[j, : len(x)] = 1
        real = int(att.sum())
        loss_tokens = int((lab[:, 1:] != -100).sum())
        return ids, lab, att, real, loss_tokens

    def step(k):
        ids, lab, att, real, lt = batch(k)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, attention_mask=att, labels=lab)
        out.loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optim.step()
        optim.zero_grad()
        return out.loss.item(), real, lt

    step(0)  # warm-up, not measured
    tokens = loss_tokens = 0
    losses = []
    t0 = time.time()
    for k in range(1, args.steps + 1):
        loss, real, lt = step(k)
        tokens += real
        loss_tokens += lt
        losses.append(loss)
    dt = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "method": "hf-peft", "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": dtype,
        "steps": args.steps, "micro_batch": micro, "max_seq_len": max_len, "seconds": round(dt, 3),
        "tokens": tokens, "loss_tokens": loss_tokens, "tokens_per_s": round(tokens / dt, 2),
        "loss_tokens_per_s": round(loss_tokens / dt, 2), "peak_rss_mib": round(peak, 1),
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}))


if __name__ == "__main__":
    main()
