#!/usr/bin/env bash
# Fetches the real inputs of setup's kernel-module build tests into a cache outside the repo
# (never committed): Debian's `nvidia-open-kernel-source` (NVIDIA's open `kernel-open` tree, from
# Debian's `contrib` component), for amd64 and, for the cross build, arm64 (the two differ in
# the prebuilt `nv-kernel.o_binary` blobs linked into the modules), and Debian's arm64 split kernel
# headers matching the installed amd64 ones, each unpacked with `dpkg -x`.
#
# apt runs with a private sources list, lists and cache under the cache dir, so the machine's own
# apt configuration (which lists only `main`) is neither read for sources nor changed. Packages are
# authenticated by apt (signed Release files); the NVIDIA source is also pinned by sha256 below.
#
# Env: PIGPU_KBUILD_CACHE (default ~/.cache/pigpu/kbuild), PIGPU_DEBIAN_MIRROR
# (default http://deb.debian.org/debian). Prints the cache dir's layout when done.
set -euo pipefail

say() { echo "fetch-kernel-sources: $*" >&2; }

cache=${PIGPU_KBUILD_CACHE:-${HOME:-/root}/.cache/pigpu/kbuild}
mirror=${PIGPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# bookworm's nvidia-open-kernel-source (contrib): NVIDIA open kernel modules 535.261.03.
nv_pkg=nvidia-open-kernel-source
nv_ver=535.261.03-1
nv_sha256=${PIGPU_NV_SOURCE_SHA256:-ee35aa18179ff6406186b3b0744138f5d66084dbca61170599d911a5d8a0c117}

# The amd64 headers installed by install-deps.sh decide the kernel ABI and version to match.
build=$(readlink -f /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$build" ] || [ ! -f "$build/Makefile" ]; then
  say "error: no /usr/src/linux-headers-*-amd64 (run scripts/install-deps.sh first)"
  exit 2
fi
kver=$(basename "$build" | sed 's/^linux-headers-//')
abi=${kver%-amd64}
pkgver=$(dpkg-query -W -f='${Version}' "linux-headers-$kver")
say "amd64 headers $kver ($pkgver)"

mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs"
cat >"$cache/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main contrib
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm-updates main contrib
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main contrib
SRC
apt_opts=(
  -o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
  -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache"
  -o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64" -o "Debug::NoLocking=1"
)

need=()
[ -d "$cache/nvidia-open-kernel-$nv_ver" ] || need+=("$nv_pkg:amd64=$nv_ver")
[ -d "$cache/nvidia-open-kernel-arm64-$nv_ver" ] || need+=("$nv_pkg:arm64=$nv_ver")
[ -d "$cache/arm64-root-$abi" ] || need+=("linux-headers-$abi-arm64:arm64=$pkgver")
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get update (private lists in $cache/apt)"
  apt-get "${apt_opts[@]}" update -q >&2
  say "downloading ${need[*]}"
  (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "${need[@]}" >&2)
fi

nv_deb=$(ls "$cache/debs/${nv_pkg}_"*"_amd64.deb" 2>/dev/null | head -n1 || true)
if [ ! -d "$cache/nvidia-open-kernel-$nv_ver" ]; then
  got=$(sha256sum "$nv_deb" | cut -d' ' -f1)
  if [ -n "$nv_sha256" ] && [ "$got" != "$nv_sha256" ]; then
    say "error: $nv_deb has sha256 $got, expected $nv_sha256"
    exit 2
  fi
  tmp=$(mktemp -d "$cache/unpack.XXXXXX")
  dpkg -x "$nv_deb" "$tmp"
  tar -xJf "$tmp/usr/src/nvidia-open-kernel.tar.xz" -C "$tmp"
  mv "$tmp/modules/nvidia-open-kernel" "$cache/nvidia-open-kernel-$nv_ver"
  rm -rf "$tmp"
fi
ln -sfn "nvidia-open-kernel-$nv_ver" "$cache/nvidia-open-kernel"

# The arm64 package of the same version (apt authenticated it through the signed Release file):
# the same sources with aarch64 blobs, for the cross build.
if [ ! -d "$cache/nvidia-open-kernel-arm64-$nv_ver" ]; then
  nv_deb_arm64=$(ls "$cache/debs/${nv_pkg}_${nv_ver}_arm64.deb" | head -n1)
  tmp=$(mktemp -d "$cache/unpack.XXXXXX")
  dpkg -x "$nv_deb_arm64" "$tmp"
  tar -xJf "$tmp/usr/src/nvidia-open-kernel.tar.xz" -C "$tmp"
  mv "$tmp/modules/nvidia-open-kernel" "$cache/nvidia-open-kernel-arm64-$nv_ver"
  rm -rf "$tmp"
fi
ln -sfn "nvidia-open-kernel-arm64-$nv_ver" "$cache/nvidia-open-kernel-arm64"

# The arm64 headers unpacked as a small system tree (lib/modules/<abi>-arm64/{build,source} and
# usr/src/...), usable as `pigpu setup --root`. Debian's split headers name their other halves by
# absolute path: the -common half (architecture-independent, the same package as the installed
# amd64 one) and Kbuild's host tools (linux-kbuild, which must run on this machine), so those two
# link to this machine's copies of the same version.
if [ ! -d "$cache/arm64-root-$abi" ]; then
  deb=$(ls "$cache/debs/linux-headers-$abi-arm64_${pkgver}_arm64.deb" | head -n1)
  tmp=$(mktemp -d "$cache/unpack.XXXXXX")
  dpkg -x "$deb" "$tmp"
  kbuild=$(readlink "$tmp/usr/src/linux-headers-$abi-arm64/scripts" | sed -n 's|^\.\./\.\./lib/\([^/]*\)/scripts$|\1|p')
  mkdir -p "$tmp/usr/lib"
  ln -s "/usr/lib/$kbuild" "$tmp/usr/lib/$kbuild"
  ln -s "/usr/src/linux-headers-$abi-common" "$tmp/usr/src/linux-headers-$abi-common"
  mv "$tmp" "$cache/arm64-root-$abi"
fi
say "cache ready: $cache"
ls -1 "$cache" >&2
