#!/usr/bin/env bash
# Makes (once) a Python virtual environment with the official `openai` client from PyPI, cached
# outside the repo, for the `pigpu serve` tests; prints the venv's python on stdout.
# Usage: scripts/openai-venv.sh [--litellm]   (--litellm: a second venv with litellm[proxy])
# Cache: $PIGPU_VENV_DIR, else ~/.cache/pigpu/venv-openai (venv-litellm with --litellm).
set -euo pipefail

name=openai
pkgs=("openai>=1.40,<3")
if [ "${1:-}" = "--litellm" ]; then
  name=litellm
  pkgs=("litellm[proxy]" "openai>=1.40,<3")
fi
dir="${PIGPU_VENV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pigpu/venv-$name}"
marker="$dir/.pigpu-ok"
if [ ! -f "$marker" ]; then
  python3 -m venv --help >/dev/null 2>&1 || { echo "openai-venv: python3 -m venv is missing (apt install python3-venv)" >&2; exit 2; }
  echo "openai-venv: creating $dir (${pkgs[*]} from PyPI)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" >&2
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" >&2
  touch "$marker"
fi
echo "$dir/bin/python"
