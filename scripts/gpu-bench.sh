#!/usr/bin/env bash
# pigpu's Vulkan engine against llama.cpp's Vulkan backend on the same GPU and model, in one call:
# prints generation and prompt tokens/s for each and the ratio pigpu / llama.cpp.
#
# The GPU machine may have no internet, so this works in two steps:
#   scripts/gpu-bench.sh prepare [DIR]   # here, online: gathers everything into DIR
#   scripts/gpu-bench.sh run [DIR] [MODEL ...]   # on the GPU machine: builds llama.cpp, runs both
# DIR defaults to .gpubench/ in the repo (git-ignored through .git/info/exclude).
#
# `prepare` puts in DIR: the llama-cpp-python sdist (llama.cpp's source; see
# scripts/ref/build-llama-cpp.sh), a release build of pigpu (same x86-64 target as the GPU
# machine), the test models, and the .deb files of the Vulkan loader, headers and glslc that
# building llama.cpp's Vulkan backend needs (unpacked under DIR/root on the GPU machine, not
# installed). `run` needs cmake and a C++ compiler on the GPU machine.
#
# Not run in the session that wrote it (no GPU was lent): see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"; shift || true
dir="${1:-.gpubench}"; shift || true
version=0.3.36
say() { echo "gpu-bench: $*" >&2; }

prepare() {
  mkdir -p "$dir/debs" "$dir/bin" "$dir/models"
  grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
  if [ ! -f "$dir/llama_cpp_python-$version.tar.gz" ]; then
    say "downloading the llama-cpp-python $version sdist"
    python3 -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$dir"
  fi
  say "building pigpu (release)"
  cargo build --release --quiet
  cp target/release/pigpu "$dir/bin/"
  # Shared libraries pigpu links that a bare machine may lack.
  for lib in $(ldd target/release/pigpu | awk '/=> \// {print $3}' | grep -E 'libudev|libkmod'); do
    cp -L "$lib" "$dir/bin/"
  done
  scripts/fetch-models.sh >/dev/null
  cp -u "${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}"/*.gguf "$dir/models/"
  say "downloading Vulkan loader, headers and glslc packages"
  (cd "$dir/debs" && apt-get download libvulkan1 libvulkan-dev glslc libshaderc1 spirv-headers \
     libglslang11 libspirv-tools 2>/dev/null || apt-get download libvulkan1 libvulkan-dev glslc)
  say "prepared $dir ($(du -sh "$dir" | cut -f1)); on the GPU machine: scripts/gpu-bench.sh run $dir"
}

run() {
  [ -d "$dir" ] || { say "error: $dir missing (run 'scripts/gpu-bench.sh prepare' first)"; exit 2; }
  command -v cmake >/dev/null || { say "error: cmake is needed on this machine"; exit 2; }
  root="$PWD/$dir/root"
  mkdir -p "$root"
  for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$root"; done
  export PATH="$root/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$PWD/$dir/bin:${LD_LIBRARY_PATH:-}"
  export CPATH="$root/usr/include:${CPATH:-}"
  ldconfig -p | grep -q libvulkan.so.1 || say "note: using the carried Vulkan loader"
  if [ ! -x "$dir/llama-build/bin/llama-bench" ]; then
    say "building llama.cpp with Vulkan"
    tar -xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"
    src="$dir/llama_cpp_python-$version/vendor/llama.cpp"
    # The carried headers (Debian 12, 1.3.239) lack VkLayerSettingEXT: build the instance without
    # the validation-layer settings block, as scripts/ref/build-llama-cpp.sh explains.
    python3 - "$src/ggml/src/ggml-vulkan/ggml-vulkan.cpp" <<'PY'
import sys
path = sys.argv[1]
src = open(path, encoding="utf-8").read()
first = "    VkBool32 enable_best_practice = layer_settings;"
last = "layers, extensions, &layer_setting_info);\n"
a = src.find(first)
b = src.find(last, a)
if "VK_HEADER_VERSION >= 261" not in src and a >= 0 and b >= 0:
    b += len(last)
    plain = ("    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, "
             "layers, extensions);\n")
    src = src[:a] + "#if VK_HEADER_VERSION >= 261\n" + src[a:b] + "#else\n" + plain + "#endif\n" + src[b:]
    open(path, "w", encoding="utf-8").write(src)
PY
    cmake -S "$src" -B "$dir/llama-build" -DGGML_VULKAN=ON -DLLAMA_CURL=OFF \
      -DVulkan_INCLUDE_DIR="$root/usr/include" \
      -DVulkan_LIBRARY="$root/usr/lib/x86_64-linux-gnu/libvulkan.so.1" \
      -DVulkan_GLSLC_EXECUTABLE="$root/usr/bin/glslc" \
      -DCMAKE_PREFIX_PATH="$root/usr" >&2  # the carried SPIRV-HeadersConfig.cmake (ggml-vulkan needs it)
    cmake --build "$dir/llama-build" -j"$(nproc)" --target llama-bench >&2
  fi
  models=("$@")
  [ ${#models[@]} -gt 0 ] || models=("$dir"/models/*.gguf)
  "$dir/bin/pigpu" run --list-devices >&2 || true
  printf '%-45s %12s %12s %12s %12s %8s\n' model pigpu_tg llama_tg pigpu_pp llama_pp tg_ratio
  for m in "${models[@]}"; do
    pj=$("$dir/bin/pigpu" run "$m" --backend vulkan --temp 0 -n 128 --ctx 1024 --json \
          -p "Write a long story about a lighthouse keeper and the sea, in many chapters.")
    ptg=$(echo "$pj" | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["timings"]["gen_tokens_per_s"])')
    ppp=$(echo "$pj" | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["timings"]["prompt_tokens_per_s"])')
    lj=$("$dir/llama-build/bin/llama-bench" -m "$m" -ngl 99 -p 512 -n 128 -r 3 -o json)
    ltg=$(echo "$lj" | python3 -c 'import json,sys; print("%.1f" % [r["avg_ts"] for r in json.load(sys.stdin) if r["n_gen"] > 0][0])')
    lpp=$(echo "$lj" | python3 -c 'import json,sys; print("%.1f" % [r["avg_ts"] for r in json.load(sys.stdin) if r["n_prompt"] > 0][0])')
    ratio=$(python3 -c "print('%.2f' % ($ptg / $ltg))")
    printf '%-45s %12s %12s %12s %12s %8s\n' "$(basename "$m")" "$ptg" "$ltg" "$ppp" "$lpp" "$ratio"
  done
}

case "$mode" in
  prepare) prepare ;;
  run) run "$@" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
