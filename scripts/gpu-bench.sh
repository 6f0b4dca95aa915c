#!/usr/bin/env bash
# pigpu's Vulkan engine beside llama.cpp's Vulkan backend on the same GPU and the very same model
# files, and `pigpu serve --parallel N` scaling, in one call on a GPU machine that has no network
# and takes at most 64 MiB of files.
#
#   scripts/gpu-bench.sh prepare [DIR]   # here (online): everything the GPU machine lacks, in DIR
#   scripts/gpu-bench.sh run [DIR]       # there, from the repo root: writes shaped models, runs
#                                        # both engines on each, prints the tables
# DIR defaults to .gpubench (git-ignored). With the device tool: carry [".gpubench"] and run
# `bash scripts/gpu-bench.sh run` (docs/benchmarks.md has the exact call).
#
# `prepare` puts in DIR (about 20 MB): pigpu (release, stripped, xz), its unit-test binary (for
# the Vulkan kernel tests), a static Vulkan `llama-bench` (scripts/ref/build-llama-cpp.sh
# --static-vulkan, reused when built; stripped, xz), pigpu's libudev/libkmod, and the .debs of
# the Vulkan loader, glvnd and the validation layer.
# `run` unpacks them (no install: .debs go to DIR/root unless the system has the library), sets
# LD_LIBRARY_PATH and VK_DRIVER_FILES for the NVIDIA driver, runs the kernel tests and 16 greedy
# tokens with the validation layer on, writes the shaped models with `pigpu shape write` (real
# models do not fit in 64 MiB), runs `llama-bench -ngl 99` and `pigpu bench --backend vulkan` on
# each (tg, pp, tg at depth), `pigpu serve --backend vulkan --parallel N` with N concurrent
# clients (scripts/serve_bench.py) on some, and prints two markdown tables: the ratios to
# llama.cpp, and serve's aggregate t/s against one stream. $OUT (or DIR/results) gets table.md,
# summary.json, environment.txt and results.tar.gz (every tool's JSON and log): the device tool
# brings back at most 8 files, so the rest travels packed.
#
# Settings for `run` (environment): GPU_BENCH_MODELS (shape specs, in order; default
# "llama-3.2-3b:q4_k_m smollm2-135m:q4_1 llama-3.2-1b:q4_k_m llama-3.1-8b:q4_k_m"),
# GPU_BENCH_PP (512), GPU_BENCH_TG (128), GPU_BENCH_REPS (3), GPU_BENCH_DEPTH (4096; 0: none),
# GPU_BENCH_DEPTH_MODELS (1: the depth test runs on the first N models), GPU_BENCH_DEPTH_REPS
# (2), GPU_BENCH_SERVE_MODELS (specs also served; default "llama-3.2-3b:q4_k_m smollm2-135m:q4_1";
# empty: none), GPU_BENCH_SERVE_NS ("1 2 4 8"), GPU_BENCH_SERVE_TOKENS (64 per stream),
# GPU_BENCH_SERVE_ROUNDS (2, the best counts), GPU_BENCH_SERVE_S (100: seconds per served model),
# GPU_BENCH_BUDGET_S (300: no model is started later than this), GPU_BENCH_LIMIT_S (450: every
# tool is stopped at this, so the run ends within 8 minutes), GPU_BENCH_DEVICE (pigpu --device;
# "llvmpipe" tries the run on lavapipe and makes llama.cpp use it too), GPU_BENCH_VALIDATE (1:
# 16 greedy tokens of the first model with the Khronos validation layer on; 0: skip),
# GPU_BENCH_KERNEL_TESTS (1: the Vulkan kernel tests, validation on, at most 120 s; 0: skip).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-.gpubench}"
progress_log=""
say() {
  echo "gpu-bench: $*" >&2
  [ -z "$progress_log" ] || echo "[$(date -u +%H:%M:%S)] $*" >>"$progress_log"
}
die() { say "error: $*"; exit 2; }

# The .debs the GPU machine lacks (Debian 12's work with NVIDIA's 580 driver): the Vulkan
# loader, glvnd (the NVIDIA ICD needs libGLdispatch.so.0, or the loader reports no driver at
# all), the validation layer, and libssl3 (llama-bench links libssl.so.3; unpacked only if missing).
debs=(libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 vulkan-validationlayers libssl3)
# The ones that may be unpacked into / when the private root is not enough (never libssl3 or the
# layer: the system's own copies must stay).
root_debs=(libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)

prepare() {
  command -v xz >/dev/null || die "xz not found (apt install xz-utils)"
  command -v strip >/dev/null || die "strip not found (apt install binutils)"
  # Leftovers of a local trial run would be carried too (and could pass 64 MiB).
  rm -rf "$dir/work" "$dir/root" "$dir/results"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/debs"
  say "building pigpu and its unit tests (release)"
  nice cargo build --release --quiet
  strip -o "$dir/bin/pigpu" target/release/pigpu
  xz -T0 -9 -f "$dir/bin/pigpu"
  local tests
  tests=$(nice cargo test --release --lib --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "lib" in m["target"]["kind"]:
        print(m["executable"])')
  [ -x "$tests" ] || die "the unit-test binary was not found (cargo test --release --lib --no-run)"
  strip -o "$dir/bin/pigpu-tests" "$tests"
  xz -T0 -6 -f "$dir/bin/pigpu-tests"
  # Shared libraries pigpu links that a bare machine may lack.
  for lib in $(ldd target/release/pigpu | awk '/=> \// {print $3}' | grep -E 'libudev|libkmod'); do
    cp -L "$lib" "$dir/lib/"
  done
  local bin
  bin=$(scripts/ref/build-llama-cpp.sh --static-vulkan)
  # Built once (15 to 60 min on 2 cores) and reused; compressed again only when rebuilt.
  if [ ! "$dir/bin/llama-bench.xz" -nt "$bin/llama-bench" ]; then
    strip -o "$dir/bin/llama-bench" "$bin/llama-bench"
    xz -T0 -9 -f "$dir/bin/llama-bench"
  fi
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

# Waits until the server on $1 answers /health with 200 (it says 503 while loading), for at
# most $2 seconds; fails if it does not.
wait_ready() {
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1] + "/health", float(sys.argv[2])
end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
}

run() {
  [ -f "$dir/bin/pigpu.xz" ] || die "$dir/bin/pigpu.xz missing (run 'scripts/gpu-bench.sh prepare' first)"
  command -v python3 >/dev/null || die "python3 is needed to read the JSON"
  local start out root work raw
  start=$(date +%s)
  out="${OUT:-$dir/results}"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  work="$PWD/$dir/work"
  root="$PWD/$dir/root"
  raw="$work/raw"
  mkdir -p "$work/models" "$raw"
  progress_log="$raw/progress.log"
  # The unpacked binaries, libraries and models stay out of DIR afterwards, so a trial run here
  # does not grow what is carried to the GPU machine; a server still up is stopped.
  serve_pid=""
  # shellcheck disable=SC2064  # the paths are expanded now, serve_pid when the trap runs
  trap "[ -z \"\$serve_pid\" ] || kill \"\$serve_pid\" 2>/dev/null; rm -rf '$work' '$root'" EXIT
  unxz_to "$dir/bin/pigpu.xz" "$work/pigpu"
  [ -f "$dir/bin/llama-bench.xz" ] && unxz_to "$dir/bin/llama-bench.xz" "$work/llama-bench"
  [ -f "$dir/bin/pigpu-tests.xz" ] && unxz_to "$dir/bin/pigpu-tests.xz" "$work/pigpu-tests"
  unpack_debs "$root"
  local libs="$root/usr/lib/x86_64-linux-gnu:$PWD/$dir/lib"
  [ -d /usr/local/nvidia/lib64 ] && libs="/usr/local/nvidia/lib64:$libs"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export VK_LAYER_PATH="$root/usr/share/vulkan/explicit_layer.d"
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  local pigpu="$work/pigpu" llama="$work/llama-bench" tests="$work/pigpu-tests"
  # The private root is enough in principle; if the NVIDIA driver still is not seen, do what
  # worked on the H200 machine before (../shared/design/gpu-device-runs.md): unpack into /.
  if [ -n "${VK_DRIVER_FILES:-}" ] && [ "$(id -u)" = 0 ]; then
    local devs deb
    devs=$("$pigpu" run --list-devices 2>&1 || true)
    if ! grep -qi nvidia <<<"$devs"; then
      say "no NVIDIA device through $root; unpacking the loader and glvnd into / and running ldconfig"
      for deb in "${root_debs[@]}"; do dpkg-deb -x "$dir"/debs/"$deb"_*.deb /; done
      ldconfig
    fi
  fi
  local dev_args=() test_dev=NVIDIA
  if [ -n "${GPU_BENCH_DEVICE:-}" ]; then
    dev_args=(--device "$GPU_BENCH_DEVICE")
    test_dev=$GPU_BENCH_DEVICE
    # llama.cpp skips CPU-type devices unless told to use one.
    [ "$GPU_BENCH_DEVICE" = llvmpipe ] && export GGML_VK_VISIBLE_DEVICES=0
  fi
  local models=(${GPU_BENCH_MODELS:-llama-3.2-3b:q4_k_m smollm2-135m:q4_1 llama-3.2-1b:q4_k_m llama-3.1-8b:q4_k_m})
  local served="${GPU_BENCH_SERVE_MODELS-llama-3.2-3b:q4_k_m smollm2-135m:q4_1}"
  local pp="${GPU_BENCH_PP:-512}" tg="${GPU_BENCH_TG:-128}" depth="${GPU_BENCH_DEPTH:-4096}"
  local reps="${GPU_BENCH_REPS:-3}" depth_reps="${GPU_BENCH_DEPTH_REPS:-2}"
  local depth_models="${GPU_BENCH_DEPTH_MODELS:-1}"
  local budget="${GPU_BENCH_BUDGET_S:-300}" limit="${GPU_BENCH_LIMIT_S:-450}"
  local specs=("${models[@]}") m
  for m in $served; do
    [[ " ${specs[*]} " == *" $m "* ]] || specs+=("$m")
  done
  local profile=()
  "$pigpu" bench --help | grep -q -- '--profile' && profile=(--profile)

  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$pigpu" --version
    echo "pigpu commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$pigpu" run --list-devices || true
    [ -x "$llama" ] && "$llama" --list-devices 2>&1 | tail -5 || true
  } 2>&1 | tee "$raw/environment.txt" >&2
  cp "$raw/environment.txt" "$out/"

  # Every tool call gets the time left before the deadline; SIGINT first, so pigpu bench
  # prints the rows it finished (llama-bench's are lost), then SIGKILL 15 s later.
  local deadline=$(( start + limit ))
  left() { local l=$(( deadline - $(date +%s) )); [ "$l" -gt 300 ] && l=300; echo "$l"; }
  timed() { local l; l=$(left); [ "$l" -gt 5 ] || return 124; timeout -s INT -k 15 "$l" "$@"; }
  elapsed() { echo $(( $(date +%s) - start )); }
  # The tables so far into $OUT, and everything raw packed beside them: a run cut short by the
  # device tool's own limit still brings back what finished.
  pack() {
    python3 scripts/gpu_bench_table.py "$raw" "${specs[@]}" >"$raw/table.md" 2>>"$progress_log" || true
    cp "$raw/table.md" "$out/" 2>/dev/null || true
    cp "$raw/summary.json" "$out/" 2>/dev/null || true
    tar -czf "$out/results.tar.gz.part" -C "$raw" . && mv "$out/results.tar.gz.part" "$out/results.tar.gz" \
      || say "packing the results failed"
  }

  if [ "${GPU_BENCH_KERNEL_TESTS:-1}" = 1 ] && [ -x "$tests" ]; then
    say "[$(elapsed) s] Vulkan kernel tests on '$test_dev', validation on"
    local l; l=$(left); [ "$l" -gt 120 ] && l=120
    PIGPU_TEST_DEVICE=$test_dev timeout -k 5 "$l" "$tests" engine::vulkan::tests --test-threads 1 \
      >"$raw/kernel-tests.txt" 2>&1 || say "kernel tests failed or cut short (see kernel-tests.txt)"
    say "kernel tests: $(grep -E '^test result' "$raw/kernel-tests.txt" || echo 'no result line')"
  fi

  # The steps in order of what matters most (issue 11's headline ratios, issue 15's scaling,
  # issue 11's depth target, then the other shapes and the per-op profiles); none is started
  # after the budget. A model is written once, on first use, and kept until the end.
  local steps=() k=0
  for m in "${models[@]}"; do
    k=$(( k + 1 ))
    if [ "$k" -le 2 ]; then steps+=("main $m"); fi
  done
  for m in $served; do steps+=("serve $m"); done
  k=0
  for m in "${models[@]}"; do
    k=$(( k + 1 ))
    if [ "$k" -le "$depth_models" ] && [ "$depth" -gt 0 ]; then steps+=("depth $m"); fi
  done
  k=0
  for m in "${models[@]}"; do
    k=$(( k + 1 ))
    if [ "$k" -gt 2 ]; then steps+=("main $m"); fi
  done
  if [ ${#profile[@]} -gt 0 ]; then
    for m in "${models[@]}"; do steps+=("profile $m"); done
  fi
  say "steps: ${steps[*]}"

  local step kind file name first=1
  for step in "${steps[@]}"; do
    kind=${step%% *}
    m=${step#* }
    if [ "$(elapsed)" -ge "$budget" ]; then
      say "skipping $step: $(elapsed) s used, no step starts after ${budget} s"
      continue
    fi
    name=${m//:/-}
    file="$work/models/$name.gguf"
    if [ ! -f "$file" ]; then
      say "[$(elapsed) s] $m: writing"
      "$pigpu" shape write "$m" "$file" --json >"$raw/$name.shape.json" \
        || { say "$m: shape write failed"; rm -f "$file"; continue; }
    fi
    say "[$(elapsed) s] $step"
    case "$kind" in
      main)
        if [ "$first" = 1 ] && [ "${GPU_BENCH_VALIDATE:-1}" = 1 ]; then
          say "$m: 16 greedy tokens with the Khronos validation layer on"
          # PIGPU_VK_DEBUG logs each layer message; without it errors are only collected.
          PIGPU_VK_VALIDATION=1 PIGPU_VK_DEBUG=1 timed "$pigpu" run "$file" --backend vulkan \
            "${dev_args[@]}" -p "Hello" -n 16 --temp 0 >"$raw/validation.txt" 2>&1 \
            || say "$m: the validation run failed (see validation.txt)"
          say "$m: validation errors: $(grep -c 'vulkan validation error' "$raw/validation.txt" || true)"
        fi
        first=0
        if [ -x "$llama" ]; then
          say "$m: llama-bench pp$pp tg$tg"
          timed "$llama" -m "$file" -ngl 99 -p "$pp" -n "$tg" -r "$reps" -o json \
            >"$raw/$name.llama.json" 2>"$raw/$name.llama.log" || say "$m: llama-bench failed (see $name.llama.log)"
        fi
        say "$m: pigpu bench pp$pp tg$tg"
        timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p "$pp" -n "$tg" -r "$reps" \
          -o json >"$raw/$name.pigpu.json" 2>"$raw/$name.pigpu.log" \
          || say "$m: pigpu bench failed or cut short (see $name.pigpu.log)"
        ;;
      serve) serve_scaling "$m" "$file" "$name" ;;
      depth)
        if [ -x "$llama" ]; then
          say "$m: llama-bench tg$tg at depth $depth"
          timed "$llama" -m "$file" -ngl 99 -p 0 -n "$tg" -d "$depth" -r "$depth_reps" -o json \
            >"$raw/$name.llama-depth.json" 2>>"$raw/$name.llama-depth.log" || say "$m: llama-bench at depth failed"
        fi
        say "$m: pigpu bench tg$tg at depth $depth"
        timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p 0 -n "$tg" -d "$depth" \
          -r "$depth_reps" --no-extra -o json >"$raw/$name.pigpu-depth.json" 2>>"$raw/$name.pigpu-depth.log" \
          || say "$m: pigpu bench at depth failed or cut short"
        ;;
      profile)
        timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p "$pp" -n "$tg" -r 1 \
          --no-extra "${profile[@]}" -o json >"$raw/$name.profile.json" 2>"$raw/$name.profile.txt" \
          || say "$m: profile failed"
        ;;
    esac
    pack
  done
  rm -rf "$work/models"
  say "done in $(elapsed) s; $out has table.md, summary.json, environment.txt, results.tar.gz"
  cat "$out/table.md"
}

# `pigpu serve --backend vulkan --parallel N` on one model file, each N in its own server, with
# N concurrent greedy chat clients (scripts/serve_bench.py): aggregate generated tokens/s. Runs
# inside run(), whose locals it reads; at most GPU_BENCH_SERVE_S seconds for all N together.
serve_scaling() { # spec file name
  local m=$1 file=$2 name=$3 n l stop port=18123
  local tokens="${GPU_BENCH_SERVE_TOKENS:-64}" rounds="${GPU_BENCH_SERVE_ROUNDS:-2}"
  stop=$(( $(date +%s) + ${GPU_BENCH_SERVE_S:-100} ))
  [ "$stop" -le "$deadline" ] || stop=$deadline
  for n in ${GPU_BENCH_SERVE_NS:-1 2 4 8}; do
    l=$(( stop - $(date +%s) ))
    if [ "$l" -lt 15 ]; then
      say "$m: serve --parallel $n skipped ($l s left of its budget)"
      continue
    fi
    say "[$(elapsed) s] $m: serve --parallel $n, $n clients × $tokens tokens"
    # Context per slot: the longest chat prompt of serve_bench.py plus the tokens, with room.
    "$pigpu" serve "$file" --backend vulkan "${dev_args[@]}" --parallel "$n" --ctx 1024 \
      --port "$port" >"$raw/$name.serve-$n.log" 2>&1 &
    serve_pid=$!
    if wait_ready "http://127.0.0.1:$port" "$l"; then
      l=$(( stop - $(date +%s) ))
      [ "$l" -gt 5 ] || l=5
      timeout -k 5 "$l" python3 scripts/serve_bench.py "http://127.0.0.1:$port" "$n" "$tokens" \
        "$rounds" >"$raw/$name.serve-$n.json" 2>>"$raw/$name.serve-$n.log" \
        || say "$m: serve --parallel $n: the client failed or was cut short (see $name.serve-$n.log)"
    else
      say "$m: serve --parallel $n did not become ready (see $name.serve-$n.log)"
    fi
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=""
  done
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
