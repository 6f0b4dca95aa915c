# shellcheck shell=bash
# The aarch64 cross-build settings, sourced by scripts/cross-test.sh (the Pi build's unit tests
# under qemu) and scripts/package.sh (the arm64 .deb), so both use one target dir and one set of
# flags and a package build after a test run recompiles only the binary.
#
# All settings are environment variables scoped to the aarch64 target, so plain `cargo build` /
# `cargo test` are untouched; the cross build has its own target dir (target/cross, or
# $PIGPU_CROSS_TARGET_DIR). Needs what scripts/install-deps.sh installs on amd64.
# Sets: cross_target, cross_sysroot, cross_multiarch; exports the cargo/cc/pkg-config variables.
# Defines cross_check, which returns 2 with a message when a tool or arm64 -dev package is missing.

cross_target=aarch64-unknown-linux-gnu
cross_sysroot=/usr/aarch64-linux-gnu          # Debian's cross libc (libc6-dev-arm64-cross)
cross_multiarch=/usr/lib/aarch64-linux-gnu    # arm64 -dev packages installed via dpkg multiarch

cross_check() {
  local tool pc
  for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null 2>&1 \
      || { echo "error: $tool not found; run scripts/install-deps.sh" >&2; return 2; }
  done
  for pc in libudev libkmod; do
    [ -f "$cross_multiarch/pkgconfig/$pc.pc" ] \
      || { echo "error: $cross_multiarch/pkgconfig/$pc.pc not found (arm64 -dev package); run scripts/install-deps.sh" >&2; return 2; }
  done
  if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -qx "$cross_target" || rustup target add "$cross_target"
  fi
}

# Linker and test runner for the aarch64 target only. The loader inside qemu takes libc from the
# cross sysroot (it must match that ld.so) and libudev/libkmod and their deps from the arm64
# multiarch dir, through LD_LIBRARY_PATH set for the guest only (-E), not for this shell.
# -rpath-link lets the linker resolve those libraries' own dependencies (liblzma, libzstd, ...).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-Wl,-rpath-link,$cross_multiarch"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $cross_sysroot -E LD_LIBRARY_PATH=$cross_sysroot/lib:$cross_multiarch"
# C code built by -sys crates (ring, ...) for the target.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# pkg-config (udev, kmod) reads the arm64 .pc files; the -L it prints points into the multiarch dir.
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu="$cross_multiarch/pkgconfig:/usr/share/pkgconfig"
# bindgen (kmod-sys) parses headers as aarch64 against the cross libc headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$cross_sysroot -isystem $cross_sysroot/include -idirafter /usr/include"
# The cross build keeps its own target dir so it never invalidates the native one.
export CARGO_TARGET_DIR="${PIGPU_CROSS_TARGET_DIR:-target/cross}"
