"""Aggregate generation tokens/s of an OpenAI-compatible server with N concurrent streams, and
time to first token on an idle server. Used by scripts/serve-bench.sh for both `pigpu serve` and
llama-server, so both are measured by the same client, and by scripts/gpu-bench.sh (serve on the
Vulkan engine). Standard library only (the GPU machine has Python 3.12 and nothing to install).

Usage: serve_bench.py BASE_URL N MAX_TOKENS ROUNDS   -> one JSON line on stdout
  {"n", "tokens_per_s" (best round), "ttft_ms" (median of 3), "tokens" (generated in the best
  round), "min_tokens" (fewest of one stream there: a model that stops early, such as a shaped
  model with random weights meeting its end token, shows here), "wall_s" (the best round's)}
"""

import json
import sys
import threading
import time
import urllib.request

base, n, max_tokens, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
PROMPTS = [
    "Write a long story about a robot who learns to paint.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market in a big city.",
    "Write a letter to a friend about a trip to the mountains.",
    "Explain why the sky is blue, step by step.",
    "Tell the history of the bicycle.",
    "Describe how bread is made, from the field to the table.",
    "Write a story about a lighthouse keeper and a storm.",
]


def post(path, body, stream=False):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=600)


def completion(i, out):
    body = {"messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens, "temperature": 0}
    with post("/v1/chat/completions", body) as r:
        out[i] = json.load(r)["usage"]["completion_tokens"]


def ttft():
    """Seconds from sending a streamed request to its first content chunk (to the end of the
    stream when no chunk has content, as when the first tokens are special or empty). The
    request says `cache_prompt: false` (both servers read it), so its whole prompt is evaluated
    as `pigpu run` evaluates it, instead of being found in the slot's cache from the request
    before."""
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 4,
            "temperature": 0, "stream": True, "cache_prompt": False}
    t0 = time.perf_counter()
    first = None
    with post("/v1/chat/completions", body) as r:
        for line in r:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                d = json.loads(line[6:])
                if d.get("choices") and (d["choices"][0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - t0
                    break
        for _ in r:
            pass
    return first if first is not None else time.perf_counter() - t0


completion(0, {})  # warm up
best = 0.0
best_round = {"tokens": 0, "min_tokens": 0, "wall_s": 0.0}
for _ in range(rounds):
    out = {}
    threads = [threading.Thread(target=completion, args=(i, out)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(out.values())
    if tokens / wall > best:
        best = tokens / wall
        best_round = {"tokens": tokens, "min_tokens": min(out.values(), default=0),
                      "wall_s": round(wall, 3)}
ttfts = sorted(ttft() for _ in range(3))
print(json.dumps({"n": n, "tokens_per_s": round(best, 2), "ttft_ms": round(ttfts[1] * 1e3, 1),
                  **best_round}))
