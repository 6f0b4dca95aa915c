#!/usr/bin/env python3
"""Normalises one pigpu command's JSON output for scripts/compare-outputs.sh.

Usage: compare_outputs.py values|keys < OUTPUT > NORMALISED

The input is one JSON document or several, one per line (chat's --json writes one per turn).
Every document is flattened to one line per leaf, `path = value`, in document order, so that two
binaries' outputs compare line by line and a difference names its key path.

  values  every leaf with its value, except the timing fields below, whose value becomes
          `<timing>` (the key path is still compared).
  keys    key paths only (values dropped; array indices kept, so row counts are compared too).

Timing fields (measured wall-clock times and rates, different on every run):
  timings.*       run/chat --json: load_ms, prompt_ms, prompt_tokens_per_s, gen_ms,
                  gen_tokens_per_s
  stats.host_us   run/chat --json: host time per token
"""

import json
import sys

# Path prefixes whose values are timings. A path matches when it equals the prefix or continues it
# with `.` or `[`.
TIMING = ("timings", "stats.host_us")


def is_timing(path):
    return any(path == t or path.startswith(t + ".") or path.startswith(t + "[") for t in TIMING)


def leaves(value, path=""):
    if isinstance(value, dict):
        if not value:
            yield path, "{}"
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        if not value:
            yield path, "[]"
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        # json.dumps keeps a float's shortest round-trip form, so equal numbers print equally.
        yield path, json.dumps(value, ensure_ascii=False)


def documents(text):
    text = text.strip()
    if not text:
        return []
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("values", "keys"):
        sys.exit("usage: compare_outputs.py values|keys < OUTPUT")
    mode = sys.argv[1]
    text = sys.stdin.read()
    try:
        docs = documents(text)
    except json.JSONDecodeError as e:
        # Not JSON (an error message, a crash): compare it as it is.
        print(f"not JSON ({e}):")
        print(text, end="")
        return
    for n, doc in enumerate(docs):
        print(f"# document {n}")
        for path, value in leaves(doc):
            if mode == "keys":
                print(path)
            elif is_timing(path):
                print(f"{path} = <timing>")
            else:
                print(f"{path} = {value}")


if __name__ == "__main__":
    main()
