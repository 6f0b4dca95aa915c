#!/usr/bin/env python3
"""The tables of scripts/gpu-bench.sh: reads the JSON that `pigpu bench -o json` and
`llama-bench -o json` wrote into a results folder and prints a markdown table (pigpu beside
llama.cpp, same file, same test) ready for docs/benchmarks.md; then, where the folder holds
scripts/serve_bench.py's results (NAME.serve-N.json), a second table: `pigpu serve --parallel N`
aggregate generation t/s against one stream; and where it holds the knob sweep's index
(NAME.sweep.tsv, one `pigpu bench` call per row, NAME.sweep-NN.json), a third: each PIGPU_VK_*
variant's t/s against the defaults; and where it holds the per-op profiles of a model with the
RMSNorm fused (NAME.profile.json) and as its own pass (NAME.profile-norm-pass.json,
PIGPU_VK_NORM=pass), a fourth: what the norm costs either way. Writes summary.json beside them.

Usage: scripts/gpu_bench_table.py RESULTS_DIR SPEC...   (SPEC as given to `pigpu shape write`)
"""
import json
import os
import sys


def load(path):
    """The rows of one JSON file, or [] when it is missing or cut short."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def key(row):
    return (row.get("n_prompt", 0), row.get("n_gen", 0), row.get("n_depth", 0))


def test_name(k):
    p, g, d = k
    name = f"pp{p}" if g == 0 else f"tg{g}" if p == 0 else f"pp{p}+tg{g}"
    return name + (f" @ d{d}" if d else "")


def fmt(row):
    if row is None:
        return "—"
    return f"{row['avg_ts']:.1f} ± {row.get('stddev_ts', 0.0):.1f}"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    specs = sys.argv[2:]
    lines = []
    summary = {"rows": [], "environment": {}}
    env = summary["environment"]
    for spec in specs:
        name = spec.replace(":", "-")
        pigpu = load(os.path.join(out, f"{name}.pigpu.json")) + load(
            os.path.join(out, f"{name}.pigpu-depth.json"))
        llama = load(os.path.join(out, f"{name}.llama.json")) + load(
            os.path.join(out, f"{name}.llama-depth.json"))
        if not pigpu and not llama:
            continue
        try:
            with open(os.path.join(out, f"{name}.shape.json"), encoding="utf-8") as f:
                size = f" ({json.load(f)['bytes'] / 1e9:.2f} GB)"
        except (OSError, ValueError, KeyError):
            size = ""
        p_rows = {key(r): r for r in pigpu if r.get("test") not in ("load", "upload")
                  and not str(r.get("test", "")).startswith("e2e")}
        l_rows = {key(r): r for r in llama}
        for r in pigpu:
            if r.get("test") == "upload":
                env.setdefault("upload_gbps", {})[spec] = round(r["avg_ts"], 2)
            if r.get("backend") == "Vulkan":
                env.setdefault("pigpu_device", r.get("device"))
                env.setdefault("pigpu_driver", r.get("driver"))
                env.setdefault("pigpu_build", r.get("build_commit"))
        for r in llama:
            env.setdefault("llama_cpp_build", f"{r.get('build_commit')} ({r.get('build_number')})")
            env.setdefault("llama_cpp_backend", r.get("backends"))
            env.setdefault("llama_cpp_gpu", r.get("gpu_info"))
            env.setdefault("llama_cpp_flash_attn", r.get("flash_attn"))
        # Generation first (the headline), then prompt, then generation at depth.
        order = sorted(set(p_rows) | set(l_rows), key=lambda k: (k[2], k[1] == 0, k[0]))
        for k in order:
            p, l = p_rows.get(k), l_rows.get(k)
            ratio = p["avg_ts"] / l["avg_ts"] if p and l and l["avg_ts"] > 0 else None
            lines.append(f"| {spec}{size} | {test_name(k)} | {fmt(p)} | {fmt(l)} | "
                         + (f"**{ratio:.2f}×**" if ratio is not None else "—") + " |")
            summary["rows"].append({
                "model": spec, "test": test_name(k),
                "pigpu_ts": p and p["avg_ts"], "pigpu_sd": p and p.get("stddev_ts"),
                "llama_cpp_ts": l and l["avg_ts"], "llama_cpp_sd": l and l.get("stddev_ts"),
                "ratio": ratio,
            })
    if "llama_cpp_build" in env:
        llama = (f"llama.cpp {env['llama_cpp_build']} {env.get('llama_cpp_backend', '')} "
                 f"on {env.get('llama_cpp_gpu', '?')}, flash_attn {env.get('llama_cpp_flash_attn', '?')}")
    else:
        llama = "llama.cpp: no results (none carried, or it failed)"
    print(f"pigpu on {env.get('pigpu_device', '?')} ({env.get('pigpu_driver', '?')}); {llama}")
    if env.get("upload_gbps"):
        print("pigpu weight upload (GB/s): "
              + ", ".join(f"{k} {v}" for k, v in env["upload_gbps"].items()))
    print()
    print("| model (same file for both) | test | pigpu t/s | llama.cpp t/s | ratio |")
    print("|---|---|---|---|---|")
    for line in lines:
        print(line)
    serve_table(out, specs, summary)
    sweep_table(out, specs, summary)
    norm_table(out, specs, summary)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


def serve_table(out, specs, summary):
    """Issue 15's GPU target: N concurrent streams against one (aggregate t/s, ratio to N = 1)."""
    rows = []
    for spec in specs:
        name = spec.replace(":", "-")
        found = {}
        for entry in os.listdir(out):
            prefix = f"{name}.serve-"
            if entry.startswith(prefix) and entry.endswith(".json"):
                try:
                    n = int(entry[len(prefix):-len(".json")])
                    with open(os.path.join(out, entry), encoding="utf-8") as f:
                        found[n] = json.loads(f.read().strip().splitlines()[-1])
                except (OSError, ValueError, IndexError):
                    continue
        one = found.get(1, {}).get("tokens_per_s")
        for n in sorted(found):
            r = found[n]
            ts = r.get("tokens_per_s")
            ratio = ts / one if ts and one else None
            rows.append({"model": spec, "n": n, "tokens_per_s": ts, "ratio_to_1": ratio,
                         "tokens": r.get("tokens"), "min_tokens": r.get("min_tokens"),
                         "ttft_ms": r.get("ttft_ms")})
    summary["serve"] = rows
    if not rows:
        return
    print()
    print("`pigpu serve --backend vulkan --parallel N`, N concurrent greedy chat streams "
          "(scripts/serve_bench.py; aggregate generated t/s, best round):")
    print()
    print("| model | N | aggregate t/s | × one stream | tokens (fewest per stream) | TTFT idle |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ts = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] is not None else "—"
        ratio = f"**{r['ratio_to_1']:.2f}×**" if r["ratio_to_1"] is not None else "—"
        ttft = f"{r['ttft_ms']:.0f} ms" if r["ttft_ms"] is not None else "—"
        print(f"| {r['model']} | {r['n']} | {ts} | {ratio} | {r['tokens']} ({r['min_tokens']}) "
              f"| {ttft} |")
    for r in rows:
        if r["n"] == 4 and r["ratio_to_1"] is not None:
            verdict = "met" if r["ratio_to_1"] >= 2.5 else "not met"
            print(f"\n{r['model']}: 4 streams = {r['ratio_to_1']:.2f}× one stream "
                  f"(issue 15's GPU target ≥ 2.5×: {verdict})")


def serve_result(path):
    """scripts/serve_bench.py's JSON line (its last line), or {} when missing or cut short."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}


def one_split(env, n_ctx):
    """Whether `env` sets a PIGPU_VK_ATTN_CHUNK that covers the test's whole context (one split:
    the split attention off; the sweep's ONE)."""
    for e in env.split():
        var, _, value = e.partition("=")
        if var == "PIGPU_VK_ATTN_CHUNK" and value.isdigit() and n_ctx:
            return int(value) >= n_ctx
    return False


def sweep_rows(out, spec):
    """The sweep's calls for one model, in the order they ran: the index's fields, the test and
    its t/s (None when the call failed before finishing a row), and the ratio to the kind's
    first default call."""
    name = spec.replace(":", "-")
    try:
        with open(os.path.join(out, f"{name}.sweep.tsv"), encoding="utf-8") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    rows, ref = [], {}
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 6:
            continue
        seq, kind, env, role, wall, rc = fields
        path = os.path.join(out, f"{name}.sweep-{seq}.json")
        if kind == "serve":
            served = serve_result(path)
            ts = served.get("tokens_per_s") or None
            test, sd = (f"serve ×{served.get('n')}" if ts else None), None
            n_ctx = None
        else:
            found = [r for r in load(path) if r.get("avg_ts")]
            r = found[0] if found else None
            ts = r["avg_ts"] if r else None
            test, sd = (test_name(key(r)), r.get("stddev_ts")) if r else (None, None)
            n_ctx = sum(key(r)) + 1 if r else None
        if role == "default" and ts and kind not in ref:
            ref[kind] = ts
        base = ref.get(kind)
        if role == "default":
            ratio = 1.0 if ts else None
        else:
            ratio = ts / base if ts and base else None
        rows.append({
            "model": spec, "seq": seq, "kind": kind, "env": "" if env == "-" else env,
            "role": role, "test": test, "ts": ts, "sd": sd, "one_split": one_split(env, n_ctx),
            "ratio": ratio,
            "wall_s": int(wall) if wall.isdigit() else None,
            "rc": int(rc) if rc.lstrip("-").isdigit() else None,
        })
    return rows


def sweep_table(out, specs, summary):
    """Issue 11's tuning: one PIGPU_VK_* knob changed at a time from the defaults."""
    rows = [r for spec in specs for r in sweep_rows(out, spec)]
    summary["sweep"] = rows
    if not rows:
        return
    # One column per kind, named by the test it ran (tg64, pp512, tg64 @ d4096).
    kinds = []
    for r in rows:
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    heads = {k: next((r["test"] for r in rows if r["kind"] == k and r["test"]), k)
             for k in kinds}
    print()
    print(f"Knob sweep on {', '.join(sorted({r['model'] for r in rows}))} "
          "(scripts/gpu-bench.sh sweep: one `pigpu bench --backend vulkan -o json` call per "
          "row, one knob changed from the defaults; × default: t/s over the first call with "
          "the defaults; \"defaults again\" repeats them last, its ratio is the drift to read "
          "the others against):")
    print()
    print("| # | variant | " + " | ".join(f"{heads[k]} t/s" for k in kinds)
          + " | × default | wall s |")
    print("|---|---|" + "---|" * len(kinds) + "---|---|")
    for r in rows:
        label = {"default": "defaults", "again": "defaults again"}.get(r["role"], "")
        label = label or " ".join(f"`{e}`" for e in r["env"].split())
        if r["one_split"]:
            label += " (one split: split attention off)"
        cells = []
        for k in kinds:
            if k != r["kind"]:
                cells.append("")
            elif r["ts"] is None:
                # 124: stopped by the sweep's time limit for the call (timeout's status).
                why = "cut short, no row" if r["rc"] == 124 else f"exit {r['rc']}"
                cells.append(f"— ({why})")
            else:
                cut = " (cut short)" if r["rc"] not in (0, None) else ""
                sd = "" if r["sd"] is None else f" ± {r['sd']:.1f}"
                cells.append(f"{r['ts']:.1f}{sd}{cut}")
        ratio = f"**{r['ratio']:.2f}×**" if r["ratio"] is not None else "—"
        if r["role"] == "default":
            ratio = "1.00 (reference)" if r["ts"] else "—"
        wall = "—" if r["wall_s"] is None else str(r["wall_s"])
        print(f"| {r['seq']} | {label} | " + " | ".join(cells) + f" | {ratio} | {wall} |")
    for k in kinds:
        mine = [r for r in rows if r["kind"] == k and r["ratio"] is not None]
        variants = [r for r in mine if r["role"] == "variant"]
        again = [r["ratio"] for r in mine if r["role"] == "again"]
        drift = f"{again[0]:.2f}×" if again else "not measured"
        if variants:
            best = max(variants, key=lambda r: r["ratio"])
            print(f"\n{heads[k]}: fastest variant {best['env']} at {best['ratio']:.2f}× the "
                  f"defaults; the defaults again: {drift}")
        elif mine:
            print(f"\n{heads[k]}: no variant finished; the defaults again: {drift}")


def profile_phases(path):
    """`pigpu bench --profile -o json`'s phases by name (decode from the tg row, prompt from the
    pp row), with the calibration's stage floor; {} when missing or cut short."""
    phases = {}
    for row in load(path):
        prof = row.get("profile") or {}
        floor = (prof.get("calibration") or {}).get("stage_floor_us")
        for ph in prof.get("phases") or []:
            phases.setdefault(ph.get("phase"), dict(ph, stage_floor_us=floor))
    return phases


def unfused(label):
    """A product's label without its fused-norm tag (what the same dispatch is called after the
    norm pass)."""
    return " ".join(w for w in label.split() if w != "norm")


def norm_table(out, specs, summary):
    """Issue 11's "RMSNorm once per token" (docs/vulkan.md): per phase, the GPU time per token of
    the norm-fused products against the norm pass plus the same products without the norm."""
    rows = []
    for spec in specs:
        name = spec.replace(":", "-")
        fused = profile_phases(os.path.join(out, f"{name}.profile.json"))
        passed = profile_phases(os.path.join(out, f"{name}.profile-norm-pass.json"))
        for phase in ("decode", "prompt"):
            f, p = fused.get(phase), passed.get(phase)
            if not f or not p:
                continue
            normed = [o for o in f.get("ops", []) if "norm" in o["label"].split()]
            p_ops = {o["label"]: o for o in p.get("ops", [])}
            products = [p_ops.get(unfused(o["label"])) for o in normed]
            norm = p_ops.get("rms_norm")
            complete = bool(normed) and norm is not None and all(products)
            fused_us = sum(o["us_per_token"] for o in normed)
            pass_us = (norm["us_per_token"] + sum(o["us_per_token"] for o in products)
                       if complete else None)
            rows.append({
                "model": spec, "phase": phase, "fused_us": fused_us,
                "rms_norm_us": norm and norm["us_per_token"],
                "products_us": sum(o["us_per_token"] for o in products) if complete else None,
                "pass_us": pass_us,
                "ratio": pass_us / fused_us if pass_us and fused_us else None,
                "gpu_us_fused": f.get("gpu_us_per_token"), "gpu_us_pass": p.get("gpu_us_per_token"),
                "stage_floor_us": p.get("stage_floor_us"),
            })
    summary["norm"] = rows
    if not rows:
        return

    def us(v):
        return "—" if v is None else f"{v:.1f}"

    print()
    print("RMSNorm fused into QKV, gate/up and the head, or as its own pass (PIGPU_VK_NORM=pass), "
          "from the per-op profiles (NAME.profile.txt, NAME.profile-norm-pass.txt), GPU µs per "
          "token; pass / fused below 1 means the pass pays for that phase:")
    print()
    print("| model | phase | fused: norm-fused products | pass: rms_norm | pass: the same "
          "products | pass / fused | all ops fused | all ops pass | stage floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"**{r['ratio']:.2f}×**"
        print(f"| {r['model']} | {r['phase']} | {us(r['fused_us'])} | {us(r['rms_norm_us'])} | "
              f"{us(r['products_us'])} | {ratio} | {us(r['gpu_us_fused'])} | "
              f"{us(r['gpu_us_pass'])} | {us(r['stage_floor_us'])} |")


if __name__ == "__main__":
    main()
