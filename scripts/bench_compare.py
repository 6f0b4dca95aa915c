"""Merges llama-bench and `pigpu bench` JSON results (from scripts/bench-compare.sh) into one
markdown report: the machine, both tables, and the per-test ratio pigpu / llama.cpp."""
import json
import os
import platform
import subprocess
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def test_name(row):
    p, g, d = row.get("n_prompt", 0), row.get("n_gen", 0), row.get("n_depth", 0)
    name = f"pp{p}" if g == 0 else f"tg{g}" if p == 0 else f"pp{p}+tg{g}"
    return name + (f" @ d{d}" if d else "")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(tmp, command):
    out = [f"Command: `{command}`", "",
           f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}", ""]
    ratio_rows = []
    for name in sorted(os.listdir(tmp)):
        if not name.startswith("llama-"):
            continue
        model = name[len("llama-"):-len(".json")]
        llama = load(os.path.join(tmp, name))
        pigpu = load(os.path.join(tmp, "pigpu-" + model + ".json"))
        if any(r.get("backend") == "Vulkan" for r in pigpu):
            # Which Vulkan device each side ran on: lavapipe figures say nothing about a GPU.
            gpu = {r.get("gpu_info", "") for r in llama} - {""}
            mine = {f"{r['device']} ({r.get('driver', '')})" for r in pigpu}
            out.append(f"Vulkan device: llama.cpp: {', '.join(sorted(gpu)) or '?'}; "
                       f"pigpu: {', '.join(sorted(mine))}")
            out.append("")
        out.append(f"### {model}")
        out.append("")
        out.append("| engine | backend | test | t/s |")
        out.append("| --- | --- | ---: | ---: |")
        ours = {}
        for r in llama:
            out.append(f"| llama.cpp {r.get('build_commit','')} | {r.get('backends', r.get('backend',''))} "
                       f"| {test_name(r)} | {r['avg_ts']:.2f} ± {r['stddev_ts']:.2f} |")
        for r in pigpu:
            unit = r.get("unit")
            t = r["test"]
            if t in ("load",) or t.startswith("e2e") or unit:
                val = f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}" + (f" {unit}" if unit else "")
            else:
                val = f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}"
                ours[t] = r
            out.append(f"| pigpu ({r['device']}) | {r['backend']} | {t} | {val} |")
        out.append("")
        for r in llama:
            t = test_name(r)
            if t in ours:
                ratio_rows.append((model, t, r["avg_ts"], ours[t]["avg_ts"]))
    out.append("### Ratio (pigpu / llama.cpp)")
    out.append("")
    out.append("| model | test | llama.cpp t/s | pigpu t/s | ratio |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for model, t, a, b in ratio_rows:
        out.append(f"| {model} | {t} | {a:.2f} | {b:.2f} | {b / a:.2f}× |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
