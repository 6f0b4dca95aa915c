#!/usr/bin/env bash
# Builds a flashable Raspberry Pi OS Lite (64-bit) image with pigpu installed and the NVIDIA setup
# applied offline, using Raspberry Pi's own image tool, pi-gen (github.com/RPi-Distro/pi-gen,
# branch `arm64`), with pigpu's stage images/pi-gen/stage-pigpu after stage2. See images/README.md.
#
# Usage: sudo images/build.sh PI_GEN_DIR [-- setup flags, default: --pcie-gen 2 --persist dkms]
# Needs: a pi-gen checkout and what its README lists (binfmt_misc with qemu-user-static on a
# non-arm64 host, debootstrap, ...), network access to archive.raspberrypi.com and
# raspbian/Debian mirrors, pigpu installed on this build machine (its amd64 or arm64 package:
# it runs `pigpu setup --root` on the image), and the arm64 package in target/debian
# (scripts/package.sh arm64). Not run in pigpu's CI: the Raspberry Pi apt repository cannot be
# reached there; scripts/image-test.sh tests the stage's `pigpu setup --root` flow instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

say() { echo "images/build.sh: $*" >&2; }

pigen=${1:?usage: images/build.sh PI_GEN_DIR [-- setup flags]}
shift
[ "${1:-}" = -- ] && shift
setup_args=("$@")
[ ${#setup_args[@]} -gt 0 ] || setup_args=(--pcie-gen 2 --persist dkms)

[ -x "$pigen/build.sh" ] || { say "error: $pigen/build.sh not found: give a pi-gen checkout"; exit 2; }
command -v pigpu >/dev/null 2>&1 || { say "error: pigpu is not installed on this build machine (apt install ./pigpu_*_$(dpkg --print-architecture).deb)"; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
deb=$repo/target/debian/pigpu_${version}-1_arm64.deb
[ -f "$deb" ] || { say "error: $deb not found; run scripts/package.sh arm64"; exit 2; }

stage=$pigen/stage-pigpu
rm -rf "$stage"
cp -r "$here/pi-gen/stage-pigpu" "$stage"
cp "$deb" "$stage/00-pigpu/files/"
echo "${setup_args[*]}" >"$stage/00-pigpu/files/setup-args"
# stage2 (Lite) is exported as well unless told not to be; only ours is wanted.
touch "$pigen/stage2/SKIP_IMAGES"

if [ ! -f "$pigen/config" ]; then
  cat >"$pigen/config" <<EOF
IMG_NAME=raspios-pigpu
RELEASE=bookworm
TARGET_HOSTNAME=pigpu
ENABLE_SSH=1
STAGE_LIST="stage0 stage1 stage2 stage-pigpu"
EOF
  say "wrote $pigen/config (a first user is asked for at first boot, as on Raspberry Pi OS)"
fi
say "building with pi-gen in $pigen (an hour or more)"
cd "$pigen"
./build.sh
say "done: the image is in $pigen/deploy/"
