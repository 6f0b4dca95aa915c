#!/usr/bin/env bash
# The Raspberry Pi build: cross-compiles pigpu for aarch64-unknown-linux-gnu (the Pi 5's
# Cortex-A76) and runs the library's unit tests under qemu-aarch64, so aarch64-only code (NEON
# kernels) is compiled and exercised on every change. Called by `scripts/just test`.
#
# All settings are environment variables scoped to the aarch64 target and to this script, so plain
# `cargo build`/`cargo test` are untouched; the cross build has its own target dir (target/cross).
# On an aarch64 host there is nothing to cross: the native build and tests are the Pi's.
#
# Usage: scripts/cross-test.sh [test-binary args, e.g. a test-name filter or --nocapture]
# Needs (scripts/install-deps.sh installs them on amd64): gcc-aarch64-linux-gnu, qemu-user,
# libudev-dev:arm64, libkmod-dev:arm64, libclang-dev; the rustup target is added here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu          # Debian's cross libc (libc6-dev-arm64-cross)
multiarch=/usr/lib/aarch64-linux-gnu    # arm64 -dev packages installed via dpkg multiarch

say() { echo "cross-test: $*" >&2; }

case "$(uname -m)" in
  aarch64 | arm64)
    say "host is aarch64: the native build and 'cargo test' are the Pi build; nothing to cross-test"
    exit 0 ;;
esac

for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" >/dev/null 2>&1 \
    || { say "error: $tool not found; run scripts/install-deps.sh"; exit 2; }
done
for pc in libudev libkmod; do
  [ -f "$multiarch/pkgconfig/$pc.pc" ] \
    || { say "error: $multiarch/pkgconfig/$pc.pc not found (arm64 -dev package); run scripts/install-deps.sh"; exit 2; }
done
if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
fi

# Linker and test runner for the aarch64 target only. The loader inside qemu takes libc from the
# cross sysroot (it must match that ld.so) and libudev/libkmod and their deps from the arm64
# multiarch dir, through LD_LIBRARY_PATH set for the guest only (-E), not for this shell.
# -rpath-link lets the linker resolve those libraries' own dependencies (liblzma, libzstd, ...).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-Wl,-rpath-link,$multiarch"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot -E LD_LIBRARY_PATH=$sysroot/lib:$multiarch"
# C code built by -sys crates (ring, ...) for the target.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# pkg-config (udev, kmod) reads the arm64 .pc files; the -L it prints points into $multiarch.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="$multiarch/pkgconfig:/usr/share/pkgconfig"
# bindgen (kmod-sys) parses headers as aarch64 against the cross libc headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$sysroot -isystem $sysroot/include -idirafter /usr/include"
# The cross build keeps its own target dir so it never invalidates the native one.
export CARGO_TARGET_DIR="${PIGPU_CROSS_TARGET_DIR:-target/cross}"

# The Vulkan kernel tests are skipped here: they need an arm64 Vulkan loader and lavapipe, whose
# LLVM JIT under emulation would cost minutes to re-test shaders that the native run already
# checks on lavapipe. The host-side Vulkan code is still compiled for aarch64 (which is where
# c_char signedness and similar mistakes show up).
skip=(--skip engine::vulkan::tests::)

start=$(date +%s)
say "building and running the library's unit tests for $target under qemu-aarch64"
cargo test --release --target "$target" --lib -- "${skip[@]}" "$@"
say "done in $(( $(date +%s) - start )) s"
