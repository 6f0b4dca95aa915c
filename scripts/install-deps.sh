#!/usr/bin/env bash
# Installs the system packages pigpu's build and tests need (Debian 12 / Raspberry Pi OS).
# Idempotent and quiet when everything is already there.
set -euo pipefail

pkgs=(
  build-essential pkg-config            # C toolchain for -sys crates
  libudev-dev                           # udev crate (PCI enumeration)
  libkmod-dev libclang-dev kmod         # kmod crate (bindgen) and depmod/modinfo for tests
  mesa-vulkan-drivers libvulkan-dev     # lavapipe (CPU Vulkan) and the loader
  vulkan-tools glslc spirv-tools vulkan-validationlayers
  umockdev                              # fake udev devices for doctor tests
  python3-pip
)
arch=$(dpkg --print-architecture)
if [ "$arch" = amd64 ]; then
  pkgs+=(linux-headers-amd64 gcc-aarch64-linux-gnu qemu-user)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
