#!/usr/bin/env python3
"""Conformance: an adapter trained and saved by `tunebench train peft` loads in HF PEFT and gives
the logits `tunebench logits --adapter` gives. Run by `just peft-loads-ours` (or `just
conformance`), or by hand with any Python 3:

    python3 crates/peft/tests/conformance/peft_loads_ours.py target/debug/tunebench

It provisions its interpreter as the HF+PEFT peer bench does (`benches/peers/hf_peft.py`): a
virtual environment at target/pyenv-hf-peer (or $TB_PEER_VENV) with torch, transformers, peft and
safetensors from PyPI, created on first use. Exits non-zero on any mismatch.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../../benches/peers"))
from hf_peft import ensure_venv  # noqa: E402  (the peer bench owns the venv)

ensure_venv()

import torch  # noqa: E402
from peft import PeftConfig, PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

FIX = os.path.join(HERE, "../../../model/tests/fixtures")
IDS = [5, 17, 250, 3, 99, 42, 7, 300, 12, 64]


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/tunebench")
    tmp = tempfile.mkdtemp(prefix="tb-peft-conformance-")
    base = os.path.join(tmp, "base")
    os.makedirs(base)
    for f in ["config.json", "model.safetensors"]:
        shutil.copy(os.path.join(FIX, "tiny-mistral", f), base)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(FIX, "tokenizer", f), base)
    with open(os.path.join(tmp, "train.jsonl"), "w") as f:
        for i in range(8):
            f.write(json.dumps({"id": f"t{i}", "category": "general", "instruction": f"Soru {i}?",
                                "output": f"Cevap {i} tamam."}, ensure_ascii=False) + "\n")
    exp = os.path.join(tmp, "exp.toml")
    with open(exp, "w") as f:
        f.write(f"""[model]
base = "{base}"
[data]
train = "{tmp}/train.jsonl"
max_seq_len = 64
[train]
micro_batch = 2
max_steps = 20
seed = 1
runs_dir = "{tmp}/runs"
[optimizer]
lr = 0.05
[lora]
r = 4
alpha = 8
rslora = true
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
""")
    subprocess.check_call([binary, "train", "peft", "--config", exp, "--no-progress"])
    run = os.path.join(tmp, "runs", os.listdir(os.path.join(tmp, "runs"))[0])
    adapter = os.path.join(run, "adapter")
    ours_file = os.path.join(tmp, "ours.safetensors")
    subprocess.check_call([binary, "logits", "--model", base, "--adapter", adapter,
                           "--ids", ",".join(map(str, IDS)), "--out", ours_file])
    ours = load_file(ours_file)["logits"]

    cfg = PeftConfig.from_pretrained(adapter)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        theirs = model(input_ids=torch.tensor([IDS])).logits[0]
        plain = model.get_base_model()
        with model.disable_adapter():
            base_logits = model(input_ids=torch.tensor([IDS])).logits[0]
    diff = (ours - theirs).abs().max().item()
    effect = (theirs - base_logits).abs().max().item()
    print(f"PEFT {__import__('peft').__version__} loaded {adapter}: r={cfg.r} alpha={cfg.lora_alpha} "
          f"rslora={cfg.use_rslora} targets={sorted(cfg.target_modules)}")
    print(f"max |ours - PEFT| logit = {diff:.3e}; adapter effect (max |PEFT - base|) = {effect:.3e}")
    del plain
    shutil.rmtree(tmp)
    if diff > 1e-4 or effect < 1e-3:
        print("FAIL", file=sys.stderr)
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
