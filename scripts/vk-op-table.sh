#!/usr/bin/env bash
# The Vulkan engine's per-op GPU-time table (`pigpu bench --profile`) on a model, for one build
# or for two side by side (B / A per op), measured in one run: the builds take turns (A B A B ...)
# and each op keeps its fastest round, since a shared machine only ever adds time.
#
# Usage: scripts/vk-op-table.sh [-m MODEL] [-p 64] [-n 16] [-r 2] [--rounds 2] [--device llvmpipe]
#                               [--out FILE] PIGPU_A [PIGPU_B]
#   -m        model (default: the SmolLM2 test model in ~/.cache/pigpu/models)
#   -p / -n   prompt test ppP (its "prompt" phase) and generation test tgN (its "decode" phase)
#   -r        repetitions per bench call (after bench's own warm-up, which is not profiled)
#   --device  Vulkan device (default llvmpipe: lavapipe)
#   --out     also write the markdown table to FILE
# Example (main before vs after a change, in one run):
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release)
#   scripts/vk-op-table.sh /tmp/before/target/release/pigpu target/release/pigpu
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}"
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf" p=64 n=16 r=2 rounds=2 device=llvmpipe out=""
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model="$2"; shift ;;
    -p) p="$2"; shift ;;
    -n) n="$2"; shift ;;
    -r) r="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --device) device="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "vk-op-table: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) bins+=("$1") ;;
  esac
  shift
done
if [ ${#bins[@]} -lt 1 ] || [ ${#bins[@]} -gt 2 ]; then
  echo "vk-op-table: give one or two pigpu binaries (see --help)" >&2
  exit 2
fi
[ -f "$model" ] || { echo "vk-op-table: model $model not found (scripts/fetch-models.sh)" >&2; exit 2; }
for b in "${bins[@]}"; do
  [ -x "$b" ] || { echo "vk-op-table: $b is not an executable" >&2; exit 2; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=()
for round in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    f="$tmp/$i-$round.json"
    echo "vk-op-table: round $round/$rounds, build $((i + 1)): ${bins[$i]}" >&2
    "${bins[$i]}" bench -m "$model" --backend vulkan --device "$device" -p "$p" -n "$n" \
      -r "$r" --no-extra --profile -o json > "$f" 2> "$tmp/$i-$round.err" || {
      cat "$tmp/$i-$round.err" >&2
      exit 1
    }
    files+=("$i:$f")
  done
done
python3 scripts/vk_op_table.py "${bins[@]/#/--bin=}" "${files[@]}" | tee ${out:+"$out"}
