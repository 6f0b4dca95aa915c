#!/usr/bin/env python3
"""llama-perplexity's own numbers on the two test models -> tests/fixtures/reference/llama-perplexity.json.

`pigpu perplexity` computes perplexity the way llama-perplexity does (windows of n_ctx, only the
second half of each scored, the +/- estimate); this records what llama-perplexity itself prints,
so tests/it/perplexity.rs can compare. Needs the CPU tools from scripts/ref/build-llama-cpp.sh.

Usage: scripts/ref/llama_perplexity.py BIN_DIR [OUT.json]
"""
import hashlib
import json
import os
import re
import subprocess
import sys

MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]
CTXS = [128, 256]
TEXT = "tests/fixtures/reference/ppl.txt"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bin_dir = sys.argv[1]
    out_path = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/reference/llama-perplexity.json"
    cache = os.environ.get("PIGPU_MODEL_CACHE", os.path.expanduser("~/.cache/pigpu/models"))
    env = dict(os.environ, LD_LIBRARY_PATH=bin_dir)
    results = []
    for model in MODELS:
        path = os.path.join(cache, model)
        for ctx in CTXS:
            # -b = -c: one window per pass, as pigpu evaluates them; -t 2 on the 2-core builder.
            argv = [os.path.join(bin_dir, "llama-perplexity"), "-m", path, "-f", TEXT,
                    "-c", str(ctx), "-b", str(ctx), "-t", "2"]
            log = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            text = log.stdout + log.stderr
            final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
            chunks = re.search(r"calculating perplexity over (\d+) chunks", text)
            running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", text)]
            if not final or not chunks:
                sys.exit(f"no final estimate in llama-perplexity's output for {model} ctx {ctx}:\n{text[-2000:]}")
            results.append({
                "model": model,
                "sha256": sha256(path),
                "ctx": ctx,
                "ppl": float(final.group(1)),
                "ppl_err": float(final.group(2)),
                "n_windows": int(chunks.group(1)),
                "window_ppl": running,
                "command": " ".join(["llama-perplexity"] + argv[1:2] + [model] + argv[3:]),
            })
            print(f"{model} ctx {ctx}: {final.group(1)} +/- {final.group(2)}", file=sys.stderr)
    doc = {
        "command": "scripts/ref/llama_perplexity.py " + " ".join(sys.argv[1:]),
        "generator": "llama-perplexity from llama.cpp as vendored in llama-cpp-python 0.3.36 "
                     "(scripts/ref/build-llama-cpp.sh, CPU build)",
        "file": TEXT,
        "results": results,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
