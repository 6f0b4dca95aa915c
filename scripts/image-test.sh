#!/usr/bin/env bash
# The offline image flow of images/ (what images/pi-gen/stage-pigpu does to a Raspberry Pi OS
# image), tested on a Debian arm64 root: `pigpu setup --root` run from this (x86-64) machine, as
# on an image build host, gives the expected files; a second run changes nothing; `--undo`
# restores the root byte for byte (apart from the download cache and logs, which undo keeps by
# design, docs/setup.md); pigpu-first-boot.service passes `systemd-analyze verify`.
#
# Real: the Debian arm64 root (mmdebstrap, with build-essential and dkms installed by apt under
# qemu-user, cached), pigpu's arm64 package installed in it by apt, `dkms add`/`dkms remove` run
# in it by pigpu through chroot + binfmt_misc, downloads from a local HTTP server, sha256 and git
# tree checks, `patch`, every file edit and backup.
# Stand-ins (the Raspberry Pi apt repository and NVIDIA's files cannot be reached from here): the
# Pi kernel is two module directories and kernel images named as Raspberry Pi OS names them, with
# a build tree of a Makefile, a .config (arm64, 4K pages) and pci.h for linux-headers-rpi-v8; the driver
# is the setup tests' fixture (tests/fixtures/setup: a two-file module tree, a two-patch series,
# a stand-in installer); the boot partition is a directory (this machine's kernel has no vfat),
# holding Raspberry Pi OS's stock config.txt (tests/fixtures/setup/config/pios-bookworm.txt) and
# cmdline.txt.
#
# Usage: scripts/image-test.sh   (after scripts/package.sh arm64)
# Env: PIGPU_ROOT_CACHE, PIGPU_DEBIAN_MIRROR as in scripts/install-test.sh; PIGPU_KEEP=1.
# Needs root, qemu-user-static (binfmt), mmdebstrap, python3, systemd-analyze.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "image-test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || { say "error: needs root (chroot, dkms in the test root)"; exit 2; }
[ "$(dpkg --print-architecture)" = amd64 ] || { say "error: written for an amd64 host building an arm64 image"; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb=target/debian/pigpu_${version}-1_arm64.deb
[ -f "$deb" ] || { say "error: $deb not found; run scripts/package.sh arm64"; exit 2; }
pigpu=./target/release/pigpu
[ -x "$pigpu" ] || { say "error: $pigpu not built; run cargo build --release"; exit 2; }
cache=${PIGPU_ROOT_CACHE:-$HOME/.cache/pigpu/roots}
fixtures=tests/fixtures/setup
start=$(date +%s)

# The base root and binfmt come from the install test's helpers (same cache).
base=$(scripts/install-test.sh --print-root arm64)

work=$(mktemp -d "${TMPDIR:-/tmp}/pigpu-image.XXXXXX")
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  if [ "${PIGPU_KEEP:-0}" = 1 ]; then say "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
r=$work/root
in_root() { chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
  DEBIAN_FRONTEND=noninteractive "$@"; }

# The image's root: Debian arm64 with build-essential and dkms (cached after the first run), then
# pigpu's package installed by apt as the pi-gen stage does.
image_tar=$cache/debian-bookworm-arm64-build-dkms.tar
mkdir "$r"
if [ ! -s "$image_tar" ]; then
  say "adding build-essential and dkms to the arm64 root under qemu (once; several minutes)"
  tar -C "$r" -xf "$base"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends build-essential dkms >/dev/null
  in_root apt-get clean
  tar -C "$r" -cf "$image_tar.part" . && mv "$image_tar.part" "$image_tar"
else
  tar -C "$r" -xf "$image_tar"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
fi
cp "$deb" "$r/tmp/"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >/dev/null
rm "$r/tmp/$(basename "$deb")"

# Raspberry Pi OS's boot partition and kernels (stand-ins, see the top).
fw=$r/boot/firmware
mkdir -p "$fw"
cp "$fixtures/config/pios-bookworm.txt" "$fw/config.txt"
printf 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n' >"$fw/cmdline.txt"
echo "stand-in 4K kernel image" >"$fw/kernel8.img"
echo "stand-in 16K kernel image" >"$fw/kernel_2712.img"
# Directories Raspberry Pi OS has (udev, systemd) and the minimal Debian root lacks, made here so
# the root looks like the image's. (Without them setup creates them and, since 2026-12-05,
# `--undo` removes them again while empty.)
mkdir -p "$r/etc/udev/rules.d" "$r/etc/modules-load.d"
v8=6.12.47+rpt-rpi-v8
for rel in "$v8" 6.12.47+rpt-rpi-2712; do mkdir -p "$r/lib/modules/$rel/kernel"; done
hdr=$r/usr/src/linux-headers-$v8
mkdir -p "$hdr"
printf '# stand-in for linux-headers-rpi-v8 (image-test.sh)\nall:\n' >"$hdr/Makefile"
printf 'CONFIG_ARM64=y\nCONFIG_ARM64_4K_PAGES=y\n' >"$hdr/.config"
mkdir -p "$hdr/include/linux"   # setup reads pci_resize_resource()'s arity (3 before Linux 6.19)
printf 'int pci_resize_resource(struct pci_dev *dev, int i, int size);\n' >"$hdr/include/linux/pci.h"
ln -s "/usr/src/linux-headers-$v8" "$r/lib/modules/$v8/build"

# The fixture driver on a local HTTP server, and its manifest for aarch64.
srv=$work/srv
mkdir -p "$srv/archive" "$srv/patches" "$work/stage" "$work/mirror"
cp -r "$fixtures/srctree" "$work/stage/fixture-modules-1.0.0"
tar -C "$work/stage" -czf "$srv/archive/fixture-modules-1.0.0.tar.gz" fixture-modules-1.0.0
cp "$fixtures/patches/0001-query-coherency.patch" "$srv/patches/"
cp "$fixtures/fake-installer.run" "$srv/"
cp "$fixtures/patches/0002-uvm-flush.patch" "$work/mirror/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$srv" "$port" >"$work/http.log" 2>&1 &
server_pid=$!
manifest=$work/mirror/manifest.toml
sed -e "s|@BASE@|http://127.0.0.1:$port|g" -e 's|@ARCH@|aarch64|' "$fixtures/manifest.toml.in" >"$manifest"
python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
PY

# Everything under the root but what the chroot's tools touch in passing: path, type, mode,
# owner, and each regular file's sha256.
snapshot() {
  (cd "$r" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
      -o -path ./var/cache/ldconfig \) -prune -o -printf '%p %y %m %u:%g\n' | sort
   cd "$r" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
      -o -path ./var/cache/ldconfig \) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum)
}
setup() { "$pigpu" setup --root "$r" --manifest "$manifest" --yes "$@"; }
snapshot >"$work/s0"

say "first run: pigpu setup --root (x86-64 host, arm64 image)"
setup >"$work/run1.out" 2>&1 || { cat "$work/run1.out" >&2; fail "first setup run failed"; }
sed 's/^/  | /' "$work/run1.out" >&2
grep -q "build: skipped" "$work/run1.out" || grep -q "build.*cannot be built on this x86_64 machine" "$work/run1.out" \
  || fail "the plan did not defer the build to the Pi"
expect_file() { [ -f "$r$1" ] || fail "after setup: $1 missing"; grep -q -- "$2" "$r$1" || fail "after setup: $1 lacks '$2'"; }
expect_file /etc/modprobe.d/pigpu-blacklist-nouveau.conf "blacklist nouveau"
expect_file /etc/modprobe.d/pigpu-nvidia.conf "NVreg_DeviceFileGID="
expect_file /etc/udev/rules.d/70-pigpu-nvidia.rules "nvidia-modprobe"
expect_file /etc/modules-load.d/pigpu-nvidia.conf "nvidia"
expect_file /boot/firmware/config.txt "kernel=kernel8.img"
expect_file /boot/firmware/config.txt "dtparam=pciex1"
expect_file /usr/src/nvidia-1.0.0/dkms.conf 'PACKAGE_VERSION="1.0.0"'
[ -f "$r/usr/src/nvidia-1.0.0/kernel-open/PATCHED" ] || fail "the DKMS source is not the patched tree"
[ -e "$r/var/lib/dkms/nvidia/1.0.0" ] || fail "dkms add did not register nvidia/1.0.0 in the image"
for f in 'fixture-modules-*.tar.gz' fake-installer.run; do
  compgen -G "$r/var/cache/pigpu/$f" >/dev/null || fail "download $f not cached in the image for the first boot"
done
head -c "$(stat -c %s "$fixtures/config/pios-bookworm.txt")" "$fw/config.txt" | cmp -s - "$fixtures/config/pios-bookworm.txt" \
  || fail "config.txt: the stock lines were changed (pigpu only appends its block)"
cmp -s "$fw/cmdline.txt" <(printf 'console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n') \
  || fail "cmdline.txt changed"
[ ! -e "$r/lib/modules/$v8/kernel/drivers/video/nvidia.ko" ] || fail "modules installed although the build was deferred"
snapshot >"$work/s1"

say "second run: nothing to do"
setup >"$work/run2.out" 2>&1 || { cat "$work/run2.out" >&2; fail "second setup run failed"; }
snapshot >"$work/s2"
if ! diff -u "$work/s1" "$work/s2" >"$work/d12"; then
  head -n 30 "$work/d12" >&2; fail "the second run changed the root (diff above)"
fi
grep -q "^Plan: nothing to do\|nothing to do" "$work/run2.out" || { cat "$work/run2.out" >&2; fail "the second run planned steps"; }

say "undo: the root as it was"
setup --undo >"$work/undo.out" 2>&1 || { cat "$work/undo.out" >&2; fail "setup --undo failed"; }
snapshot >"$work/s3"
# What undo keeps by design (docs/setup.md "Undo"): the download cache and the logs.
kept='(^| )\./var/(cache/pigpu|log/pigpu)([ /]|$)'
if ! diff -u <(grep -Ev "$kept" "$work/s0") <(grep -Ev "$kept" "$work/s3") >"$work/d03"; then
  head -n 30 "$work/d03" >&2; fail "--undo did not restore the root byte for byte (diff above)"
fi
[ ! -e "$r/var/lib/dkms/nvidia" ] || fail "dkms remove did not run in the image"

# The first-boot unit against the image's root (the package's files plus this host's units).
vroot=$work/vroot
mkdir -p "$vroot/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$vroot/usr/lib/systemd/"
dpkg-deb -x "$deb" "$vroot"
MANPATH=$vroot/usr/share/man systemd-analyze verify --root="$vroot" pigpu-first-boot.service 2>"$work/verify.err" \
  || fail "systemd-analyze verify: $(cat "$work/verify.err")"
[ ! -s "$work/verify.err" ] || fail "systemd-analyze verify warned: $(cat "$work/verify.err")"

say "ok: setup --root gave the expected files ($(( $(wc -l <"$work/s1") - $(wc -l <"$work/s0") )) snapshot lines more), a second run changed nothing, --undo restored $(grep -Evc "$kept" "$work/s0") entries byte for byte, the first-boot unit verified, in $(( $(date +%s) - start )) s"
