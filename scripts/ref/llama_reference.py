#!/usr/bin/env python3
"""Reference data from llama.cpp (via llama-cpp-python) for pigpu's CPU engine tests.

For each test model this writes tests/fixtures/reference/<model>.json holding, for a set of
prompts: llama.cpp's own tokenization, a 40-token greedy continuation with the top-two logit gap at
every step, the top-64 logits at the last prompt position plus summary statistics of the whole
logit vector; and the perplexity of tests/fixtures/reference/ppl.txt computed the way issue 3
defines it. The schema is described in tests/fixtures/reference/README.md.

Needs: pip install llama-cpp-python==0.3.36 (a CPU build) and the test models fetched by
scripts/fetch-models.sh. Usage:

    python3 scripts/ref/llama_reference.py [--models DIR] [--out DIR] [--threads 2] [smollm|qwen ...]
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

# llama.cpp's threads meet at OpenMP barriers; spinning there is ruinous on a busy 2-core machine.
# Passive waiting changes speed only, not results.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

try:
    import llama_cpp
except ImportError:
    sys.exit("error: llama_cpp not importable; run: pip install llama-cpp-python==0.3.36")

WANT_VERSION = "0.3.36"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = {
    "smollm": {
        "name": "SmolLM2-135M-Instruct.Q4_1",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    "qwen": {
        "name": "qwen2.5-coder-0.5b-instruct-q4_k_m",
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    "gemma": {
        "name": "gemma-3-270m-q4_k_m",
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
}

# Plain prompts, the same for every model. The chat prompt is added per model, rendered with the
# model's own tokenizer.chat_template.
PROMPTS = [
    ("english", "The capital of France is Paris, and the capital of Germany is"),
    ("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("list", "Things to pack for a weekend hiking trip:\n1. A map\n2. Water\n3."),
    ("non_ascii", "Übersetzung: «Le café est très chaud» — 日本語では「コーヒーはとても熱い」と言います。 Ελληνικά:"),
    ("numbers", "1, 1, 2, 3, 5, 8, 13, 21, 34, 55,"),
    ("story", "Once upon a time, in a small village by the sea, there lived an old fisherman who"),
]
CHAT_MESSAGES = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]

N_GEN = 40
TOP_K = 64
PPL_CTXS = [128, 512]
N_CTX = 512  # every prompt + N_GEN and every perplexity window fit


def r(x, nd=5):
    return round(float(x), nd)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_chat(template, messages, bos, eos):
    # Rendered the way Hugging Face's apply_chat_template does: sandboxed Jinja with
    # trim_blocks/lstrip_blocks, `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
    )


def top2(row):
    # argmax takes the lowest id on exact ties, as llama.cpp's greedy sampler does.
    row = np.asarray(row, dtype=np.float64)
    first = int(np.argmax(row))
    rest = row.copy()
    rest[first] = -np.inf
    second = int(np.argmax(rest))
    return first, second, float(row[first] - row[second])


def prompt_record(llm, pid, text, add_bos, eog_ids):
    ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
    llm.reset()
    llm.eval(ids)
    last = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    order = np.argsort(-last, kind="stable")[:TOP_K]
    rec = {
        "id": pid,
        "text": text,
        "prompt_ids": ids,
        "last_logits": {
            "top": [[int(i), r(last[i])] for i in order],
            "max": r(last.max()),
            "min": r(last.min()),
            "mean": r(last.mean(), 6),
            "std": r(last.std(), 6),
        },
    }
    gen, second, gaps = [], [], []
    row = llm.scores[len(ids) - 1]
    for _ in range(N_GEN):
        a, b, gap = top2(row)
        gen.append(a)
        second.append(b)
        gaps.append(r(gap))
        llm.eval([a])
        row = llm.scores[llm.n_tokens - 1]
    eog_at = next((i for i, t in enumerate(gen) if t in eog_ids), None)
    rec["greedy"] = {
        "ids": gen,
        "second_ids": second,
        "top2_gap": gaps,
        "min_gap": min(gaps),
        "eog_at": eog_at,
        "text": llm.detokenize(gen, special=True).decode("utf-8", errors="replace"),
    }
    return rec


def perplexity(llm, text, ctx):
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    n_windows = len(ids) // ctx
    nll_sum, count, per_window = 0.0, 0, []
    for w in range(n_windows):
        win = ids[w * ctx : (w + 1) * ctx]
        llm.reset()
        llm.eval(win)
        logits = np.array(llm.scores[: len(win)], dtype=np.float64)
        # log-softmax of row i scores token i+1; the window's first token is context only.
        m = logits.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))[:-1]
        tgt = logits[np.arange(len(win) - 1), win[1:]]
        nll = lse - tgt
        per_window.append(r(float(nll.mean()), 6))
        nll_sum += float(nll.sum())
        count += len(nll)
    if n_windows == 0:
        return None
    return {
        "ctx": ctx,
        "ppl": r(math.exp(nll_sum / count), 6),
        "n_tokens": len(ids),
        "n_windows": n_windows,
        "n_scored": count,
        "window_mean_nll": per_window,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--models", default=os.environ.get(
        "PIGPU_MODEL_CACHE", os.path.expanduser("~/.cache/pigpu/models")))
    ap.add_argument("--out", default=os.path.join(REPO, "tests/fixtures/reference"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    if llama_cpp.__version__ != WANT_VERSION:
        sys.exit(f"error: llama-cpp-python {llama_cpp.__version__} found, want {WANT_VERSION}")
    ppl_path = os.path.join(REPO, "tests/fixtures/reference/ppl.txt")
    with open(ppl_path, encoding="utf-8") as f:
        ppl_text = f.read()

    for key in args.which:
        m = MODELS[key]
        path = os.path.join(args.models, m["file"])
        got = sha256(path)
        if got != m["sha256"]:
            sys.exit(f"error: {path}: sha256 {got}, expected {m['sha256']}")
        t0 = time.time()
        llm = llama_cpp.Llama(
            model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
            n_threads=args.threads, n_threads_batch=args.threads,
            logits_all=True, verbose=False, seed=0,
        )
        md = llm.metadata
        add_bos = md.get("tokenizer.ggml.add_bos_token", "true") == "true"
        vocab = llm._model.vocab
        eog_ids = {t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        tok = lambda i: llm.detokenize([i], special=True).decode("utf-8", "replace")
        bos = tok(llm.token_bos()) if llm.token_bos() >= 0 else ""
        eos = tok(llm.token_eos()) if llm.token_eos() >= 0 else ""
        prompts = list(PROMPTS)
        if "tokenizer.chat_template" in md:
            prompts.append(("chat", render_chat(md["tokenizer.chat_template"], CHAT_MESSAGES, bos, eos)))

        out = {
            "command": "python3 scripts/ref/llama_reference.py --threads %d %s" % (args.threads, key),
            "generator": {
                "llama_cpp_python": llama_cpp.__version__,
                "n_threads": args.threads,
                "n_ctx": N_CTX,
                "n_batch": N_CTX,
                "system_info": llama_cpp.llama_print_system_info().decode().strip(),
            },
            "model": {"file": m["file"], "sha256": m["sha256"], "n_vocab": llm.n_vocab()},
            "add_bos": add_bos,
            "parse_special": True,
            "n_gen": N_GEN,
            "eog_ids": sorted(eog_ids),
            "chat_messages": CHAT_MESSAGES,
            "prompts": [],
            "perplexity": {"file": "tests/fixtures/reference/ppl.txt", "add_bos": False, "results": []},
        }
        for pid, text in prompts:
            out["prompts"].append(prompt_record(llm, pid, text, add_bos, eog_ids))
            print(f"  {key}: prompt {pid} done ({time.time() - t0:.1f} s)", file=sys.stderr)
        for ctx in PPL_CTXS:
            print(f"  {key}: perplexity, ctx {ctx}", file=sys.stderr)
            res = perplexity(llm, ppl_text, ctx)
            if res is not None:
                out["perplexity"]["results"].append(res)
        dest = os.path.join(args.out, m["name"] + ".json")
        with open(dest, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        ppls = ", ".join("ctx %d: %.4f (%d windows)" % (p["ctx"], p["ppl"], p["n_windows"])
                         for p in out["perplexity"]["results"])
        print(f"{dest}: {len(out['prompts'])} prompts, ppl {ppls}, {time.time() - t0:.1f} s",
              file=sys.stderr)
        del llm


if __name__ == "__main__":
    main()
