#!/usr/bin/env bash
# The Raspberry Pi build: cross-compiles pigpu for aarch64-unknown-linux-gnu (the Pi 5's
# Cortex-A76) and runs the library's unit tests under qemu-aarch64, so aarch64-only code (NEON
# kernels) is compiled and exercised on every change. Called by `scripts/just test`.
#
# The settings (scripts/cross-env.sh, shared with scripts/package.sh) are environment variables
# scoped to the aarch64 target and to this script; the cross build has its own target dir (target/cross).
# On an aarch64 host there is nothing to cross: the native build and tests are the Pi's.
#
# Usage: scripts/cross-test.sh [test-binary args, e.g. a test-name filter or --nocapture]
# Needs (scripts/install-deps.sh installs them on amd64): gcc-aarch64-linux-gnu, qemu-user,
# libudev-dev:arm64, libkmod-dev:arm64, libclang-dev; the rustup target is added here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "cross-test: $*" >&2; }

case "$(uname -m)" in
  aarch64 | arm64)
    say "host is aarch64: the native build and 'cargo test' are the Pi build; nothing to cross-test"
    exit 0 ;;
esac

# shellcheck source=scripts/cross-env.sh
. scripts/cross-env.sh
cross_check
target=$cross_target

# The Vulkan kernel tests are skipped here: they need an arm64 Vulkan loader and lavapipe, whose
# LLVM JIT under emulation would cost minutes to re-test shaders that the native run already
# checks on lavapipe. The host-side Vulkan code is still compiled for aarch64 (which is where
# c_char signedness and similar mistakes show up).
skip=(--skip engine::vulkan::tests::)

# The Pi 5's CPU, not qemu's default `max` (which has far more than a Cortex-A76): a kernel that
# used an instruction the Pi lacks would fail here. And the NEON kernels must be what is tested:
# the kernel tests fail when the detected instruction set is not this one (see
# `the_expected_instruction_set_is_detected` in src/engine/cpu/kernels/tests.rs).
export QEMU_CPU=cortex-a76
export PIGPU_EXPECT_ISA=neon+dotprod

start=$(date +%s)
say "building and running the library's unit tests for $target under qemu-aarch64"
cargo test --release --target "$target" --lib -- "${skip[@]}" "$@"
say "done in $(( $(date +%s) - start )) s"
