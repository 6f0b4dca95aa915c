#!/usr/bin/env bash
# The install test of pigpu's Debian packages: for each architecture, a fresh Debian root made by
# mmdebstrap (cached as a tarball outside the repository), `apt-get install ./pigpu_*.deb` with
# real apt and dpkg pulling the dependencies from Debian's mirror, then the installed binary run
# in that root without a Vulkan loader (`pigpu --version`, `pigpu doctor --json`, `pigpu inspect` on the test model, the
# bash completion, the man page and `systemd-analyze verify` of the first-boot unit), then
# `apt-get purge` + `autoremove --purge` and a comparison of the root's file list (and the
# contents of /etc and /usr) with the one taken before the install.
#
# The arm64 root runs under qemu-user through binfmt_misc (qemu-user-static's interpreter with the
# F flag, registered here when missing, which needs root); amd64 runs natively. Everything runs in
# a private mount namespace (unshare), so the /proc and model mounts vanish with the script.
#
# Usage: scripts/install-test.sh [arm64|amd64]...   (default: both, packages from
#        scripts/package.sh in target/debian)
#        scripts/install-test.sh --print-root ARCH   (bootstrap if needed; print the cached tarball)
# Env: PIGPU_ROOT_CACHE (default ~/.cache/pigpu/roots), PIGPU_DEBIAN_MIRROR
#      (default http://deb.debian.org/debian), PIGPU_MODEL_CACHE (the test models),
#      PIGPU_KEEP=1 (keep the test roots and logs in $TMPDIR).
# Needs root, mmdebstrap, arch-test, qemu-user-static (scripts/install-deps.sh), network access to
# the Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install-test: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || { say "error: needs root (chroot, mounts, apt in the test root)"; exit 2; }
for tool in mmdebstrap unshare chroot python3 systemd-analyze; do
  command -v "$tool" >/dev/null 2>&1 || { say "error: $tool not found; run scripts/install-deps.sh"; exit 2; }
done

suite=bookworm
mirror=${PIGPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${PIGPU_ROOT_CACHE:-$HOME/.cache/pigpu/roots}
models=${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}
model=SmolLM2-135M-Instruct.Q4_1.gguf
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -f "$models/$model" ] || { say "error: $models/$model missing; run scripts/fetch-models.sh"; exit 2; }

host=$(dpkg --print-architecture)
arches=("$@")
if [ ${#arches[@]} -eq 0 ]; then
  case "$host" in amd64) arches=(arm64 amd64) ;; *) arches=("$host") ;; esac
fi

# arm64 binaries of the root must run here: binfmt_misc with qemu-aarch64-static, flag F (the
# interpreter is opened now, so it works inside the chroot without being copied there).
ensure_binfmt() {
  local bm=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -e "$bm/qemu-aarch64" ] && return 0
  [ -f "$conf" ] || { say "error: $conf missing; install qemu-user-static (scripts/install-deps.sh)"; exit 2; }
  [ -e "$bm/register" ] || mount -t binfmt_misc binfmt_misc "$bm" \
    || { say "error: cannot mount binfmt_misc: arm64 programs cannot run here (run with amd64 only)"; exit 2; }
  say "registering qemu-aarch64-static with binfmt_misc ($conf)"
  cat "$conf" >"$bm/register" \
    || { say "error: cannot register qemu-aarch64 with binfmt_misc (run with amd64 only)"; exit 2; }
}

# The cached root: Debian's apt variant (Essential packages plus apt), as mmdebstrap makes it.
root_tarball() {
  local arch=$1
  local tarball="$cache/debian-$suite-$arch.tar"
  if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    say "bootstrapping a Debian $suite $arch root into $tarball (once; a few minutes)"
    local t0; t0=$(date +%s)
    mmdebstrap --quiet --format=tar --variant=apt --arch="$arch" "$suite" "$tarball.part" "$mirror" >&2
    mv "$tarball.part" "$tarball"
    say "bootstrap took $(( $(date +%s) - t0 )) s"
  fi
  echo "$tarball"
}

# One line per path: type, mode, owner, and for regular files under etc/ and usr/ a sha256.
# Left out: what apt, dpkg and ldconfig change in any install/remove cycle (indexes, caches, logs, the
# *-old backups), checked separately below.
snapshot() {
  local r=$1
  (cd "$r" && find . -xdev \
      \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp -o -path ./models \
         -o -path ./var/cache/apt -o -path ./var/lib/apt/lists -o -path ./var/log \
         -o -path ./var/cache/debconf -o -path ./var/cache/ldconfig \) -prune -o -printf '%p %y %m %u:%g\n' \
    | grep -v -e '^\./var/lib/apt/extended_states ' -e '-old ' | sort) >"$2"
  (cd "$r" && find ./etc ./usr -xdev -type f -print0 | sort -z | xargs -0 sha256sum) >>"$2"
}

test_arch() {
  local arch=$1
  local deb="target/debian/pigpu_${version}-1_${arch}.deb"
  [ -f "$deb" ] || { say "error: $deb not found; run scripts/package.sh first"; exit 2; }
  [ "$arch" = arm64 ] && [ "$host" != arm64 ] && ensure_binfmt
  local tarball; tarball=$(root_tarball "$arch")
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/pigpu-install-$arch.XXXXXX")
  works+=("$work")
  local r=$work/root t0
  t0=$(date +%s)
  mkdir "$r"
  tar -C "$r" -xf "$tarball"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  mkdir -p "$r/models"
  cp "$deb" "$r/tmp/"
  snapshot "$r" "$work/before"

  # In a private mount namespace: /proc for apt and pigpu, the models read-only.
  unshare --mount --propagation private -- bash -euo pipefail -c '
    r=$1; deb=$2; models=$3; model=$4; version=$5; out=$6
    say() { echo "install-test: $*" >&2; }
    mount -t proc proc "$r/proc"
    mount --bind "$models" "$r/models"; mount -o remount,bind,ro "$r/models"
    in_root() { chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive "$@"; }
    in_root apt-get update -qq
    # What a plain `apt install ./pigpu.deb` would do (recommends on), resolved for real but
    # simulated; then the install without recommends (libvulkan1 recommends Mesa and LLVM,
    # hundreds of MB that the test does not need: pigpu without a Vulkan loader is tested too).
    in_root apt-get install -s "/tmp/$(basename "$deb")" >"$out/apt-simulate.log" 2>&1 \
      || { cat "$out/apt-simulate.log" >&2; exit 1; }
    in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >"$out/apt-install.log" 2>&1 \
      || { cat "$out/apt-install.log" >&2; exit 1; }
    grep -E "^(Setting up|Unpacking) " "$out/apt-install.log" | sed "s/^/  /" >&2 || true
    in_root dpkg-query -W -f="\${Package} \${Version} \${Architecture}\n" pigpu libudev1 libkmod2 libvulkan1 >"$out/installed"
    in_root dpkg -L pigpu >"$out/files"
    in_root pigpu --version >"$out/version"
    set +e
    in_root pigpu doctor --json >"$out/doctor.json" 2>"$out/doctor.err"; echo $? >"$out/doctor.rc"
    in_root pigpu inspect "/models/$model" >"$out/inspect" 2>"$out/inspect.err"; echo $? >"$out/inspect.rc"
    set -e
    in_root bash -c ". /usr/share/bash-completion/completions/pigpu && complete -p pigpu" >"$out/complete"
    in_root apt-get purge -y -qq pigpu >"$out/apt-purge.log" 2>&1
    in_root apt-get autoremove --purge -y -qq >>"$out/apt-purge.log" 2>&1
    in_root dpkg-query -W -f="\${db:Status-Status}\n" pigpu >"$out/status-after" 2>/dev/null || true
    umount "$r/models" "$r/proc"
  ' _ "$r" "$deb" "$models" "$model" "$version" "$work"

  local o=$work
  grep -qx "pigpu $version" "$o/version" || fail "$arch: pigpu --version printed '$(cat "$o/version")'"
  grep -q "^pigpu ${version}-1 $arch$" "$o/installed" || fail "$arch: pigpu not installed: $(cat "$o/installed")"
  for lib in libudev1 libkmod2; do
    grep -q "^$lib .* $arch$" "$o/installed" || fail "$arch: apt did not pull $lib: $(cat "$o/installed")"
  done
  for rec in libvulkan1 kmod; do
    grep -q "^Inst $rec " "$o/apt-simulate.log" || fail "$arch: apt install would not pull the recommended $rec"
  done
  local drc; drc=$(cat "$o/doctor.rc")
  [ "$drc" = 0 ] || [ "$drc" = 1 ] || fail "$arch: pigpu doctor --json exited $drc: $(cat "$o/doctor.err")"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d, dict) and d, d' "$o/doctor.json" \
    || fail "$arch: pigpu doctor --json did not print a JSON object: $(head -c 400 "$o/doctor.json")"
  [ "$(cat "$o/inspect.rc")" = 0 ] || fail "$arch: pigpu inspect failed: $(cat "$o/inspect.err")"
  grep -q "llama" "$o/inspect" || fail "$arch: pigpu inspect does not name the architecture: $(head -n 5 "$o/inspect")"
  grep -q -- "-F _pigpu pigpu$" "$o/complete" || fail "$arch: bash completion not registered: $(cat "$o/complete")"
  for f in /usr/bin/pigpu /usr/share/man/man1/pigpu.1.gz /usr/share/man/man1/pigpu-setup.1.gz \
           /usr/lib/systemd/system/pigpu-first-boot.service /usr/lib/pigpu/first-boot; do
    grep -qx "$f" "$o/files" || fail "$arch: $f is not in the package"
  done

  # The first-boot unit, verified by this machine's systemd against a root holding its units
  # and the package's files (systemd-analyze checks the unit's syntax, its dependencies, that the
  # ExecStart program exists and is executable, and that `man pigpu-setup` resolves).
  local vroot=$work/vroot
  mkdir -p "$vroot/usr/lib/systemd"
  cp -a /usr/lib/systemd/system "$vroot/usr/lib/systemd/"
  dpkg-deb -x "$deb" "$vroot"
  MANPATH=$vroot/usr/share/man systemd-analyze verify --root="$vroot" pigpu-first-boot.service 2>"$o/verify.err" \
    || fail "$arch: systemd-analyze verify pigpu-first-boot.service: $(cat "$o/verify.err")"
  [ ! -s "$o/verify.err" ] || fail "$arch: systemd-analyze verify warned: $(cat "$o/verify.err")"

  # Removal leaves nothing behind.
  [ ! -s "$o/status-after" ] || [ "$(cat "$o/status-after")" = not-installed ] \
    || fail "$arch: pigpu still known to dpkg after purge: $(cat "$o/status-after")"
  ls "$r/var/lib/dpkg/info/" | grep -q '^pigpu\.' && fail "$arch: dpkg still has pigpu's control files"
  snapshot "$r" "$work/after"
  if ! diff -u "$work/before" "$work/after" >"$work/diff"; then
    head -n 40 "$work/diff" >&2
    fail "$arch: the root differs after apt-get purge + autoremove (diff above)"
  fi
  local ndeps; ndeps=$(grep -c '^Unpacking' "$o/apt-install.log" || true)
  say "$arch: ok — installed with $((ndeps - 1)) dependencies, ran version/doctor --json (exit $drc)/inspect/completion, unit verified, purge left the root as it was ($(wc -l <"$work/before") entries compared) in $(( $(date +%s) - t0 )) s"
}

# The extracted roots are removed on exit (PIGPU_KEEP=1 keeps them for a look after a failure).
works=()
cleanup() {
  if [ "${PIGPU_KEEP:-0}" = 1 ]; then
    [ ${#works[@]} -eq 0 ] || say "kept: ${works[*]}"
  else
    rm -rf "${works[@]}"
  fi
}
trap cleanup EXIT

# For scripts/image-test.sh: make sure the cached root exists (and binfmt for arm64), print its path.
if [ "${arches[0]}" = --print-root ]; then
  [ "${arches[1]:-}" = arm64 ] && [ "$host" != arm64 ] && ensure_binfmt
  root_tarball "${arches[1]:?--print-root needs an architecture}"
  exit 0
fi

start=$(date +%s)
for arch in "${arches[@]}"; do
  test_arch "$arch"
done
say "done in $(( $(date +%s) - start )) s"
