#!/usr/bin/env bash
# pigpu's Vulkan engine beside llama.cpp's Vulkan backend on the same GPU and the very same model
# files, in one call on a GPU machine that has no network and takes at most 64 MiB of files.
#
#   scripts/gpu-bench.sh prepare [DIR]   # here (online): everything the GPU machine lacks, in DIR
#   scripts/gpu-bench.sh run [DIR]       # there, from the repo root: writes shaped models, runs
#                                        # both engines on each, prints the ratio table
# DIR defaults to .gpubench (git-ignored). With the device tool: carry [".gpubench"] and run
# `bash scripts/gpu-bench.sh run`.
#
# `prepare` puts in DIR (about 20 MB): pigpu (release, stripped, xz), a static Vulkan
# `llama-bench` (scripts/ref/build-llama-cpp.sh --static-vulkan; stripped, xz), pigpu's
# libudev/libkmod, and the .debs of the Vulkan loader, glvnd and the validation layer.
# `run` unpacks them (no install: .debs go to DIR/root unless the system has the library), sets
# LD_LIBRARY_PATH and VK_DRIVER_FILES for the NVIDIA driver (see docs/benchmarks.md), writes the
# shaped models with `pigpu shape write` (real models do not fit in 64 MiB), runs
# `llama-bench -ngl 99` and `pigpu bench --backend vulkan` on each (tg, pp, tg at depth), and
# prints a markdown table of the ratios; JSON and logs go to $OUT (or DIR/results).
#
# Settings for `run` (environment): GPU_BENCH_MODELS (shape specs, in order; default
# "llama-3.2-3b:q4_k_m smollm2-135m:q4_1 llama-3.2-1b:q4_k_m llama-3.1-8b:q4_k_m"),
# GPU_BENCH_PP (512), GPU_BENCH_TG (128), GPU_BENCH_REPS (3), GPU_BENCH_DEPTH (4096; 0: none),
# GPU_BENCH_DEPTH_MODELS (1: the depth test runs on the first N models), GPU_BENCH_DEPTH_REPS
# (2), GPU_BENCH_BUDGET_S (300: no model is started later than this), GPU_BENCH_LIMIT_S (450:
# every tool is stopped at this, so the run ends within 8 minutes), GPU_BENCH_DEVICE (pigpu
# --device; "llvmpipe" tries the run on lavapipe and makes llama.cpp use it too),
# GPU_BENCH_VALIDATE (1: first, 16 greedy tokens with the Khronos validation layer on).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-.gpubench}"
say() { echo "gpu-bench: $*" >&2; }
die() { say "error: $*"; exit 2; }

# The .debs the GPU machine lacks (Debian 12's work with NVIDIA's 580 driver): the Vulkan
# loader, glvnd (the NVIDIA ICD needs libGLdispatch.so.0, or the loader reports no driver at
# all), the validation layer, and libssl3 (llama-bench links libssl.so.3; unpacked only if missing).
debs=(libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 vulkan-validationlayers libssl3)

prepare() {
  command -v xz >/dev/null || die "xz not found (apt install xz-utils)"
  command -v strip >/dev/null || die "strip not found (apt install binutils)"
  # Leftovers of a local trial run would be carried too (and could pass 64 MiB).
  rm -rf "$dir/work" "$dir/root" "$dir/results"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/debs"
  say "building pigpu (release)"
  nice cargo build --release --quiet
  strip -o "$dir/bin/pigpu" target/release/pigpu
  xz -T0 -9 -f "$dir/bin/pigpu"
  # Shared libraries pigpu links that a bare machine may lack.
  for lib in $(ldd target/release/pigpu | awk '/=> \// {print $3}' | grep -E 'libudev|libkmod'); do
    cp -L "$lib" "$dir/lib/"
  done
  say "building a static Vulkan llama-bench (once; 15 to 60 min on 2 cores)"
  bin=$(scripts/ref/build-llama-cpp.sh --static-vulkan)
  strip -o "$dir/bin/llama-bench" "$bin/llama-bench"
  xz -T0 -9 -f "$dir/bin/llama-bench"
  say "downloading ${debs[*]}"
  rm -f "$dir"/debs/*.deb
  (cd "$dir/debs" && apt-get download "${debs[@]}" >/dev/null)
  local size
  size=$(du -sm "$dir" | cut -f1)
  [ "$size" -lt 60 ] || die "$dir is $size MiB; the GPU machine takes 64 MiB with the repo"
  say "prepared $dir ($size MiB): on the GPU machine run 'bash scripts/gpu-bench.sh run' from the repo root"
}

unxz_to() { # file.xz dest
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
  chmod +x "$2"
}

# Unpacks the carried .debs whose libraries the system does not already have, into DIR/root.
unpack_debs() {
  local root="$1" deb lib sys_libs
  mkdir -p "$root"
  sys_libs=$(ldconfig -p 2>/dev/null || true)
  for deb in "$dir"/debs/*.deb; do
    [ -e "$deb" ] || continue
    # The package's versioned library name (field 6 of the listing; a link shows "-> target").
    lib=$(dpkg-deb -c "$deb" | awk '{print $6}' | grep -E '/lib[^/]*\.so\.[0-9]+$' | head -1 || true)
    if [ -n "$lib" ] && grep -qE "^[[:space:]]$(basename "$lib")[[:space:]]" <<<"$sys_libs"; then
      say "using the system's $(basename "$lib") (not unpacking $(basename "$deb"))"
      continue
    fi
    dpkg-deb -x "$deb" "$root"
  done
}

run() {
  [ -f "$dir/bin/pigpu.xz" ] || die "$dir/bin/pigpu.xz missing (run 'scripts/gpu-bench.sh prepare' first)"
  command -v python3 >/dev/null || die "python3 is needed to read the JSON"
  local start out root work
  start=$(date +%s)
  out="${OUT:-$dir/results}"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  work="$PWD/$dir/work"
  root="$PWD/$dir/root"
  mkdir -p "$work/models"
  # The unpacked binaries, libraries and models stay out of DIR afterwards, so a trial run here
  # does not grow what is carried to the GPU machine.
  # shellcheck disable=SC2064  # expanded now: the locals are gone when the trap runs
  trap "rm -rf '$work' '$root'" EXIT
  unxz_to "$dir/bin/pigpu.xz" "$work/pigpu"
  [ -f "$dir/bin/llama-bench.xz" ] && unxz_to "$dir/bin/llama-bench.xz" "$work/llama-bench"
  unpack_debs "$root"
  local libs="$root/usr/lib/x86_64-linux-gnu:$PWD/$dir/lib"
  [ -d /usr/local/nvidia/lib64 ] && libs="/usr/local/nvidia/lib64:$libs"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export VK_LAYER_PATH="$root/usr/share/vulkan/explicit_layer.d"
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  local pigpu="$work/pigpu" llama="$work/llama-bench"
  # The private root is enough in principle; if the NVIDIA driver still is not seen, do what
  # worked on the H200 machine before (../shared/design/gpu-device-runs.md): unpack into /.
  if [ -n "${VK_DRIVER_FILES:-}" ] && [ "$(id -u)" = 0 ]; then
    local devs
    devs=$("$pigpu" run --list-devices 2>&1 || true)
    if ! grep -qi nvidia <<<"$devs"; then
      say "no NVIDIA device through $root; unpacking the .debs into / and running ldconfig"
      for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" /; done
      ldconfig
    fi
  fi
  local dev_args=()
  if [ -n "${GPU_BENCH_DEVICE:-}" ]; then
    dev_args=(--device "$GPU_BENCH_DEVICE")
    # llama.cpp skips CPU-type devices unless told to use one.
    [ "$GPU_BENCH_DEVICE" = llvmpipe ] && export GGML_VK_VISIBLE_DEVICES=0
  fi
  local models=(${GPU_BENCH_MODELS:-llama-3.2-3b:q4_k_m smollm2-135m:q4_1 llama-3.2-1b:q4_k_m llama-3.1-8b:q4_k_m})
  local pp="${GPU_BENCH_PP:-512}" tg="${GPU_BENCH_TG:-128}" depth="${GPU_BENCH_DEPTH:-4096}"
  local reps="${GPU_BENCH_REPS:-3}" depth_reps="${GPU_BENCH_DEPTH_REPS:-2}"
  local depth_models="${GPU_BENCH_DEPTH_MODELS:-1}"
  local budget="${GPU_BENCH_BUDGET_S:-300}" limit="${GPU_BENCH_LIMIT_S:-450}"
  local profile=()
  "$pigpu" bench --help | grep -q -- '--profile' && profile=(--profile)

  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$pigpu" --version
    "$pigpu" run --list-devices || true
    [ -x "$llama" ] && "$llama" --list-devices 2>&1 | tail -5 || true
  } 2>&1 | tee "$out/environment.txt" >&2

  if [ "${GPU_BENCH_VALIDATE:-0}" = 1 ]; then
    say "validation: 16 greedy tokens of ${models[0]} with the Khronos layer on"
    "$pigpu" shape write "${models[0]}" "$work/models/validate.gguf" >&2
    PIGPU_VK_VALIDATION=1 "$pigpu" run "$work/models/validate.gguf" --backend vulkan "${dev_args[@]}" \
      -p "Hello" -n 16 --temp 0 >"$out/validation.txt" 2>&1 || true
    say "validation errors: $(grep -c 'validation error' "$out/validation.txt" || true)"
    rm -f "$work/models/validate.gguf"
  fi

  # Every tool call gets the time left before the deadline; SIGINT first, so pigpu bench
  # prints the rows it finished (llama-bench's are lost), then SIGKILL 15 s later.
  local deadline=$(( start + limit ))
  left() { local l=$(( deadline - $(date +%s) )); [ "$l" -gt 300 ] && l=300; echo "$l"; }
  timed() { local l; l=$(left); [ "$l" -gt 5 ] || return 124; timeout -s INT -k 15 "$l" "$@"; }
  local m file name i=0
  for m in "${models[@]}"; do
    i=$(( i + 1 ))
    if [ $(( $(date +%s) - start )) -ge "$budget" ]; then
      say "skipping $m: $(( $(date +%s) - start )) s used, budget for starting a model ${budget} s"
      continue
    fi
    name=${m//:/-}
    file="$work/models/$name.gguf"
    say "[$(( $(date +%s) - start )) s] $m: writing"
    "$pigpu" shape write "$m" "$file" --json >"$out/$name.shape.json"
    local d=0
    [ "$i" -le "$depth_models" ] && d=$depth
    if [ -x "$llama" ]; then
      say "$m: llama-bench pp$pp tg$tg"
      timed "$llama" -m "$file" -ngl 99 -p "$pp" -n "$tg" -r "$reps" -o json \
        >"$out/$name.llama.json" 2>"$out/$name.llama.log" || say "$m: llama-bench failed (see $name.llama.log)"
      if [ "$d" -gt 0 ]; then
        say "$m: llama-bench tg$tg at depth $d"
        timed "$llama" -m "$file" -ngl 99 -p 0 -n "$tg" -d "$d" -r "$depth_reps" -o json \
          >"$out/$name.llama-depth.json" 2>>"$out/$name.llama.log" || say "$m: llama-bench at depth failed"
      fi
    fi
    say "$m: pigpu bench pp$pp tg$tg"
    timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p "$pp" -n "$tg" -r "$reps" \
      -o json >"$out/$name.pigpu.json" 2>"$out/$name.pigpu.log" || say "$m: pigpu bench failed or cut short (see $name.pigpu.log)"
    if [ "$d" -gt 0 ]; then
      say "$m: pigpu bench tg$tg at depth $d"
      timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p 0 -n "$tg" -d "$d" \
        -r "$depth_reps" --no-extra -o json >"$out/$name.pigpu-depth.json" 2>>"$out/$name.pigpu.log" \
        || say "$m: pigpu bench at depth failed or cut short"
    fi
    if [ ${#profile[@]} -gt 0 ]; then
      say "$m: pigpu per-op profile"
      timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p "$pp" -n "$tg" -r 1 \
        --no-extra "${profile[@]}" -o json >"$out/$name.profile.json" 2>"$out/$name.profile.txt" \
        || say "$m: profile failed"
    fi
    rm -f "$file"
  done
  python3 scripts/gpu_bench_table.py "$out" "${models[@]}" | tee "$out/table.md"
  say "done in $(( $(date +%s) - start )) s; results in $out"
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
