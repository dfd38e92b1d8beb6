# tunebench shortcuts

# the end-to-end demo
demo *ARGS:
    cargo run --release -- demo {{ARGS}}

# the test suite (what CI runs after the lints)
test:
    cargo test --workspace

# formatting and lints as CI checks them
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# regenerate the HF parity fixtures (needs torch + transformers in target/pyenv-hf)
fixtures:
    python3 -m venv target/pyenv-hf
    target/pyenv-hf/bin/pip install -q torch transformers safetensors
    target/pyenv-hf/bin/python crates/model/tests/fixtures/make_hf_fixtures.py

# regenerate the HF PEFT fixtures of tb-peft (needs torch + transformers + peft in target/pyenv-hf)
fixtures-peft:
    target/pyenv-hf/bin/pip install -q torch transformers peft safetensors
    target/pyenv-hf/bin/python crates/peft/tests/fixtures/make_peft_fixtures.py

# conformance against the real tools: llama.cpp (node-llama-cpp), gguf-py, HF transformers + PEFT
conformance:
    cargo test -p tb-gguf --test conformance --test llama_quantize --test roundtrip
    cargo test -p tb-model --test hf_parity --test llama_cpp_parity --test gguf_spm_parity
    cargo test -p tb-peft --test peft_parity
    cargo test -p tunebench --test trainers_agree --test train_unsloth
    just peft-loads-ours

# real HF PEFT loads an adapter `tunebench train peft` saved and gives `tunebench logits`'
# logits (provisions torch + transformers + peft in target/pyenv-hf-peer on first use)
peft-loads-ours:
    cargo build -p tunebench
    python3 crates/peft/tests/conformance/peft_loads_ours.py target/debug/tunebench

# training speed and memory: PEFT-style, Unsloth-style and HF+PEFT on the default experiment,
# each in its own process (never beside a build or another benchmark)
train-speed STEPS="10":
    cargo build --release -p tunebench
    target/release/tunebench fetch-model smollm2-135m
    target/release/tunebench train peft --config configs/smollm2-135m.toml --max-steps {{STEPS}} --no-progress
    target/release/tunebench train unsloth --config configs/smollm2-135m.toml --max-steps {{STEPS}} --no-progress
    python3 benches/peers/hf_peft.py --config configs/smollm2-135m.toml --steps {{STEPS}}

# speed of tb-model vs llama.cpp on the same GGUF (never beside a build or another benchmark)
speed GGUF="models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf":
    cargo build --release -p tb-model --example forward_speed
    target/release/examples/forward_speed {{GGUF}} 3
    node tools/oracles/llama_speed.mjs {{GGUF}} 3 2

# training benchmark: each method in its own process, interleaved repeats, history row per run
bench CONFIG="configs/smollm2-135m.toml" METHODS="peft,unsloth,hf-peft" REPEATS="3" *ARGS:
    cargo run --release -- bench train --config {{CONFIG}} --methods {{METHODS}} --repeats {{REPEATS}} {{ARGS}}

# a report (Markdown, HTML, CSV, charts) from runs/ into reports/<utc>/
report *ARGS:
    cargo run --release -- report {{ARGS}}

# compare the newest runs in reports/history.parquet with the previous commit's
regress *ARGS:
    cargo run --release -- regress {{ARGS}}
