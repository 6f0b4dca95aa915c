#!/usr/bin/env bash
# Runs two pigpu binaries on the same inputs and compares what they print: "behaviour unchanged"
# for a refactor (issue 14). The old binary is the reference; nothing here is an expected value.
#
# Usage: scripts/compare-outputs.sh OLD_BIN NEW_BIN [MODELS_DIR]
#   MODELS_DIR  where the test models are (default: $PIGPU_MODEL_CACHE, else ~/.cache/pigpu/models):
#               SmolLM2-135M-Instruct.Q4_1.gguf and qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
#
# Every model command runs on the CPU engine with the prompt "The capital of France is"; stderr
# is dropped, stdout and the exit code are compared. Per model:
#   greedy        run --temp 0 -n 32                         (text, byte for byte)
#   seeded        run --temp 0.8 --seed 42 -n 32             (text, byte for byte)
#   run-json      run --temp 0 -n 32 --json                  (key paths and every value but timings)
#   chat          run --chat --temp 0 -n 32, two turns through a pipe   (text, byte for byte)
#   chat-json     the same with --json                       (key paths and every value but timings)
#   perplexity    perplexity -c 128 --chunks 2 --json on tests/fixtures/reference/ppl.txt (all values)
#   bench-keys    bench -p 8 -n 4 -r 1 -o json               (field names per row, not values)
#   inspect       inspect --json                             (byte for byte)
#   tokenize      tokenize of a string with special tokens, accents, an emoji, a tab and digits:
#                 the ids, and --pieces (byte for byte)
# Once:
#   doctor-log    doctor --json --log on every real log in tests/fixtures/doctor/real-logs
#   setup-dry-run setup --dry-run --json on a fake Pi 5 root with an RTX A4000 (the fixture manifest)
# The timing fields left out of the comparison are named in scripts/compare_outputs.py.
#
# Prints one line per comparison (same / DIFF, with the first lines of a difference) and a total;
# exits 1 when anything differs, 2 on bad arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
old=$(realpath -e "$1" 2>/dev/null) || { echo "compare-outputs: OLD_BIN '$1' does not exist" >&2; exit 2; }
new=$(realpath -e "$2" 2>/dev/null) || { echo "compare-outputs: NEW_BIN '$2' does not exist" >&2; exit 2; }
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "compare-outputs: '$b' is not an executable file" >&2; exit 2; }
done
models_dir=${3:-${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}}
models=(SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf)
for m in "${models[@]}"; do
  [ -f "$models_dir/$m" ] || {
    echo "compare-outputs: $models_dir/$m is missing (scripts/fetch-models.sh fetches it)" >&2
    exit 2
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
norm=scripts/compare_outputs.py
prompt="The capital of France is"
tricky=$'<|im_start|>user\n  héllo wörld 🦀 — naïve café\t12345 <|im_end|>\n'
chat_turns=$'What is the capital of France?\nAnd of Germany?\n'
same=0 differ=0

# compare NAME FILTER CMD...: runs CMD with each binary in place of "BIN" (stdin from $stdin_file
# when set), passes stdout through FILTER (cat, or "$norm values|keys"), appends the exit code,
# and compares the two results.
stdin_file=/dev/null
compare() {
  local name=$1 filter=$2
  shift 2
  local side bin args a
  for side in old new; do
    bin=${!side}
    args=()
    for a in "$@"; do [ "$a" = BIN ] && args+=("$bin") || args+=("$a"); done
    "${args[@]}" <"$stdin_file" 2>/dev/null >"$work/$side.raw"
    local rc=$?
    if [ "$filter" = cat ]; then
      cat "$work/$side.raw"
    else
      python3 $filter <"$work/$side.raw"
    fi >"$work/$side.out"
    printf '\n[exit %s]\n' "$rc" >>"$work/$side.out"
    echo "$rc" >"$work/$side.rc"
  done
  # What was compared, so that two equal failures or two empty outputs do not pass unseen.
  local what
  what="exit $(cat "$work/old.rc"), $(wc -c <"$work/old.raw") bytes"
  if cmp -s "$work/old.out" "$work/new.out"; then
    printf 'same  %-50s %s\n' "$name" "($what)"
    same=$((same + 1))
  else
    printf 'DIFF  %-50s %s\n' "$name" "(old: $what)"
    diff -u "$work/old.out" "$work/new.out" | sed -n '3,22p' | sed 's/^/      /'
    differ=$((differ + 1))
  fi
}

for m in "${models[@]}"; do
  mp="$models_dir/$m"
  short=${m%%.gguf}
  run=(BIN run "$mp" --backend cpu -p "$prompt" -n 32)
  compare "$short greedy" cat "${run[@]}" --temp 0
  compare "$short seeded" cat "${run[@]}" --temp 0.8 --seed 42
  compare "$short run-json" "$norm values" "${run[@]}" --temp 0 --json
  printf '%s' "$chat_turns" >"$work/chat.in"
  stdin_file="$work/chat.in"
  compare "$short chat" cat BIN run "$mp" --backend cpu --chat --temp 0 -n 32
  compare "$short chat-json" "$norm values" BIN run "$mp" --backend cpu --chat --temp 0 -n 32 --json
  stdin_file=/dev/null
  compare "$short perplexity" "$norm values" BIN perplexity "$mp" tests/fixtures/reference/ppl.txt \
    -c 128 --chunks 2 --backend cpu --json
  compare "$short bench-keys" "$norm keys" BIN bench -m "$mp" -p 8 -n 4 -r 1 --backend cpu -o json
  compare "$short inspect" cat BIN inspect "$mp" --json
  compare "$short tokenize" cat BIN tokenize "$mp" "$tricky"
  compare "$short tokenize-pieces" cat BIN tokenize "$mp" "$tricky" --pieces
done

# doctor on every real log (the findings cite file:line, so the paths are the same for both).
doctor_all() {
  local bin=$1 f
  for f in tests/fixtures/doctor/real-logs/*; do
    echo "== $f"
    "$bin" doctor --json --log "$f"
    echo "[exit $?]"
  done
}
compare "doctor-log ($(ls tests/fixtures/doctor/real-logs | wc -l) logs)" cat doctor_all BIN

# A fake Raspberry Pi 5 root with an NVIDIA RTX A4000 (10de:2204) on the bus, as tests/it/setup.rs
# makes one, and the test manifest pointing at an address nothing answers on (a dry run fetches
# nothing). With kernel headers under /usr/src, the root's running-kernel modules link to them.
fake_root() {
  local r=$work/root fix=tests/fixtures/setup
  mkdir -p "$r/boot/firmware" "$r/proc/device-tree" "$r/etc" "$r/var/lib/dpkg" "$r/usr/src" \
    "$r/sys/bus/pci/devices/0001:01:00.0" "$work/mirror"
  cp "$fix/config/pios-bookworm.txt" "$r/boot/firmware/config.txt"
  echo -n "fixture 4K kernel image" >"$r/boot/firmware/kernel8.img"
  echo -n "fixture 16K kernel image" >"$r/boot/firmware/kernel_2712.img"
  printf 'Raspberry Pi 5 Model B Rev 1.0\0' >"$r/proc/device-tree/model"
  printf 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n' >"$r/etc/os-release"
  printf 'root:x:0:\nvideo:x:44:pi\n' >"$r/etc/group"
  printf 'Package: build-essential\nStatus: install ok installed\nVersion: 12.12\n\nPackage: patch\nStatus: install ok installed\n' \
    >"$r/var/lib/dpkg/status"
  local headers rel
  headers=$(ls -d /usr/src/linux-headers-* 2>/dev/null | while read -r d; do
    [ -f "$d/.config" ] && [ -f "$d/Makefile" ] && echo "$d"; done | sort | tail -1)
  if [ -n "$headers" ]; then
    rel=${headers#/usr/src/linux-headers-}
    mkdir -p "$r/lib/modules/$rel"
    ln -s "$headers" "$r/lib/modules/$rel/build"
    ln -s "$headers" "$r/usr/src/${headers##*/}"
    local common
    common=$(realpath -e "/lib/modules/$rel/source" 2>/dev/null) && [ -f "$common/Makefile" ] && {
      ln -s "$common" "$r/lib/modules/$rel/source"
      [ -e "$r/usr/src/${common##*/}" ] || ln -s "$common" "$r/usr/src/${common##*/}"
    }
  else
    mkdir -p "$r/lib/modules/6.12.47+rpt-rpi-2712/kernel"
  fi
  local d="$r/sys/bus/pci/devices/0001:01:00.0"
  echo 0x10de >"$d/vendor"
  echo 0x2204 >"$d/device"
  echo 0x030000 >"$d/class"
  cp "$fix/patches/0002-uvm-flush.patch" "$work/mirror/"
  sed -e 's|@BASE@|http://127.0.0.1:9|g' -e "s|@ARCH@|$(uname -m)|g" "$fix/manifest.toml.in" \
    >"$work/mirror/manifest.toml"
}
fake_root
compare "setup-dry-run" "$norm values" BIN setup --dry-run --json --root "$work/root" \
  --manifest "$work/mirror/manifest.toml"

echo "total: $((same + differ)) comparisons, $same same, $differ different"
[ "$differ" = 0 ]
