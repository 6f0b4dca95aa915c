#!/usr/bin/env python3
"""Token ids from llama.cpp itself, for pigpu's tokenizer tests.

Runs llama.cpp's tokenizer (through the `llama_cpp` Python binding, which vendors llama.cpp) on
the real test models and on the vocab-only GGUF fixtures, for a set of texts, in both modes that
pigpu exposes: add_special=parse_special=False (`pigpu tokenize --raw`) and
add_special=parse_special=True (the default). Also records which ids llama.cpp treats as end of
generation. Writes tests/fixtures/tokenizer/llama-cpp-ref.json.

Usage (needs `pip install llama-cpp-python`, and scripts/fetch-models.sh run first):
    python3 scripts/ref/tokenizer_reference.py
"""

import json
import os
import sys
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PIGPU_MODEL_CACHE", Path.home() / ".cache/pigpu/models"))

MODELS = {
    "smollm": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen": CACHE / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "gpt-2": ROOT / "tests/fixtures/vocab/ggml-vocab-gpt-2.gguf",
    "llama-spm": ROOT / "tests/fixtures/vocab/ggml-vocab-llama-spm.gguf",
}

# Texts chosen to exercise what the upstream vectors do not: chat markup with control tokens,
# user-defined tokens, special-token text glued to words, digits, code, mixed scripts, emoji,
# whitespace runs and contractions.
TEXTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>Hello<|endoftext|>",
    "x<|im_end|>y <|im_start|> z",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n<|fim_middle|>",
    "<s>Hello</s> world <unk>",
    "Numbers: 1234567890, 3.14159, -42, 1e-5, 0x1F",
    "fn main() {\n\tprintln!(\"héllo, wörld\");\n}\n",
    "I'm sure they'll say it's what we've done, WE'LL SEE, DON'T.",
    "日本語のテキストと中文文本, 한국어, Ελληνικά, русский, עברית, العربية",
    "emoji 🦙🚀👩‍👩‍👧 and symbols ∑∫√∞ ≠ ≤",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\n\nnewlines\r\nmixed \t \n end",
    "a.b,c!d?e;f:g'h\"i(j)k[l]m{n}o<p>q/r\\s|t~u`v^w&x*y%z$#@",
    "",
    " ",
]


def tokenize(vocab, text, special):
    data = text.encode("utf-8")
    n_max = len(data) + 16
    buf = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, special, special)
    if n < 0:
        raise RuntimeError(f"buffer too small for {text!r}")
    return list(buf[:n])


def dump(o, indent=0):
    """JSON with objects and lists of texts one item per line, lists of ids on one line: small
    and diffable."""
    pad = " " * (indent + 1)
    if isinstance(o, dict):
        items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(o, list) and any(not isinstance(x, int) for x in o):
        items = [f"{pad}{dump(x, indent + 1)}" for x in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def main():
    llama_cpp.llama_backend_init()
    out = {
        "generator": "scripts/ref/tokenizer_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "texts": TEXTS,
        "models": {},
    }
    for name, path in MODELS.items():
        if not path.exists():
            sys.exit(f"missing {path} (run scripts/fetch-models.sh)")
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            sys.exit(f"llama.cpp could not load {path}")
        vocab = llama_cpp.llama_model_get_vocab(model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        out["models"][name] = {
            "file": path.name,
            "n_vocab": n_vocab,
            "eog": eog,
            "raw": [tokenize(vocab, t, False) for t in TEXTS],
            "special": [tokenize(vocab, t, True) for t in TEXTS],
        }
        llama_cpp.llama_model_free(model)
    dest = ROOT / "tests/fixtures/tokenizer/llama-cpp-ref.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = dump(out)
    dest.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {dest} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
