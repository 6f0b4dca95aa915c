#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-completion, llama-perplexity) from the copy vendored in
# PyPI's llama-cpp-python sdist, OUTSIDE the repo, as the reference that pigpu's benchmarks compare
# against. Nothing of llama.cpp is ever committed to pigpu.
#
# Usage: scripts/ref/build-llama-cpp.sh [--vulkan] [--static-vulkan] [--server] [--dir DIR] [--jobs N]
#   --vulkan   also build a Vulkan variant (needs glslc, libvulkan-dev and spirv-headers; see the
#              patch note below)
#   --static-vulkan  build only a portable Vulkan llama-bench to carry to another machine
#              (scripts/gpu-bench.sh): ggml linked in, libstdc++/libgcc static, no OpenMP, x86-64-v3
#              instead of -march=native; in build-vulkan-static/ (runs on the CPU here too)
#   --server   also build llama-server in the CPU build directory (reconfigured with
#              LLAMA_BUILD_SERVER=ON, only that target built), for scripts/serve-bench.sh
#   --dir DIR  where to unpack and build (default $PIGPU_LLAMA_CPP_DIR, else
#              ~/.cache/pigpu/llama.cpp-<version>)
#   --jobs N   parallel compile jobs (default: number of CPUs); the build runs under `nice`
# Prints the CPU build's bin directory (and the Vulkan one with --vulkan) on stdout, one per line;
# progress goes to stderr. Idempotent: tools already built are not rebuilt.
#
# Local patch (Vulkan variant only, applied to the unpacked copy, never committed): the
# validation-layer-settings block in ggml-vulkan.cpp uses VkLayerSettingEXT, which Debian 12's
# Vulkan headers (1.3.239) lack; the script guards it with `#if VK_HEADER_VERSION >= 261` and falls
# back to a plain instance create. It only matters with GGML_VULKAN_VALIDATE, which we do not set.
# With it the Vulkan variant builds on Debian 12 (glslc 2023.2 lacks the cooperative-matrix,
# integer-dot and bfloat16 GLSL extensions; llama.cpp's CMake detects that and leaves those
# shader variants out).
# llama.cpp skips CPU-type Vulkan devices: set GGML_VK_VISIBLE_DEVICES=0 to run it on lavapipe.
set -euo pipefail

version=0.3.36
# The sdist's sha256, from PyPI's file listing for llama-cpp-python 0.3.36 (and checked against a
# download on 2026-12-06): the reference is built only from these exact bytes.
sdist_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
vulkan=0
static_vulkan=0
server=0
dir="${PIGPU_LLAMA_CPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pigpu/llama.cpp-$version}"
jobs=$(nproc 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --vulkan) vulkan=1 ;;
    --static-vulkan) static_vulkan=1 ;;
    --server) server=1 ;;
    --dir) dir="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-llama-cpp: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build-llama-cpp: $*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { say "error: $1 not found ($2)"; exit 2; }; }
need cmake "apt install cmake"
need c++ "apt install build-essential"
python=""
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -m pip --version >/dev/null 2>&1; then python=$py; break; fi
done
[ -n "$python" ] || { say "error: pip not found (apt install python3-pip)"; exit 2; }

# llama-cli now needs the whole server build (LLAMA_BUILD_SERVER); llama-completion is the plain
# command-line generator and is what the benchmarks use.
tools=(llama-bench llama-completion llama-perplexity)
src="$dir/llama_cpp_python-$version/vendor/llama.cpp"
mkdir -p "$dir"

if [ ! -f "$src/CMakeLists.txt" ]; then
  sdist="$dir/llama_cpp_python-$version.tar.gz"
  if [ ! -f "$sdist" ]; then
    say "downloading the llama-cpp-python $version sdist from PyPI"
    # Source only for llama-cpp-python itself: pip still prepares the sdist's metadata, and with
    # `--no-binary :all:` it built its build tools (ninja, cmake ...) from source too (8 minutes).
    "$python" -m pip download --quiet --disable-pip-version-check --no-binary llama-cpp-python \
      --no-deps "llama-cpp-python==$version" -d "$dir" \
      || { say "error: pip download llama-cpp-python==$version failed (is PyPI reachable?)"; exit 2; }
  fi
  got=$(sha256sum "$sdist" | cut -d' ' -f1)
  if [ "$got" != "$sdist_sha256" ]; then
    say "error: $sdist has sha256 $got, expected $sdist_sha256 (removed; run again to download it anew)"
    rm -f "$sdist"
    exit 2
  fi
  tar -xzf "$sdist" -C "$dir"
  [ -f "$src/CMakeLists.txt" ] || { say "error: $src/CMakeLists.txt missing after unpacking"; exit 2; }
fi

built() { # build dir
  local t
  for t in "${tools[@]}"; do [ -x "$1/bin/$t" ] || return 1; done
}

build() { # name, extra cmake args...
  local name=$1 b="$dir/build-$1"
  shift
  if built "$b"; then say "$name: already built in $b"; echo "$b/bin"; return; fi
  say "$name: configuring in $b"
  cmake -S "$src" -B "$b" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=OFF "$@" >"$dir/cmake-$name.log" 2>&1 \
    || { say "error: cmake configure failed, see $dir/cmake-$name.log"; exit 2; }
  say "$name: building ${tools[*]} with $jobs jobs (several minutes)"
  local start; start=$(date +%s)
  nice -n 10 cmake --build "$b" -j "$jobs" --target "${tools[@]}" >"$dir/build-$name.log" 2>&1 \
    || { say "error: build failed, see $dir/build-$name.log"; exit 2; }
  say "$name: built in $(( $(date +%s) - start )) s"
  echo "$b/bin"
}

# See "Local patch" above. Idempotent: the marker comment says it is applied.
patch_vulkan_headers() {
  "$python" - "$src/ggml/src/ggml-vulkan/ggml-vulkan.cpp" <<'PY'
import sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
marker = "// pigpu local patch: VK_HEADER_VERSION guard"
if marker in text:
    sys.exit(0)
start = text.find("    VkBool32 enable_best_practice = layer_settings;")
end_line = ("    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, "
            "layers, extensions, &layer_setting_info);\n")
end = text.find(end_line, start)
if start < 0 or end < 0:
    sys.exit("build-llama-cpp: the layer-settings block was not found; the patch needs updating")
end += len(end_line)
patched = (marker + "\n#if VK_HEADER_VERSION >= 261\n" + text[start:end] + "#else\n"
           "    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, "
           "layers, extensions);\n#endif\n")
open(path, "w", encoding="utf-8").write(text[:start] + patched + text[end:])
PY
}

need_vulkan_tools() {
  need glslc "apt install glslc"
  # ggml-vulkan's CMake needs SPIRV-Headers' package config (find_package(SPIRV-Headers CONFIG)).
  spirv_ok=0
  for d in /usr/share/cmake /usr/lib/cmake /usr/lib/*/cmake /usr/local/share/cmake \
    "${VULKAN_SDK:-/nonexistent}/share/cmake" "${VULKAN_SDK:-/nonexistent}/lib/cmake"; do
    [ -f "$d/SPIRV-Headers/SPIRV-HeadersConfig.cmake" ] && spirv_ok=1
  done
  [ $spirv_ok = 1 ] || { say "error: SPIRV-HeadersConfig.cmake not found (apt install spirv-headers)"; exit 2; }
  patch_vulkan_headers
}

if [ $static_vulkan = 1 ]; then
  need_vulkan_tools
  tools=(llama-bench)
  build vulkan-static -DGGML_VULKAN=ON -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF \
    -DCMAKE_EXE_LINKER_FLAGS="-static-libgcc -static-libstdc++"
  exit 0
fi
build cpu -DGGML_VULKAN=OFF
if [ $server = 1 ]; then
  b="$dir/build-cpu"
  if [ -x "$b/bin/llama-server" ]; then
    say "llama-server: already built in $b"
  else
    # The same configuration as the CPU tools, plus the server: only this one target is built,
    # the libraries it shares with them are already there.
    say "llama-server: reconfiguring $b with LLAMA_BUILD_SERVER=ON"
    cmake "$b" -DLLAMA_BUILD_SERVER=ON >"$dir/cmake-server.log" 2>&1 \
      || { say "error: cmake configure failed, see $dir/cmake-server.log"; exit 2; }
    say "llama-server: building with $jobs jobs (several minutes)"
    start=$(date +%s)
    nice -n 10 cmake --build "$b" -j "$jobs" --target llama-server >"$dir/build-server.log" 2>&1 \
      || { say "error: build failed, see $dir/build-server.log"; exit 2; }
    say "llama-server: built in $(( $(date +%s) - start )) s"
  fi
  echo "$b/bin/llama-server"
fi
if [ $vulkan = 1 ]; then
  need_vulkan_tools
  build vulkan -DGGML_VULKAN=ON
fi
