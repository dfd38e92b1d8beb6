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
