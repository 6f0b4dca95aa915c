#!/usr/bin/env bash
# Runs llama.cpp's llama-bench and `pigpu bench` on the same models and settings, in one run, and
# prints both tables and the per-test ratio (pigpu / llama.cpp). llama.cpp is built from the
# llama-cpp-python sdist by scripts/ref/build-llama-cpp.sh (outside the repo, cached).
#
# Usage: scripts/bench-compare.sh [-m MODEL]... [-p 64] [-n 32] [-r 3] [-t 2] [--vulkan]
#          [--llama-bin DIR] [--pigpu BIN] [--out FILE]
#   -m          model(s); default: the SmolLM2 test model from ~/.cache/pigpu/models
#   --vulkan    compare Vulkan builds (llama.cpp -DGGML_VULKAN=ON vs pigpu --backend vulkan);
#               on lavapipe set PIGPU_DEVICE=llvmpipe and GGML_VK_VISIBLE_DEVICES=0
#   --llama-bin DIR  the llama-bench in DIR instead of building one (e.g. the static Vulkan
#               build of scripts/gpu-bench.sh prepare: ~/.cache/pigpu/llama.cpp-*/build-vulkan-static/bin)
#   --pigpu BIN this pigpu binary instead of `cargo build --release`'s
#   --out FILE  also write the combined report (markdown) to FILE
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}"
models=() p=64 n=32 r=3 t=2 vulkan=0 out="" llama_extra=() llama_bin="" pigpu=""
while [ $# -gt 0 ]; do
  case "$1" in
    -m) models+=("$2"); shift ;;
    -p) p="$2"; shift ;;
    -n) n="$2"; shift ;;
    -r) r="$2"; shift ;;
    -t) t="$2"; shift ;;
    --vulkan) vulkan=1 ;;
    --llama-bin) llama_bin="$2"; shift ;;
    --pigpu) pigpu="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-compare: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#models[@]} -gt 0 ] || models=("$cache/SmolLM2-135M-Instruct.Q4_1.gguf")

llama_bin_arg=$llama_bin
if [ "$vulkan" = 1 ]; then
  [ -n "$llama_bin" ] || llama_bin=$(scripts/ref/build-llama-cpp.sh --vulkan | sed -n 2p)
  backend=vulkan
  # Every layer on the GPU, as pigpu's Vulkan engine runs them (llama-bench's default is -1).
  llama_extra=(-ngl 99)
else
  [ -n "$llama_bin" ] || llama_bin=$(scripts/ref/build-llama-cpp.sh | sed -n 1p)
  backend=cpu
fi
pigpu_arg=$pigpu
[ -x "$llama_bin/llama-bench" ] || { echo "bench-compare: no llama-bench in '$llama_bin'" >&2; exit 2; }
if [ -z "$pigpu" ]; then
  cargo build --release --quiet
  pigpu=./target/release/pigpu
fi
[ -x "$pigpu" ] || { echo "bench-compare: pigpu binary '$pigpu' is not executable" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in "${models[@]}"; do
  [ -f "$m" ] || { echo "bench-compare: model '$m' not found" >&2; exit 2; }
  echo "bench-compare: llama-bench on $(basename "$m")" >&2
  "$llama_bin/llama-bench" -m "$m" -p "$p" -n "$n" -r "$r" -t "$t" ${llama_extra[@]+"${llama_extra[@]}"} -o json > "$tmp/llama-$(basename "$m").json"
  echo "bench-compare: pigpu bench on $(basename "$m")" >&2
  "$pigpu" bench -m "$m" -p "$p" -n "$n" -r "$r" -t "$t" --backend "$backend" -o json > "$tmp/pigpu-$(basename "$m").json"
done

# The command as it was typed, with the device-selecting variables when they were set.
env_prefix=""
for v in GGML_VK_VISIBLE_DEVICES PIGPU_DEVICE; do
  [ -z "${!v:-}" ] || env_prefix+="$v=${!v} "
done
extra_args=""
[ -z "$llama_bin_arg" ] || extra_args+=" --llama-bin ${llama_bin_arg/#$HOME/\~}"
[ -z "$pigpu_arg" ] || extra_args+=" --pigpu ${pigpu_arg/#$HOME/\~}"
report=$(python3 scripts/bench_compare.py "$tmp" \
  "${env_prefix}scripts/bench-compare.sh $(printf '%q ' "${models[@]/#$HOME/~}")-p $p -n $n -r $r -t $t$([ "$vulkan" = 1 ] && echo ' --vulkan')$extra_args")
echo "$report"
[ -z "$out" ] || echo "$report" > "$out"
