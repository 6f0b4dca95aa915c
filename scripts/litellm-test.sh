#!/usr/bin/env bash
# Two `pigpu serve` processes behind LiteLLM's proxy (PyPI litellm[proxy], in a venv cached by
# scripts/openai-venv.sh --litellm), all on loopback: sends requests through the proxy with the
# official openai client and checks from each server's /metrics that both answered some.
# Not part of `scripts/just test` (litellm[proxy] is a heavy install): `scripts/just test-litellm`.
# Usage: scripts/litellm-test.sh [MODEL] [REQUESTS]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
model="${1:-${PIGPU_MODEL_CACHE:-$HOME/.cache/pigpu/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
requests="${2:-12}"
pigpu="$here/../target/release/pigpu"
[ -x "$pigpu" ] || { echo "litellm-test: build first: cargo build --release" >&2; exit 2; }
[ -f "$model" ] || { echo "litellm-test: model $model missing (scripts/fetch-models.sh)" >&2; exit 2; }
python=$("$here/openai-venv.sh" --litellm)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ports=(18281 18282)
for p in "${ports[@]}"; do
  "$pigpu" serve "$model" --backend cpu --port "$p" --ctx 512 --threads 1 --api-key "k-$p" \
    >"$work/pigpu-$p.log" 2>&1 &
  pids+=($!)
done
cat >"$work/config.yaml" <<YAML
model_list:
  - model_name: smollm
    litellm_params: {model: openai/SmolLM2-135M-Instruct.Q4_1, api_base: "http://127.0.0.1:${ports[0]}/v1", api_key: k-${ports[0]}}
  - model_name: smollm
    litellm_params: {model: openai/SmolLM2-135M-Instruct.Q4_1, api_base: "http://127.0.0.1:${ports[1]}/v1", api_key: k-${ports[1]}}
router_settings: {routing_strategy: simple-shuffle}
general_settings: {master_key: sk-proxy}
YAML
proxy_port=18280
"$(dirname "$python")/litellm" --config "$work/config.yaml" --host 127.0.0.1 --port $proxy_port \
  >"$work/litellm.log" 2>&1 &
pids+=($!)

ready() { curl -sf -o /dev/null "$1"; }
for _ in $(seq 1 900); do
  ready "http://127.0.0.1:${ports[0]}/health" && ready "http://127.0.0.1:${ports[1]}/health" \
    && ready "http://127.0.0.1:$proxy_port/health/liveliness" && break
  sleep 0.2
done
ready "http://127.0.0.1:$proxy_port/health/liveliness" \
  || { echo "litellm-test: the proxy did not start:"; tail -n 30 "$work/litellm.log"; exit 1; }

"$python" - "$proxy_port" "$requests" <<'PY'
import sys, openai
port, n = sys.argv[1], int(sys.argv[2])
c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-proxy", max_retries=0)
for i in range(n):
    r = c.chat.completions.create(model="smollm", max_tokens=8, temperature=0,
                                  messages=[{"role": "user", "content": f"Count to {i + 2}."}])
    assert r.choices[0].message.content, r
print(f"litellm-test: {n} requests answered through the proxy")
PY
counts=()
for p in "${ports[@]}"; do
  n=$(curl -sf -H "Authorization: Bearer k-$p" "http://127.0.0.1:$p/metrics" \
      | awk '/^pigpu_requests_total\{outcome="ok"\}/ {print $2}')
  echo "litellm-test: server on port $p answered $n"
  counts+=("$n")
done
[ "${counts[0]}" -gt 0 ] && [ "${counts[1]}" -gt 0 ] \
  || { echo "litellm-test: FAILED: requests did not reach both servers"; exit 1; }
[ $(( counts[0] + counts[1] )) -eq "$requests" ] \
  || { echo "litellm-test: FAILED: ${counts[*]} answered, $requests sent"; exit 1; }
echo "litellm-test: ok (both servers answered)"
