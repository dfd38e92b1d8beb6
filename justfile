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

# conformance against the real tools: llama.cpp (node-llama-cpp), gguf-py, HF transformers fixtures
conformance:
    cargo test -p tb-gguf --test conformance --test llama_quantize --test roundtrip
    cargo test -p tb-model --test hf_parity --test llama_cpp_parity --test gguf_spm_parity

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
