#!/usr/bin/env bash
# `pigpu serve` against llama-server (built from the same llama.cpp source as the other
# comparisons: scripts/ref/build-llama-cpp.sh --server) on the same model, CPU engine: aggregate
# generation tokens/s with N = 1, 2, 4, 8 concurrent streams (`--parallel N` on both), the ratio,
# and time to first token on an idle server against `pigpu run`'s prompt time.
# The servers run one at a time, alternating, on loopback; the client is scripts/serve_bench.py.
# Both get the same thread budget, THREADS: llama-server runs every slot's tokens in one batch on
# its `-t` threads, and pigpu's CPU slots are decoded together in one pass on the first slot's
# `--threads` (each slot does not get threads of its own), so both get `THREADS` whatever N is.
# Usage: scripts/serve-bench.sh [MODEL] [MAX_TOKENS] [ROUNDS]
#   (env NS="1 2 4 8", THREADS=cores, PORT=18181: the loopback port both servers take in turn)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
model="${1:-${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
max_tokens="${2:-64}"
rounds="${3:-2}"
ns="${NS:-1 2 4 8}"
threads="${THREADS:-$(nproc)}"
ctx=512
pigpu="$here/../target/release/pigpu"
[ -x "$pigpu" ] || { echo "serve-bench: build first: cargo build --release" >&2; exit 2; }
[ -f "$model" ] || { echo "serve-bench: model $model missing (scripts/fetch-models.sh)" >&2; exit 2; }
llama_server=$("$here/ref/build-llama-cpp.sh" --server | tail -n 1)
[ -x "$llama_server" ] || { echo "serve-bench: llama-server not built" >&2; exit 2; }

port="${PORT:-18181}"
# `measure` runs in a command substitution (a subshell), so the server's pid is kept in a file
# that the exit trap reads: a benchmark stopped early (Ctrl-C, timeout) leaves no server behind.
pidfile=$(mktemp)
cleanup() { kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "serve-bench: server on $port did not become ready" >&2; exit 2
}

measure() { # name n cmd...
  local name=$1 n=$2; shift 2
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
    echo "serve-bench: something already answers on port $port (another benchmark?); set PORT" >&2
    exit 2
  fi
  "$@" >/tmp/serve-bench-$name.log 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready
  python3 "$here/serve_bench.py" "http://127.0.0.1:$port" "$n" "$max_tokens" "$rounds" \
    | tee -a /tmp/serve-bench-results.txt | sed "s/^/$name /" >&2
  tail -n 1 /tmp/serve-bench-results.txt
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

echo "model $(basename "$model"), $max_tokens tokens per stream, best of $rounds rounds, $threads threads, ctx $ctx per slot"
printf '%-3s %14s %14s %7s %12s %12s\n' N pigpu_t/s llama_t/s ratio pigpu_ttft llama_ttft
for n in $ns; do
  p=$(measure pigpu "$n" "$pigpu" serve "$model" --backend cpu --port $port --parallel "$n" \
        --ctx $ctx --threads "$threads")
  l=$(measure llama "$n" "$llama_server" -m "$model" --port $port --parallel "$n" \
        -c $(( ctx * n )) -t "$threads" --no-webui)
  python3 - "$n" "$p" "$l" <<'PY'
import json, sys
n, p, l = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{n:<3} {p['tokens_per_s']:>14} {l['tokens_per_s']:>14} {p['tokens_per_s']/l['tokens_per_s']:>6.2f}x"
      f" {p['ttft_ms']:>10} ms {l['ttft_ms']:>9} ms")
PY
done
# pigpu run's prompt time for the same chat prompt (the TTFT target: <= 1.1x this).
"$pigpu" run "$model" --backend cpu --ctx $ctx --threads "$threads" --chat --temp 0 -n 1 --json \
  -p "Write a long story about a robot who learns to paint." 2>/dev/null \
  | python3 -c 'import json,sys; t=json.load(sys.stdin)["timings"]; print("pigpu run prompt time: %.1f ms" % t["prompt_ms"])'
