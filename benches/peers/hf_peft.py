#!/usr/bin/env python3
"""HF transformers + PEFT training peer for `tunebench` (torch on CPU, f32 or bf16 autocast).

Same model, data and settings as an experiment file's PEFT-style run: the HF model folder of
[model].base, the chat template and tokenizer in it, completion-only labels (prompt tokens
-100), right truncation to [data].max_seq_len, [train].micro_batch examples per micro-batch padded
to the longest, LoRA r/alpha/dropout/targets from [lora], AdamW with [optimizer] lr/betas/eps/
weight_decay, global-norm clipping.

Two modes:

- bench (default): runs --steps optimizer steps after one warm-up step and prints one JSON line:
  trained tokens/s (real and loss-bearing), peak RSS (ru_maxrss), losses. `tunebench bench`
  reads it (tb-report's PeerResult). With --batches FILE (what `tunebench bench` writes:
  record ids per step, per micro-batch, of tunebench's PEFT-style trainer) it trains on exactly
  those examples in those padded micro-batches (gradients accumulated over a step's
  micro-batches); without it, on its own seeded shuffle.
- full run (--out RUN_DIR; `tunebench train hf-peft` creates the folder and its config.toml):
  trains the experiment's schedule as tunebench's trainers do (max_steps or epochs, grad_accum,
  warm-up and linear/cosine/constant decay of crates/train/src/schedule.rs, eval loss every
  eval_every steps and at the end on the first eval_limit held-out eval examples, a metrics line
  every log_every steps), appends one StepMetrics object per logged step to
  RUN_DIR/metrics.jsonl (flushed), saves the adapter with PEFT's save_pretrained into
  RUN_DIR/adapter and writes the totals to RUN_DIR/peer_result.json (tb-report's
  PeerRunResult), which Rust turns into summary.json. Differences from tunebench's trainers:
  the data order (Python's seeded shuffle, not rand's StdRng) and the LoRA initialisation
  (PEFT's).

First use creates a venv at target/pyenv-hf-peer (or $TB_PEER_VENV) and pip-installs torch (CPU
wheel), transformers, peft and safetensors into it, saying so on stderr.

usage: benches/peers/hf_peft.py --config configs/smollm2-135m.toml [--steps 10] [--threads N]
           [--batches FILE]
       benches/peers/hf_peft.py --config RUN_DIR/config.toml --out RUN_DIR [--max-steps N]
           [--eval-limit N] [--threads N]
Never run it beside a build or another benchmark (2 cores: the figure drops several-fold).
"""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV = os.environ.get("TB_PEER_VENV", os.path.join(ROOT, "target", "pyenv-hf-peer"))
PACKAGES = ["torch", "transformers", "peft", "safetensors"]
RESULT_FILE = "peer_result.json"


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        return
    if not os.path.exists(py):
        print(f"hf_peft peer: creating {VENV} and installing {', '.join(PACKAGES)} (CPU torch; once)", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + PACKAGES, stdout=sys.stderr)
    os.execv(py, [py] + sys.argv)


def messages_of(r):
    """The conversation of a dataset record (tb-data's Record::messages)."""
    if "messages" in r:
        return r["messages"]
    user = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
    return ([{"role": "system", "content": r["system"]}] if r.get("system") else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def tokenize(tok, msgs):
    """Token ids of the conversation and its labels: assistant turns keep their ids, the rest is
    -100; a turn spans from the prompt rendered with the generation prompt to the conversation
    rendered up to it (common prefixes with the whole, as tb-data's tokenize_record)."""
    def encode(messages, add_generation_prompt=False):
        out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def common(a, b):
        n = 0
        while n < len(a) and n < len(b) and a[n] == b[n]:
            n += 1
        return n

    full = encode(msgs)
    labels = [-100] * len(full)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = common(encode(msgs[:i], add_generation_prompt=True), full)
        end = max(common(encode(msgs[: i + 1]), full), start)
        for t in range(start, end):
            labels[t] = full[t]
    return full, labels


def tokenize_all(tok, records, max_len, truncation):
    """tb-data's tokenize_records: cut (right) or drop (drop) examples over max_len, drop those
    with no label after the first token. Returns the examples and the TrainData counts."""
    counts = {"max_seq_len": max_len, "records": len(records), "kept": 0, "truncated": 0, "dropped": 0}
    out = []
    for r in records:
        ids, labels = tokenize(tok, messages_of(r))
        cut = len(ids) > max_len
        if cut and truncation == "drop":
            counts["dropped"] += 1
            continue
        ids, labels = ids[:max_len], labels[:max_len]
        if all(y == -100 for y in labels[1:]):
            counts["dropped"] += 1
            continue
        counts["truncated"] += int(cut)
        counts["kept"] += 1
        out.append((ids, labels))
    return out, counts


def load_config(path):
    import tomllib
    cfg_dir = os.path.dirname(os.path.abspath(path))
    with open(path, "rb") as f:
        cfg = tomllib.load(f)

    def resolve(p):
        cand = os.path.join(cfg_dir, p)
        return p if os.path.exists(p) or not os.path.exists(cand) else cand

    return cfg, resolve


def load_model(cfg, base, config_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    # `[model] dtype = "bf16"`: the frozen base in bf16, the adapters in f32 (PEFT's
    # autocast_adapter_dtype), the step under CPU bf16 autocast; as our trainers do.
    dtype = cfg["model"].get("dtype", "f32")
    if dtype not in ("f32", "bf16"):
        raise SystemExit(f"{config_path}: [model] dtype {dtype!r} is not one of f32, bf16")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    lora = cfg.get("lora", {})
    peft_cfg = LoraConfig(r=lora.get("r", 16), lora_alpha=lora.get("alpha", 32), lora_dropout=lora.get("dropout", 0.0),
                          target_modules=lora.get("targets", "all-linear"), use_rslora=lora.get("rslora", False),
                          task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_cfg)
    model.train()
    return tok, model, dtype


def make_optimizer(cfg, model):
    import torch
    opt = cfg.get("optimizer", {})
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opt.get("lr", 2e-4), betas=tuple(opt.get("betas", [0.9, 0.999])),
                              eps=opt.get("eps", 1e-8), weight_decay=opt.get("weight_decay", 0.0))
    return params, optim, opt.get("max_grad_norm", 1.0)


def pad_id_of(tok):
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def collate(chunk, pad):
    """A padded micro-batch: ids, labels, attention mask, real tokens, loss tokens, slots."""
    import torch
    rows, n = len(chunk), max(len(ids) for ids, _ in chunk)
    ids = torch.full((rows, n), pad, dtype=torch.long)
    lab = torch.full((rows, n), -100, dtype=torch.long)
    att = torch.zeros((rows, n), dtype=torch.long)
    for j, (x, y) in enumerate(chunk):
        ids[j, : len(x)] = torch.tensor(x)
        lab[j, : len(y)] = torch.tensor(y)
        att[j, : len(x)] = 1
    return ids, lab, att, int(att.sum()), int((lab[:, 1:] != -100).sum()), rows * n


def batches_of(path, records, steps):
    """The first `steps` steps of a --batches file as records: per step, per micro-batch. Exits
    with a message naming the file and the step on a malformed file, an unknown id or too few
    steps."""
    try:
        with open(path, encoding="utf-8") as f:
            listed = json.load(f)["steps"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a batches file ({e})")
    if not isinstance(listed, list) or len(listed) < steps:
        raise SystemExit(f"{path}: lists {len(listed) if isinstance(listed, list) else 0} steps, "
                         f"{steps} needed")
    by_id = {r.get("id"): r for r in records}
    out = []
    for k, st in enumerate(listed[:steps]):
        if not isinstance(st, list) or not st or not all(isinstance(mb, list) and mb for mb in st):
            raise SystemExit(f"{path}: step {k}: not a non-empty list of non-empty micro-batches")
        missing = [i for mb in st for i in mb if i not in by_id]
        if missing:
            raise SystemExit(f"{path}: step {k}: unknown record id {missing[0]!r}")
        out.append([[by_id[i] for i in mb] for mb in st])
    return out


def bench(args, cfg, resolve):
    """The bench mode: --steps measured steps after one warm-up step, one JSON line on stdout."""
    import random
    import resource
    import time

    import torch

    data = cfg["data"]
    train = cfg.get("train", {})
    max_len = data.get("max_seq_len", 512)
    micro = train.get("micro_batch", 4)
    seed = train.get("seed", 3407)
    torch.manual_seed(seed)
    tok, model, dtype = load_model(cfg, resolve(cfg["model"]["base"]), args.config)
    bf16 = dtype == "bf16"
    records = list(read_jsonl(resolve(data["train"])))

    def example(r):
        full, labels = tokenize(tok, messages_of(r))
        return full[:max_len], labels[:max_len]

    if args.batches:
        steps = batches_of(args.batches, records, args.steps + 1)
        plan = [[[example(r) for r in mb] for mb in st] for st in steps]
    else:
        examples = [example(r) for r in records]
        random.Random(seed).shuffle(examples)
        plan = [[[examples[(k * micro + j) % len(examples)] for j in range(micro)]]
                for k in range(args.steps + 1)]
    params, optim, clip = make_optimizer(cfg, model)
    pad = pad_id_of(tok)

    def step(k):
        loss = 0.0
        real = lt = 0
        for chunk in plan[k]:
            ids, lab, att, r, n, _ = collate(chunk, pad)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, attention_mask=att, labels=lab)
            (out.loss / len(plan[k])).backward()
            loss += out.loss.item() / len(plan[k])
            real += r
            lt += n
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optim.step()
        optim.zero_grad()
        return loss, real, lt

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


def lr_at(opt, total, done):
    """tb-train's LrSchedule::lr: the learning rate of the update made after `done` updates."""
    peak = opt.get("lr", 2e-4)
    warmup = opt.get("warmup_steps", 0) or math.ceil(opt.get("warmup_ratio", 0.0) * total)
    if done < warmup:
        return peak * done / max(warmup, 1)
    kind = opt.get("schedule", "linear")
    if kind == "constant":
        return peak
    span = max(total - warmup, 1)
    if kind == "linear":
        return peak * max(max(total - done, 0) / span, 0.0)
    if kind == "cosine":
        return peak * max(0.5 * (1.0 + math.cos(math.pi * (done - warmup) / span)), 0.0)
    raise SystemExit(f"[optimizer] schedule {kind!r} is not one of linear, cosine, constant")


def rss_mib():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return 0.0


def run_data(cfg, resolve, tok, seed):
    """Training examples (after [data] limit), held-out eval examples (first eval_limit) and the
    TrainData counts, as tb-train's load_examples picks them."""
    import random
    data = cfg["data"]
    max_len, truncation = data.get("max_seq_len", 512), data.get("truncation", "right")
    records = read_jsonl(resolve(data["train"]))
    limit = data.get("limit", 0)
    if 0 < limit < len(records):
        picked = sorted(random.Random(seed).sample(range(len(records)), limit))
        records = [records[i] for i in picked]
    train, counts = tokenize_all(tok, records, max_len, truncation)
    if not train:
        raise SystemExit("data.train: no training examples left after tokenisation")
    evals = []
    if data.get("eval"):
        held = [r for r in read_jsonl(resolve(data["eval"])) if r.get("split") != "paraphrase"]
        if data.get("eval_limit", 0) > 0:
            held = held[: data["eval_limit"]]
        evals = tokenize_all(tok, held, max_len, truncation)[0]
    return train, evals, counts


class Loop:
    """The full-run loop: tb-train's run_training without checkpoints."""

    def __init__(self, cfg, model, tok, train, evals):
        import torch
        self.torch = torch
        self.cfg, self.model, self.evals = cfg, model, evals
        t = cfg.get("train", {})
        self.micro, self.accum, self.seed = t.get("micro_batch", 4), t.get("grad_accum", 1), t.get("seed", 3407)
        self.pad = pad_id_of(tok)
        self.bf16 = cfg["model"].get("dtype", "f32") == "bf16"
        self.train = train
        self.epochs = {}
        self.steps_per_epoch = math.ceil(len(self.epoch(0)) / self.accum)
        self.total = t.get("max_steps", 0) or t.get("epochs", 1) * self.steps_per_epoch

    def epoch(self, e):
        """Micro-batches of epoch `e`: a seeded shuffle cut into chunks of micro_batch."""
        import random
        if e not in self.epochs:
            order = list(range(len(self.train)))
            random.Random(self.seed * 1_000_003 + e).shuffle(order)
            ex = [self.train[i] for i in order]
            self.epochs[e] = [collate(ex[k: k + self.micro], self.pad) for k in range(0, len(ex), self.micro)]
        return self.epochs[e]

    def loss(self, ids, lab, att, n):
        """HF's own causal-LM loss summed over the batch's loss-bearing tokens and divided by n
        (`num_items_in_batch`, as HF's Trainer accumulates gradients)."""
        torch = self.torch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(input_ids=ids, attention_mask=att, labels=lab, num_items_in_batch=n).loss

    def step(self, k, params, optim, clip, lr):
        """Optimizer step k (0-based): mean loss per loss-bearing token, gradient norm, counts."""
        torch = self.torch
        e, i = divmod(k, self.steps_per_epoch)
        micro = self.epoch(e)[i * self.accum: (i + 1) * self.accum]
        loss_tokens = sum(b[4] for b in micro)
        loss = 0.0
        for ids, lab, att, _, _, _ in micro:
            part = self.loss(ids, lab, att, max(loss_tokens, 1))
            part.backward()
            loss += part.item()
        if not math.isfinite(loss):
            raise SystemExit(f"step {k + 1}: the loss is not finite")
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf")))
        if not math.isfinite(norm):
            raise SystemExit(f"step {k + 1}: the gradient norm is not finite")
        for g in optim.param_groups:
            g["lr"] = lr
        optim.step()
        optim.zero_grad(set_to_none=True)
        self.epochs.pop(e - 1, None)
        return loss, norm, sum(b[3] for b in micro), loss_tokens, sum(b[5] for b in micro)

    def eval_loss(self):
        if not self.evals:
            return None
        torch = self.torch
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for k in range(0, len(self.evals), self.micro):
                ids, lab, att, _, lt, _ = collate(self.evals[k: k + self.micro], self.pad)
                total += self.loss(ids, lab, att, 1).item()
                count += lt
        self.model.train()
        return total / count if count else None


def full_run(args, cfg, resolve):
    """The --out mode: the experiment's whole schedule; metrics, adapter and result in RUN_DIR."""
    import resource
    import time

    import torch

    out = args.out
    if not os.path.isdir(out):
        raise SystemExit(f"--out {out}: not a folder (tunebench train hf-peft creates it)")
    t = cfg.setdefault("train", {})
    if args.max_steps is not None:
        t["max_steps"] = args.max_steps
    if args.eval_limit is not None:
        cfg["data"]["eval_limit"] = args.eval_limit
    seed = t.get("seed", 3407)
    torch.manual_seed(seed)
    tok, model, _ = load_model(cfg, resolve(cfg["model"]["base"]), args.config)
    train, evals, counts = run_data(cfg, resolve, tok, seed)
    loop = Loop(cfg, model, tok, train, evals)
    params, optim, clip = make_optimizer(cfg, model)
    opt = cfg.get("optimizer", {})
    log_every, eval_every = max(t.get("log_every", 1), 1), t.get("eval_every", 0)
    warm = t.get("warmup_measure_steps", 1)
    sums = {"train_s": 0.0, "tokens": 0, "loss_tokens": 0, "slots": 0, "m_tokens": 0, "m_loss": 0, "m_s": 0.0}
    loss, final_eval = float("nan"), None
    metrics = open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8")
    for k in range(loop.total):
        lr = lr_at(opt, loop.total, k)
        t0 = time.time()
        loss, norm, tokens, loss_tokens, slots = loop.step(k, params, optim, clip, lr)
        dt = time.time() - t0
        step = k + 1
        for key, v in (("train_s", dt), ("tokens", tokens), ("loss_tokens", loss_tokens), ("slots", slots)):
            sums[key] += v
        if k >= warm or loop.total <= warm:
            sums["m_tokens"] += tokens
            sums["m_loss"] += loss_tokens
            sums["m_s"] += dt
        ev = None
        if step == loop.total:
            ev = final_eval = loop.eval_loss()
        elif eval_every > 0 and step % eval_every == 0:
            ev = loop.eval_loss()
        if step % log_every == 0 or step == loop.total or ev is not None:
            line = {"step": step, "epoch": step / loop.steps_per_epoch, "loss": loss, "lr": lr, "grad_norm": norm,
                    "tokens": tokens, "loss_tokens": loss_tokens, "slots": slots,
                    "tokens_per_s": tokens / max(dt, 1e-9), "elapsed_s": sums["train_s"], "rss_mib": rss_mib()}
            if ev is not None:
                line["eval_loss"] = ev
            metrics.write(json.dumps(line) + "\n")
            metrics.flush()
    metrics.close()
    model.save_pretrained(os.path.join(out, "adapter"))
    m_s = max(sums["m_s"], 1e-9)
    result = {
        "steps": loop.total, "train_s": sums["train_s"], "trained_tokens": sums["tokens"],
        "loss_tokens": sums["loss_tokens"], "slots": sums["slots"], "tokens_per_s": sums["m_tokens"] / m_s,
        "loss_tokens_per_s": sums["m_loss"] / m_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "final_train_loss": loss,
        "eval_loss": final_eval, "trainable_params": sum(p.numel() for p in params),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "data": counts}
    tmp = os.path.join(out, RESULT_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(out, RESULT_FILE))


def main():
    ensure_venv()
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=10, help="bench mode: measured steps")
    ap.add_argument("--batches", help="bench mode: record ids per step (tunebench bench's peer-batches.json)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", help="full-run mode: the run folder (metrics, adapter, result)")
    ap.add_argument("--max-steps", type=int, help="full-run mode: override [train] max_steps")
    ap.add_argument("--eval-limit", type=int, help="full-run mode: override [data] eval_limit")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, resolve = load_config(args.config)
    if args.out:
        full_run(args, cfg, resolve)
    else:
        bench(args, cfg, resolve)


if __name__ == "__main__":
    main()
