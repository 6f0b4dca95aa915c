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
# clients (scripts/serve_bench.py) on some, per-op profiles, then in the time left before the
# limit a sweep of the engine's PIGPU_VK_* knobs on the first model, and prints three markdown
# tables: the ratios to llama.cpp, serve's aggregate t/s against one stream, and each knob
# variant's t/s against the defaults. $OUT (or DIR/results) gets table.md,
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
# "llvmpipe" tries the run on lavapipe and makes llama.cpp use it too, with pigpu's choices made
# as on a GPU: PIGPU_VK_AS=gpu unless set), GPU_BENCH_VALIDATE (1:
# 16 greedy tokens of the first model with the Khronos validation layer on; 0: skip),
# GPU_BENCH_KERNEL_TESTS (1: the Vulkan kernel tests, validation on, at most 120 s; 0: skip).
# The knob sweep (last, in the time left up to GPU_BENCH_LIMIT_S, see sweep() below):
# GPU_BENCH_SWEEP (1; 0: skip), GPU_BENCH_SWEEP_MODEL (the first of GPU_BENCH_MODELS),
# GPU_BENCH_SWEEP_S (150: most seconds it takes), GPU_BENCH_SWEEP_PP (GPU_BENCH_PP),
# GPU_BENCH_SWEEP_TG (64, or GPU_BENCH_TG if smaller), GPU_BENCH_SWEEP_DEPTH (GPU_BENCH_DEPTH;
# 0: no variants at depth), GPU_BENCH_SWEEP_REPS (2), GPU_BENCH_SWEEP_VARIANTS (the list, one
# "KIND VAR=VALUE..." a line, KIND tg, pp, depth, turn or serve; default: sweep_variants below).
# For prepare: GPU_BENCH_LLAMA (1; 0: no llama-bench is built or carried, so `run` measures
# pigpu alone: for a trial on lavapipe where the static llama-bench is not built yet).
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
# The llama-cpp-python release whose llama.cpp scripts/ref/build-llama-cpp.sh builds.
llama_version=$(sed -n 's/^version=//p' scripts/ref/build-llama-cpp.sh)

prepare() {
  command -v xz >/dev/null || die "xz not found (apt install xz-utils)"
  command -v strip >/dev/null || die "strip not found (apt install binutils)"
  command -v apt-get >/dev/null || die "apt-get not found (the .debs come from Debian's archive)"
  local t0
  t0=$(date +%s)
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
  if [ "${GPU_BENCH_LLAMA:-1}" = 0 ]; then
    rm -f "$dir/bin/llama-bench.xz"
    say "GPU_BENCH_LLAMA=0: no llama-bench carried; run will measure pigpu alone (no ratios)"
  else
    say "the static Vulkan llama-bench (scripts/ref/build-llama-cpp.sh --static-vulkan: reused when built, else 40+ min on 2 cores)"
    bin=$(scripts/ref/build-llama-cpp.sh --static-vulkan)
    # Built once (15 to 60 min on 2 cores) and reused; compressed again only when rebuilt.
    if [ ! "$dir/bin/llama-bench.xz" -nt "$bin/llama-bench" ]; then
      strip -o "$dir/bin/llama-bench" "$bin/llama-bench"
      xz -T0 -9 -f "$dir/bin/llama-bench"
    fi
  fi
  say "downloading ${debs[*]}"
  rm -f "$dir"/debs/*.deb
  (cd "$dir/debs" && apt-get download "${debs[@]}" >/dev/null) \
    || die "apt-get download failed (run 'apt-get update' once first)"
  # What the binaries were built from: the GPU machine's copy of the tree has no .git, so `run`
  # prints this into environment.txt.
  {
    echo "prepared: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "pigpu commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      "($(git status --porcelain --untracked-files=no 2>/dev/null | wc -l) files changed since)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    if [ -f "$dir/bin/llama-bench.xz" ]; then
      echo "llama-bench: llama-cpp-python $llama_version's llama.cpp, static Vulkan (scripts/ref/build-llama-cpp.sh --static-vulkan)"
    else
      echo "llama-bench: none carried (GPU_BENCH_LLAMA=0)"
    fi
  } >"$dir/provenance.txt"
  # The device tool carries the working tree (tracked and untracked files git does not ignore)
  # and DIR together, 64 MiB at most.
  local size tree
  size=$(du -sm "$dir" | cut -f1)
  tree=$(git ls-files -co --exclude-standard -z 2>/dev/null | du --files0-from=- -cm 2>/dev/null | tail -1 | cut -f1)
  tree=${tree:-0}
  [ $(( size + tree )) -lt 62 ] \
    || die "$dir is $size MiB and the working tree $tree MiB; the GPU machine takes 64 MiB in all"
  say "prepared $dir ($size MiB, with the working tree $(( size + tree )) MiB of the 64 allowed) in $(( $(date +%s) - t0 )) s:"
  say "on the GPU machine run 'bash scripts/gpu-bench.sh run' from the repo root"
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

# Stops the server in serve_pid: SIGTERM, then SIGKILL if it is still up 10 s later. On SIGTERM
# `pigpu serve` finishes the requests in flight, and a client cut by its time limit leaves one
# running: on lavapipe (2026-12-06) that took 35 s past the serve budget, on a slow device it
# could pass the run's limit.
stop_server() {
  [ -n "$serve_pid" ] || return 0
  kill "$serve_pid" 2>/dev/null || true
  local i
  for i in $(seq 20); do
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
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
    # llama.cpp skips CPU-type devices unless told to use one; pigpu makes every choice as
    # on a GPU (PIGPU_VK_AS=gpu, unless set), so the trial runs the kernels the GPU will.
    if [ "$GPU_BENCH_DEVICE" = llvmpipe ]; then
      export GGML_VK_VISIBLE_DEVICES=0
      export PIGPU_VK_AS="${PIGPU_VK_AS:-gpu}"
    fi
  fi
  # No NVIDIA device after all that: every step would fail for the whole limit. Stop within
  # seconds instead, with what the loader saw, so the session still has device time to retry.
  if [ -z "${GPU_BENCH_DEVICE:-}" ] && ! "$pigpu" run --list-devices 2>/dev/null | grep -qi nvidia; then
    {
      echo "no NVIDIA Vulkan device; LD_LIBRARY_PATH=$LD_LIBRARY_PATH VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
      VK_LOADER_DEBUG=error,warn,driver "$pigpu" run --list-devices 2>&1 | tail -40
      ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
      ldconfig -p 2>/dev/null | grep -E 'libvulkan|libGLdispatch|libGLX_nvidia|libnvidia' | head -20
      if command -v nvidia-smi >/dev/null; then nvidia-smi -L; fi
    } >"$out/no-device.txt" 2>&1 || true
    cat "$out/no-device.txt" >&2
    die "no NVIDIA device is listed (see no-device.txt); GPU_BENCH_DEVICE=llvmpipe runs on lavapipe"
  fi
  local models=(${GPU_BENCH_MODELS:-llama-3.2-3b:q4_k_m smollm2-135m:q4_1 llama-3.2-1b:q4_k_m llama-3.1-8b:q4_k_m})
  local served="${GPU_BENCH_SERVE_MODELS-llama-3.2-3b:q4_k_m smollm2-135m:q4_1}"
  local pp="${GPU_BENCH_PP:-512}" tg="${GPU_BENCH_TG:-128}" depth="${GPU_BENCH_DEPTH:-4096}"
  local reps="${GPU_BENCH_REPS:-3}" depth_reps="${GPU_BENCH_DEPTH_REPS:-2}"
  local depth_models="${GPU_BENCH_DEPTH_MODELS:-1}"
  local budget="${GPU_BENCH_BUDGET_S:-300}" limit="${GPU_BENCH_LIMIT_S:-450}"
  local sweep_model="${GPU_BENCH_SWEEP_MODEL:-${models[0]}}"
  local specs=("${models[@]}") m
  for m in $served $sweep_model; do
    [[ " ${specs[*]} " == *" $m "* ]] || specs+=("$m")
  done
  local profile=()
  "$pigpu" bench --help | grep -q -- '--profile' && profile=(--profile)

  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$pigpu" --version
    if [ -f "$dir/provenance.txt" ]; then
      cat "$dir/provenance.txt"
    else
      echo "pigpu commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    fi
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
    # The kernel tests choose their own paths (PIGPU_VK_AS would change the device's defaults).
    PIGPU_TEST_DEVICE=$test_dev timeout -k 5 "$l" env -u PIGPU_VK_AS "$tests" engine::vulkan::tests --test-threads 1 \
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
  # Last, and the one step that may start after the budget: the knob sweep fills the time the
  # others leave before the limit (it stops itself in time; see sweep()).
  [ "${GPU_BENCH_SWEEP:-1}" = 0 ] || steps+=("sweep $sweep_model")
  say "steps: ${steps[*]}"

  local step kind file name first=1
  for step in "${steps[@]}"; do
    kind=${step%% *}
    m=${step#* }
    if [ "$kind" != sweep ] && [ "$(elapsed)" -ge "$budget" ]; then
      say "skipping $step: $(elapsed) s used, no step starts after ${budget} s"
      continue
    fi
    if [ "$kind" = sweep ] && [ "$(left)" -lt 30 ]; then
      say "skipping $step: $(left) s left before the ${limit} s limit"
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
      sweep) sweep "$m" "$file" "$name" ;;
      profile)
        timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" -p "$pp" -n "$tg" -r 1 \
          --no-extra "${profile[@]}" -o json >"$raw/$name.profile.json" 2>"$raw/$name.profile.txt" \
          || say "$m: profile failed"
        # The first model again with the RMSNorm as its own pass: its `rms_norm` op beside the
        # un-fused products, against the fused ones above (docs/vulkan.md, "RMSNorm once per
        # token").
        if [ "$m" = "${models[0]}" ]; then
          PIGPU_VK_NORM=pass timed "$pigpu" bench -m "$file" --backend vulkan "${dev_args[@]}" \
            -p "$pp" -n "$tg" -r 1 --no-extra "${profile[@]}" -o json \
            >"$raw/$name.profile-norm-pass.json" 2>"$raw/$name.profile-norm-pass.txt" \
            || say "$m: profile with PIGPU_VK_NORM=pass failed"
        fi
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
    stop_server
  done
}

# The knob sweep's variants, in order of expected information: KIND (tg: decode, -p 0 -n T;
# pp: prompt, -p P -n 0; depth: decode at depth, -p 0 -n T -d D; turn: a chat turn's short
# prompt at depth, -p 32 -n 0 -d D (its attention split over the KV range); serve: `pigpu serve
# --parallel 4` with 4 clients of T tokens, whose batched decode runs the 8-token mat-mat) and
# the PIGPU_VK_* settings that make the variant, one knob changed from the defaults
# (docs/vulkan.md, "Tuning from the sweep"). ONE in a value is a PIGPU_VK_ATTN_CHUNK covering
# the whole context: one split, the split attention off. Decode is pigpu's largest gap to
# llama.cpp, so its mat-vec shapes come first, interleaved with the prompt mat-mat's vec4 forms
# (PIGPU_VK_TILED: the candidates for the prompt default), then the prompt tile, the split
# attention's kernel at depth (PIGPU_VK_ATTN=rows: the one-key-per-lane kernel against the
# default staged one), RoPE and the KV write folded into the split attention
# (PIGPU_VK_ROPE=fold: one dispatch a layer fewer, every split workgroup rotating its queries;
# in decode and at depth, against the default rope_kv pass), the short prompt at depth with its
# attention in one pass (PIGPU_VK_PROMPT_SPLIT=1, against the default split), the split count at depth (each
# depth call prefills D tokens per repetition, so those are the dearest) and the batched
# decode's mat-mat shape. NORM=pass is the RMSNorm as a pass of its own before the norm-fused
# products (decode and prompt; its per-op profile is NAME.profile-norm-pass.txt). SAMPLER=one
# is the one-workgroup sampler (what CPU implementations run) against the default two-stage one. On the 3B shape at pp512 the automatic tile
# is l everywhere, so TILE=l is a control (it should read 1.00×). WEIGHTS=texel is the one
# variant of two knobs: texel weight reads serve only the tree and lane paths, so it goes with
# the tree-path shape of the row before it (its ratio against that row is the texel effect).
sweep_variants="tg PIGPU_VK_MATVEC=64,2,2
tg PIGPU_VK_NORM=pass
pp PIGPU_VK_TILED=vec4
tg PIGPU_VK_ROPE=fold
tg PIGPU_VK_MATVEC=128,4,2
pp PIGPU_VK_TILED=vec4pf
pp PIGPU_VK_TILE=m
depth PIGPU_VK_ATTN=rows
depth PIGPU_VK_ROPE=fold
turn PIGPU_VK_PROMPT_SPLIT=1
pp PIGPU_VK_NORM=pass
tg PIGPU_VK_SAMPLER=one
depth PIGPU_VK_ATTN_CHUNK=ONE
tg PIGPU_VK_MATVEC=256,2,2
tg PIGPU_VK_MATVEC=128,2,0
tg PIGPU_VK_MATVEC=128,2,0 PIGPU_VK_WEIGHTS=texel
pp PIGPU_VK_TILE=s
serve PIGPU_VK_MATMUL=64,2,0
depth PIGPU_VK_ATTN_CHUNK=128
tg PIGPU_VK_MATVEC=128,1,2
pp PIGPU_VK_PROMPT=matvec
serve PIGPU_VK_MATMUL=32,4,0
tg PIGPU_VK_MATVEC=32,2,2
depth PIGPU_VK_ATTN_CHUNK=512
pp PIGPU_VK_UBATCH=256
serve PIGPU_VK_MATMUL=32,2,1
tg PIGPU_VK_MATVEC=32,1,1
tg PIGPU_VK_MATVEC=64,4,2
depth PIGPU_VK_ATTN_CHUNK=64
pp PIGPU_VK_TILE=l
serve PIGPU_VK_MATMUL=128,2,0
tg PIGPU_VK_MATVEC=32,4,0"

# Seconds a depth call should take, from the default pp and tg calls: the pp call's wall time
# less its runs is the load; then a warm-up and the repetitions, each prefilling D tokens at
# the pp call's rate and decoding as the tg call did.
sweep_depth_cost() { # pp.json pp_wall_s tg.json reps depth pp
  python3 - "$@" <<'PY'
import json, sys
pp_json, pp_wall, tg_json, reps, depth, pp = sys.argv[1:]
def run_s(path):
    try:
        with open(path, encoding="utf-8") as f:
            return sum(r["avg_ns"] for r in json.load(f)) / 1e9
    except (OSError, ValueError, KeyError, TypeError):
        return None
p, t, runs = run_s(pp_json), run_s(tg_json), int(reps) + 1
if p is None or t is None:
    print(60)
else:
    load = max(float(pp_wall) - 2 - runs * p, 0.0)
    print(int(load + runs * (p * int(depth) / int(pp) + t)) + 2)
PY
}

# One knob at a time on one model file: each variant is one `pigpu bench -o json` call (a
# fresh process: the knobs are read once at start), its JSON in NAME.sweep-NN.json and its
# settings in NAME.sweep.tsv (seq, kind, env, role, wall s, exit status) for
# scripts/gpu_bench_table.py. The default of a kind is measured before its first variant and
# again at the end ("again": the drift between the two is the noise to read the ratios
# against). Runs inside run(), whose locals it reads; takes at most GPU_BENCH_SWEEP_S seconds
# and ends 10 s before the limit, keeping time for the closing defaults: a variant starts only
# if its estimated cost (its kind's default call, plus 2 s) fits beside them, and is stopped at
# three times that.
sweep() { # spec file name
  local m=$1 file=$2 name=$3
  local s_pp="${GPU_BENCH_SWEEP_PP:-$pp}" s_tg="${GPU_BENCH_SWEEP_TG:-}" s_depth="${GPU_BENCH_SWEEP_DEPTH:-$depth}"
  local s_reps="${GPU_BENCH_SWEEP_REPS:-2}" stop index line kind seen=" " item
  if [ -z "$s_tg" ]; then
    s_tg=64
    [ "$tg" -ge 64 ] || s_tg=$tg
  fi
  stop=$(( $(date +%s) + ${GPU_BENCH_SWEEP_S:-150} ))
  [ "$stop" -le $(( deadline - 10 )) ] || stop=$(( deadline - 10 ))
  index="$raw/$name.sweep.tsv"
  printf 'seq\tkind\tenv\trole\twall_s\trc\n' >"$index"
  # The queue: each kind's default before its first variant, the defaults again at the end.
  local queue=()
  while IFS= read -r line; do
    line=$(echo "${line%%#*}" | xargs)
    [ -n "$line" ] || continue
    kind=${line%% *}
    case "$kind" in
      tg | pp | serve) ;;
      depth | turn) [ "$s_depth" -gt 0 ] || continue ;;
      *) say "sweep: '$line' skipped: the kind must be tg, pp, depth, turn or serve"; continue ;;
    esac
    [ "$line" != "$kind" ] || { say "sweep: '$line' skipped: no setting"; continue; }
    if [[ "$seen" != *" $kind "* ]]; then
      queue+=("$kind default -")
      seen+="$kind "
    fi
    queue+=("$kind variant ${line#* }")
  done <<<"${GPU_BENCH_SWEEP_VARIANTS:-$sweep_variants}"
  for kind in tg pp serve depth turn; do
    [[ "$seen" != *" $kind "* ]] || queue+=("$kind again -")
  done
  say "sweep of $m: ${#queue[@]} calls (tg$s_tg, pp$s_pp, tg$s_tg @ d$s_depth; -r $s_reps) until $(( stop - start )) s"
  local -A est=() measured=() first=()
  local seq=0 role vars v args tag t0 wall rc need reserve now l one
  for item in "${queue[@]}"; do
    read -r kind role vars <<<"$item"
    now=$(date +%s)
    # What a kind's call costs: its default's wall time; before that, a guess from the others
    # (a depth call prefills D tokens per repetition, where a pp call prefills P).
    if [ -n "${est[$kind]:-}" ]; then
      need=${est[$kind]}
    elif [[ "$kind" = depth || "$kind" = turn ]] && [ -n "${est[pp]:-}" ] && [ -n "${est[tg]:-}" ]; then
      need=$(sweep_depth_cost "$raw/$name.sweep-${first[pp]}.json" "${est[pp]}" \
        "$raw/$name.sweep-${first[tg]}.json" "$s_reps" "$s_depth" "$s_pp")
    else
      need=20
    fi
    reserve=0
    if [ "$role" != again ]; then
      reserve=$(( ${est[tg]:-0} + ${est[pp]:-0} ))
      if [ "$role" = variant ] && [ -z "${measured[$kind]:-}" ]; then
        say "sweep: $kind $vars skipped: its default was not measured"
        continue
      fi
    elif [ -z "${measured[$kind]:-}" ]; then
      continue
    fi
    l=$(( stop - now - reserve ))
    if [ "$l" -lt "$need" ]; then
      say "sweep: $kind $role $vars skipped: ${l} s left for it, it takes about ${need} s"
      continue
    fi
    # A variant three times as dear as its defaults is slow enough to know without its figure
    # (on lavapipe the tree path took 7× the lane path's time): cut it there, keep the time.
    [ "$role" != variant ] || [ "$l" -le $(( 3 * need )) ] || l=$(( 3 * need ))
    case "$kind" in
      tg) args=(-p 0 -n "$s_tg"); one=$(( s_tg + 1 )) ;;
      pp) args=(-p "$s_pp" -n 0); one=$(( s_pp + 1 )) ;;
      depth) args=(-p 0 -n "$s_tg" -d "$s_depth"); one=$(( s_depth + s_tg + 1 )) ;;
      turn) args=(-p 32 -n 0 -d "$s_depth"); one=$(( s_depth + 33 )) ;;
      serve) one=1024 ;;
    esac
    one=$(( (one + 63) / 64 * 64 ))
    local env_args=()
    for v in $vars; do
      [ "$v" = - ] || env_args+=("${v//=ONE/=$one}")
    done
    seq=$(( seq + 1 ))
    tag=$(printf '%02d' "$seq")
    say "[$(elapsed) s] sweep $tag: $kind $role ${env_args[*]:-(defaults)}"
    t0=$(date +%s)
    rc=0
    if [ "$kind" = serve ]; then
      sweep_serve "$raw/$name.sweep-$tag" "$l" "$s_tg" "${env_args[@]}" || rc=$?
    else
      timeout -s INT -k 10 "$l" env "${env_args[@]}" "$pigpu" bench -m "$file" --backend vulkan \
        "${dev_args[@]}" "${args[@]}" -r "$s_reps" --no-extra -o json \
        >"$raw/$name.sweep-$tag.json" 2>"$raw/$name.sweep-$tag.log" || rc=$?
    fi
    wall=$(( $(date +%s) - t0 ))
    [ "$rc" = 0 ] || say "sweep $tag: exit status $rc (see $name.sweep-$tag.log)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tag" "$kind" "${env_args[*]:--}" "$role" "$wall" "$rc" >>"$index"
    if [ "$role" = default ] && [ "$rc" = 0 ]; then
      measured[$kind]=1
      first[$kind]=$tag
      est[$kind]=$(( wall + 2 ))
    fi
    pack
  done
}

# One serve call of the sweep: `pigpu serve --parallel 4` on run()'s model file with the
# variant's settings, 4 concurrent clients of TOKENS tokens (best of GPU_BENCH_SERVE_ROUNDS), at
# most LIMIT seconds in all; serve_bench.py's JSON line in PREFIX.json, the server's log in
# PREFIX.log. Runs inside sweep(), whose locals it reads.
sweep_serve() { # prefix limit tokens VAR=VALUE...
  local prefix=$1 stop=$(( $(date +%s) + $2 )) tokens=$3 port=18124 rc=0 l
  shift 3
  env "$@" "$pigpu" serve "$file" --backend vulkan "${dev_args[@]}" --parallel 4 --ctx 1024 \
    --port "$port" >"$prefix.log" 2>&1 &
  serve_pid=$!
  if wait_ready "http://127.0.0.1:$port" "$(( stop - $(date +%s) ))"; then
    l=$(( stop - $(date +%s) ))
    [ "$l" -gt 5 ] || l=5
    timeout -k 5 "$l" python3 scripts/serve_bench.py "http://127.0.0.1:$port" 4 "$tokens" \
      "${GPU_BENCH_SERVE_ROUNDS:-2}" >"$prefix.json" 2>>"$prefix.log" || rc=$?
  else
    rc=1
  fi
  stop_server
  return "$rc"
}

case "$mode" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '2,47p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
