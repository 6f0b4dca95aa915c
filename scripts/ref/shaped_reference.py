#!/usr/bin/env python3
"""Reference data from llama.cpp (via llama-cpp-python) on pigpu's shaped random-weight models.

For architectures with no small real model here (qwen3, Llama 3.x's rope_freqs, smollm3, and
gemma3's sliding window at a width a short prompt crosses), pigpu writes a tiny GGUF with random
finite weights (`pigpu shape write NAME:MIX FILE --seed S`, deterministic for a given pigpu
generator version) and llama.cpp runs that very file. This records, per token-id prompt: the top
20 logits at the last prompt position and N_GEN greedy tokens with llama.cpp's top-two gap at
each step. The file's sha256 is recorded so a test can tell it regenerated the same bytes.

Usage (writes tests/fixtures/reference/shaped/NAME.json for each NAME):
    python3 scripts/ref/shaped_reference.py --pigpu target/release/pigpu [--threads 2] NAME ...
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

try:
    import llama_cpp
except ImportError:
    sys.exit("error: llama_cpp not importable; run: pip install llama-cpp-python==0.3.36")

WANT_VERSION = "0.3.36"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIX = "q8_0"
SEED = 1
N_GEN = 16
TOP_K = 20
N_CTX = 128


def prompts(n_vocab):
    # Token ids away from the special tokens at either end; one short prompt and one longer than
    # the tiny gemma3's sliding window (8), so both sides of the window are exercised.
    lo = 300
    span = n_vocab - lo - 300
    short = [lo + (i * 7919) % span for i in range(5)]
    long = [lo + (i * 104729 + 17) % span for i in range(29)]
    return [("short", short), ("long", long)]


def top2(row):
    row = np.asarray(row, dtype=np.float64)
    first = int(np.argmax(row))
    rest = row.copy()
    rest[first] = -np.inf
    second = int(np.argmax(rest))
    return first, second, float(row[first] - row[second])


def record(llm, pid, ids):
    llm.reset()
    llm.eval(ids)
    last = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    order = np.argsort(-last, kind="stable")[:TOP_K]
    gen, gaps = [], []
    row = llm.scores[len(ids) - 1]
    for _ in range(N_GEN):
        a, _, gap = top2(row)
        gen.append(a)
        gaps.append(round(gap, 5))
        llm.eval([a])
        row = llm.scores[llm.n_tokens - 1]
    return {
        "id": pid,
        "prompt_ids": ids,
        "top": [[int(i), round(float(last[i]), 5)] for i in order],
        "greedy": {"ids": gen, "top2_gap": gaps},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--pigpu", default=os.path.join(REPO, "target/release/pigpu"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/reference/shaped"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if llama_cpp.__version__ != WANT_VERSION:
        sys.exit(f"error: llama-cpp-python {llama_cpp.__version__} found, want {WANT_VERSION}")
    os.makedirs(args.out, exist_ok=True)
    for name in args.names:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name + ".gguf")
            subprocess.run([args.pigpu, "shape", "write", f"{name}:{MIX}", path, "--seed", str(SEED)],
                           check=True, stdout=subprocess.DEVNULL)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                                  n_threads=args.threads, n_threads_batch=args.threads,
                                  logits_all=True, verbose=False, seed=0)
            out = {
                "command": "python3 scripts/ref/shaped_reference.py --threads %d %s" % (args.threads, name),
                "generator": {"llama_cpp_python": llama_cpp.__version__, "n_threads": args.threads,
                              "n_ctx": N_CTX},
                "shape": name, "mix": MIX, "seed": SEED, "sha256": digest,
                "n_vocab": llm.n_vocab(), "n_gen": N_GEN,
                "prompts": [record(llm, pid, ids) for pid, ids in prompts(llm.n_vocab())],
            }
            del llm
        dest = os.path.join(args.out, name + ".json")
        with open(dest, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"{dest}: sha256 {digest[:12]}…", file=sys.stderr)


if __name__ == "__main__":
    main()
