#!/usr/bin/env python3
"""Reference data for pigpu's dequantization, made with gguf-py (PyPI `gguf`), which nobody on
the pigpu project wrote. pigpu's tests compare its output with these bit for bit.

Regenerate (from the repository root; needs the test models, see scripts/fetch-models.sh):

    python3 -m pip install 'gguf==0.19.0' 'numpy==2.4.6'   # versions the committed files were made with
    python3 scripts/ref/quant_reference.py blocks    # -> tests/fixtures/quant/random_blocks.json
    python3 scripts/ref/quant_reference.py models    # -> tests/fixtures/quant/model_tensors.json

`blocks` takes about a second; `models` dequantizes every tensor of both test models (about a
minute and 3 GB of memory).

random_blocks.json holds, per type:
  - `blocks`: a few blocks (raw bytes as hex) — random ones and edge cases (zero, negative-zero,
    subnormal and largest f16 scales; all-zero and all-one quant bits) — with gguf-py's output as
    the hex of its little-endian f32 bytes, so tests compare bits, not approximate floats;
  - `bulk`: the sha256 of gguf-py's output for `n_blocks` blocks of pseudo-random bytes from the
    splitmix64 generator below (seeded with `seed`; each u64 written little-endian), with every
    f16 scale field whose exponent is all ones (inf/NaN) made finite by clearing bit 14. The Rust
    test regenerates the same bytes, so the bytes need not be committed.
Scales are kept finite because inf * 0 gives a NaN whose sign differs between x86 and ARM; with
finite scales every result is a finite f32 that any IEEE machine computes identically.
"""

import hashlib
import json
import os
import random
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "quant")
MODEL_CACHE = os.environ.get("PIGPU_MODEL_CACHE", os.path.expanduser("~/.cache/pigpu/models"))
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"]

# Byte offsets of the f16 scale fields inside one block (ggml's block layouts).
SCALE_FIELDS = {
    "F32": [], "F16": [], "BF16": [],
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Elements per "block" for the plain types, so their fixtures have a useful length.
PLAIN_BLOCK = {"F32": 64, "F16": 64, "BF16": 64}
BULK_BLOCKS = 512
MASK64 = (1 << 64) - 1


def splitmix64(state):
    """Yields the splitmix64 sequence from `state` (Steele, Lea, Flood 2014)."""
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        yield z ^ (z >> 31)


def prng_bytes(seed, n):
    gen = splitmix64(seed)
    out = bytearray()
    while len(out) < n:
        out += next(gen).to_bytes(8, "little")
    return bytearray(out[:n])


def make_finite(buf, type_size, fields):
    for b in range(0, len(buf), type_size):
        for f in fields:
            v = int.from_bytes(buf[b + f:b + f + 2], "little")
            if (v >> 10) & 0x1F == 0x1F:
                v &= ~0x4000
            buf[b + f:b + f + 2] = v.to_bytes(2, "little")


def geometry(name):
    qt = T[name]
    block, size = gguf.GGML_QUANT_SIZES[qt]
    if name in PLAIN_BLOCK:
        block, size = PLAIN_BLOCK[name], PLAIN_BLOCK[name] * size
    return qt, block, size


def deq(name, raw):
    qt = T[name]
    out = dequantize(np.frombuffer(bytes(raw), dtype=np.uint8), qt)
    return np.ascontiguousarray(out, dtype="<f4").reshape(-1)


def set_scales(buf, fields, values):
    for f, v in zip(fields, values):
        buf[f:f + 2] = v.to_bytes(2, "little")


def edge_blocks(name, size, rng):
    fields = SCALE_FIELDS[name]
    if name == "F32":
        vals = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF,
                0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345, 0x3F800000]
        body = b"".join(v.to_bytes(4, "little") for v in vals)
        return [("edge values", bytearray(body + bytes(rng.getrandbits(8) for _ in range(size - len(body)))))]
    if name in ("F16", "BF16"):
        if name == "F16":
            vals = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
                    0x7E00, 0x7C01, 0xFD55, 0x3C00, 0x8001]
        else:
            vals = [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80,
                    0x7FC0, 0x7F81, 0xFFA5, 0x3F80, 0x8001]
        body = b"".join(v.to_bytes(2, "little") for v in vals)
        return [("edge values", bytearray(body + bytes(rng.getrandbits(8) for _ in range(size - len(body)))))]
    out = []
    zero = bytearray(size)
    out.append(("all zero bytes", zero))
    ones = bytearray(b"\xff" * size)
    set_scales(ones, fields, [0x7BFF, 0xFBFF][:len(fields)])
    out.append(("largest scales, all quant bits set", ones))
    sub = bytearray(rng.getrandbits(8) for _ in range(size))
    set_scales(sub, fields, [0x0001, 0x8000][:len(fields)])
    out.append(("subnormal / negative-zero scales, random quants", sub))
    if name.endswith("_K"):
        sub2 = bytearray(rng.getrandbits(8) for _ in range(size))
        set_scales(sub2, fields, [0x83FF, 0x0400][:len(fields)])
        out.append(("negative subnormal / smallest normal scales", sub2))
    return out


def blocks():
    rng = random.Random(20261129)
    types = {}
    for name in SCALE_FIELDS:
        qt, block, size = geometry(name)
        fields = SCALE_FIELDS[name]
        cases = edge_blocks(name, size, rng)
        n_random = 1 if name.endswith("_K") or name in PLAIN_BLOCK else 3
        for _ in range(n_random):
            b = bytearray(rng.getrandbits(8) for _ in range(size))
            make_finite(b, size, fields)
            cases.append(("random", b))
        fixture_blocks = []
        for note, raw in cases:
            out = deq(name, raw)
            assert out.size == block, (name, out.size)
            fixture_blocks.append({"note": note, "bytes": bytes(raw).hex(), "out": out.tobytes().hex()})
        seed = qt.value * 1000 + 7
        raw = prng_bytes(seed, BULK_BLOCKS * size)
        make_finite(raw, size, fields)
        out = deq(name, raw)
        types[name] = {
            "id": qt.value,
            "block_elements": block,
            "block_bytes": size,
            "blocks": fixture_blocks,
            "bulk": {"seed": seed, "n_blocks": BULK_BLOCKS, "scale_fields": fields,
                     "sha256": hashlib.sha256(out.tobytes()).hexdigest()},
        }
    doc = {
        "source": "gguf-py (PyPI gguf) gguf.quants.dequantize; made by scripts/ref/quant_reference.py blocks",
        "gguf_py": gguf_version(),
        "numpy": np.__version__,
        "out_format": "hex of the little-endian f32 bytes of gguf-py's output",
        "types": types,
    }
    write("random_blocks.json", doc)


def models():
    doc_models = []
    for file in MODELS:
        path = os.path.join(MODEL_CACHE, file)
        reader = gguf.GGUFReader(path)
        tensors = []
        for t in reader.tensors:
            out = dequantize(t.data, t.tensor_type)
            out = np.ascontiguousarray(out, dtype="<f4")
            assert out.size == int(t.n_elements), t.name
            tensors.append({
                "name": t.name,
                "type": t.tensor_type.name,
                "shape": [int(d) for d in t.shape],
                "sha256": hashlib.sha256(memoryview(out).cast("B")).hexdigest(),
            })
            del out
        with open(path, "rb") as f:
            file_sha = hashlib.file_digest(f, "sha256").hexdigest()
        doc_models.append({"file": file, "file_sha256": file_sha, "tensors": tensors})
        print(f"{file}: {len(tensors)} tensors", file=sys.stderr)
    doc = {
        "source": "gguf-py (PyPI gguf) GGUFReader + gguf.quants.dequantize; made by scripts/ref/quant_reference.py models",
        "gguf_py": gguf_version(),
        "numpy": np.__version__,
        "sha256_of": "gguf-py's dequantized tensor as little-endian f32 bytes, in file order (innermost dimension first)",
        "models": doc_models,
    }
    write("model_tensors.json", doc)


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


def compact(value, indent=0):
    """JSON with one line per innermost object, so the files stay small and diff well."""
    pad = " " * indent
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) and v and isinstance(v, dict) or
                                       (isinstance(v, list) and v and isinstance(v[0], dict))
                                       for v in value.values()):
        items = [f'{pad} {json.dumps(k)}: {compact(v, indent + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = [compact(v, indent + 1) for v in value]
        return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return pad + json.dumps(value)


def write(name, doc):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, name)
    with open(path, "w") as f:
        f.write(compact(doc))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    what = sys.argv[1:] or ["blocks", "models"]
    for w in what:
        {"blocks": blocks, "models": models}[w]()
