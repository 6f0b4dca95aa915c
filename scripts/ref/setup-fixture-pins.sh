#!/usr/bin/env bash
# Prints the pins of tests/fixtures/setup/manifest.toml.in, computed with git and sha256sum (not
# with pigpu's own code): the git tree of srctree/ before and after applying the fixture series,
# and the sha256 of the files pinned by digest.
set -euo pipefail
cd "$(dirname "$0")/../../tests/fixtures/setup"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r srctree "$tmp/t"
( cd "$tmp/t" && git init -q && git add --all --force && echo "source tree: $(git write-tree)" )
for p in patches/0001-query-coherency.patch patches/0002-uvm-flush.patch; do
  patch -s -p1 -d "$tmp/t" -i "$PWD/$p"
done
( cd "$tmp/t" && git add --all --force && echo "result tree: $(git write-tree)" )
sha256sum patches/0002-uvm-flush.patch fake-installer.run
