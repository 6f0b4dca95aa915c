#!/usr/bin/env bash
# Builds pigpu's Debian packages with cargo-deb: arm64 (the Pi), cross-built with the flags and
# target dir of scripts/cross-test.sh (scripts/cross-env.sh), and amd64 from the native release
# build. The man pages and shell completions are generated from the clap definitions by the
# native binary (`pigpu completions`); they do not depend on the architecture. lintian checks
# both packages: its errors and warnings fail the build (the two it overrides are explained in
# packaging/debian/lintian-overrides). Called by `scripts/just package`; scripts/install-test.sh installs the result.
#
# Usage: scripts/package.sh [arm64|amd64]...   (default: both; on an arm64 host only arm64)
# Output: target/debian/pigpu_<version>_<arch>.deb, and their paths on stdout.
# Needs: cargo-deb (installed here on first use, pinned), lintian (scripts/install-deps.sh);
# PIGPU_NO_LINT=1 skips lintian.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "package: $*" >&2; }

cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$cargo_deb_version" ]; then
  say "installing cargo-deb $cargo_deb_version from crates.io (once; about 1.5 CPU-minutes)"
  cargo install --locked --quiet cargo-deb --version "$cargo_deb_version"
fi

host=$(dpkg --print-architecture)
arches=("$@")
if [ ${#arches[@]} -eq 0 ]; then
  case "$host" in
    amd64) arches=(arm64 amd64) ;;
    *) arches=("$host") ;;
  esac
fi

start=$(date +%s)
# The native binary: the amd64 package's payload, and the generator of man pages and completions.
cargo build --release --quiet --bin pigpu
assets=target/package-assets
rm -rf "$assets"
mkdir -p "$assets/completions"
./target/release/pigpu completions --man "$assets/man" >/dev/null
./target/release/pigpu completions bash >"$assets/completions/pigpu"
./target/release/pigpu completions zsh >"$assets/completions/_pigpu"
./target/release/pigpu completions fish >"$assets/completions/pigpu.fish"

out=target/debian
mkdir -p "$out"
debs=()
for arch in "${arches[@]}"; do
  if [ "$arch" = "$host" ]; then
    deb=$(cargo deb --no-build --strip --quiet --output "$out")
  elif [ "$arch" = arm64 ] && [ "$host" = amd64 ]; then
    deb=$(
      # shellcheck source=scripts/cross-env.sh
      . scripts/cross-env.sh
      cross_check
      cargo build --release --quiet --target "$cross_target" --bin pigpu
      cargo deb --no-build --strip --quiet --target "$cross_target" --output "$out"
    )
  else
    say "error: cannot build a $arch package on this $host machine (only arm64 from amd64 is set up)"
    exit 2
  fi
  say "built $deb"
  debs+=("$deb")
done

if [ "${PIGPU_NO_LINT:-0}" != 1 ]; then
  command -v lintian >/dev/null 2>&1 \
    || { say "error: lintian not found; run scripts/install-deps.sh (or PIGPU_NO_LINT=1)"; exit 2; }
  # Errors and warnings fail; info tags are printed, not fatal.
  lintian --fail-on error,warning --display-info "${debs[@]}" >&2 \
    || { say "error: lintian found problems in ${debs[*]} (above)"; exit 1; }
  say "lintian: no errors or warnings"
fi
say "done in $(( $(date +%s) - start )) s"
printf '%s\n' "${debs[@]}"
