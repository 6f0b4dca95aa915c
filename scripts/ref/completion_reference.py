#!/usr/bin/env python3
"""Greedy continuations and prompt token ids from llama.cpp's own `llama-completion` tool (the
CPU build of scripts/ref/build-llama-cpp.sh), for models whose full reference data
(scripts/ref/llama_reference.py, which needs the llama-cpp-python binding) is not made yet.

For each prompt: the ids llama.cpp tokenized it to (from --verbose-prompt, BOS included when the
model adds one) and the text of N_GEN greedy tokens (--temp 0). Writes
tests/fixtures/reference/<name>.completion.json.

For a shaped random-weight model (`--shape NAME`), the file is written first with
`pigpu shape write NAME:q8_0 FILE --seed 1` and its sha256 recorded, so a test can write the same
bytes again and compare on the very file llama.cpp ran; output goes to
tests/fixtures/reference/shaped/NAME.completion.json.

Usage: python3 scripts/ref/completion_reference.py MODEL.gguf NAME
       python3 scripts/ref/completion_reference.py --shape NAME [--pigpu target/release/pigpu]
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import hashlib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.expanduser("~/.cache/pigpu/llama.cpp-0.3.36/build-cpu/bin")
N_GEN = 24
PROMPTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "Things to pack for a weekend hiking trip:\n1. A map\n2. Water\n3.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]
TOKEN_LINE = re.compile(r"^\S+ I\s+(\d+) -> '")


def run(model, prompt):
    env = dict(os.environ, LD_LIBRARY_PATH=BIN, OMP_WAIT_POLICY="passive")
    cmd = [os.path.join(BIN, "llama-completion"), "-m", model, "-p", prompt, "-n", str(N_GEN),
           "--temp", "0", "-t", "2", "-no-cnv", "--no-warmup", "--verbose-prompt", "-c", "256",
           "--no-display-prompt"]
    out = subprocess.run(cmd, env=env, capture_output=True, check=True)
    log = out.stderr.decode("utf-8", "replace").splitlines()
    start = next(i for i, l in enumerate(log) if "number of tokens in prompt" in l)
    n = int(log[start].rsplit("=", 1)[1])
    # One line per token; a token holding a newline continues on the next line, which does not
    # match and is skipped.
    ids = [int(m.group(1)) for m in map(TOKEN_LINE.match, log[start + 1:]) if m][:n]
    assert len(ids) == n, (ids, n)
    return ids, out.stdout.decode("utf-8", "replace")


def records(model):
    recs = []
    for p in PROMPTS:
        ids, text = run(model, p)
        recs.append({"prompt": p, "prompt_ids": ids, "greedy_text": text})
    return recs


def main():
    tool = "llama-completion (llama-cpp-python 0.3.36's vendored llama.cpp, CPU build)"
    if sys.argv[1] == "--shape":
        name = sys.argv[2]
        pigpu = sys.argv[4] if len(sys.argv) > 4 else os.path.join(REPO, "target/release/pigpu")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, name + ".gguf")
            subprocess.run([pigpu, "shape", "write", f"{name}:q8_0", path, "--seed", "1"],
                           check=True, stdout=subprocess.DEVNULL)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out = {
                "command": f"python3 scripts/ref/completion_reference.py --shape {name}",
                "tool": tool, "shape": name, "mix": "q8_0", "seed": 1, "sha256": digest,
                "n_gen": N_GEN, "prompts": records(path),
            }
        dest = os.path.join(REPO, "tests/fixtures/reference/shaped", name + ".completion.json")
    else:
        model, name = sys.argv[1], sys.argv[2]
        out = {
            "command": f"python3 scripts/ref/completion_reference.py MODEL {name}",
            "tool": tool, "n_gen": N_GEN, "prompts": records(model),
        }
        dest = os.path.join(REPO, "tests/fixtures/reference", name + ".completion.json")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(dest, file=sys.stderr)


if __name__ == "__main__":
    main()
