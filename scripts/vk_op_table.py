"""Merges `pigpu bench --profile -o json` results (from scripts/vk-op-table.sh) into a markdown
per-op GPU-time table: one build, or two side by side with the ratio B / A per op. Every figure
is the fastest of the rounds (a shared machine only adds time); `min µs` is an op's shortest single
run over all rounds (`min_us`, from builds that report it), what it costs undisturbed."""
import json
import sys


def phase_of(row):
    """The profile phase a bench row is about: pp tests -> prompt, tg tests -> decode."""
    if row.get("n_gen", 0) > 0:
        return "decode", f"tg{row['n_gen']}"
    return "prompt", f"pp{row['n_prompt']}"


def collect(paths):
    """{(phase, test): {"ops": {label: op}, "gpu": us, "wall": us}} keeping per op the fastest."""
    out = {}
    for path in paths:
        with open(path) as f:
            rows = json.load(f)
        for row in rows:
            prof = row.get("profile")
            if not prof:
                continue
            name, test = phase_of(row)
            ph = next((p for p in prof["phases"] if p["phase"] == name), None)
            if ph is None:
                continue
            d = out.setdefault((name, test), {"ops": {}, "min": {}, "gpu": None, "wall": None, "cal": prof["calibration"]})
            for k, v in (("gpu", ph["gpu_us_per_token"]), ("wall", ph["wall_us_per_token"])):
                d[k] = v if d[k] is None else min(d[k], v)
            for op in ph["ops"]:
                if op.get("min_us") is not None:
                    m = d["min"].get(op["label"])
                    d["min"][op["label"]] = op["min_us"] if m is None else min(m, op["min_us"])
                old = d["ops"].get(op["label"])
                if old is None or op["us_per_token"] < old["us_per_token"]:
                    d["ops"][op["label"]] = op
    return out


def num(v, fmt="{:.1f}"):
    return "" if v is None else fmt.format(v)


def main(argv):
    bins = [a[len("--bin="):] for a in argv if a.startswith("--bin=")]
    files = {}
    for a in argv:
        if not a.startswith("--bin="):
            i, path = a.split(":", 1)
            files.setdefault(int(i), []).append(path)
    data = [collect(files.get(i, [])) for i in range(len(bins))]
    print("# Per-op GPU time (pigpu bench --profile; fastest of the rounds)\n")
    for i, b in enumerate(bins):
        cal = next(iter(data[i].values()), {}).get("cal", {})
        print(f"- {'AB'[i]}: `{b}`: copy bandwidth {num(cal.get('copy_gbs'))} GB/s, "
              f"stage floor {num(cal.get('stage_floor_us'), '{:.2f}')} µs")
    keys = sorted({k for d in data for k in d}, key=lambda k: (k[0] != "decode", k[1]))
    for key in keys:
        name, test = key
        print(f"\n## {name} ({test}), µs per token\n")
        if len(bins) == 1:
            d = data[0][key]
            print("| op | n/tok | mean µs | µs/tok | share | GB/s | GFLOP/s |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for op in sorted(d["ops"].values(), key=lambda o: -o["us_per_token"]):
                print(f"| {op['label']} | {op['per_token']:.2f} | {op['mean_us']:.1f} | "
                      f"{op['us_per_token']:.1f} | {100 * op['share']:.1f} % | "
                      f"{num(op.get('weight_gbs'), '{:.2f}')} | {num(op.get('gflops'), '{:.2f}')} |")
            print(f"| **sum of ops** | | | {num(d['gpu'])} | | | |")
            print(f"| **wall** | | | {num(d['wall'])} | | | |")
            continue
        a, b = data[0].get(key, {"ops": {}, "min": {}}), data[1].get(key, {"ops": {}, "min": {}})
        labels = sorted(set(a["ops"]) | set(b["ops"]),
                        key=lambda l: -max(a["ops"].get(l, {}).get("us_per_token", 0),
                                           b["ops"].get(l, {}).get("us_per_token", 0)))
        print("| op | n/tok A | n/tok B | A µs/tok | B µs/tok | B / A | A GB/s | B GB/s "
              "| A min µs | B min µs | B / A min |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for l in labels:
            oa, ob = a["ops"].get(l), b["ops"].get(l)
            ta = oa and oa["us_per_token"]
            tb = ob and ob["us_per_token"]
            ratio = f"{tb / ta:.2f}" if ta and tb else ""
            ma, mb = a["min"].get(l), b["min"].get(l)
            mratio = f"{mb / ma:.2f}" if ma and mb else ""
            print(f"| {l} | {num(oa and oa['per_token'], '{:.2f}')} | {num(ob and ob['per_token'], '{:.2f}')} | "
                  f"{num(ta)} | {num(tb)} | {ratio} | {num(oa and oa.get('weight_gbs'), '{:.2f}')} | "
                  f"{num(ob and ob.get('weight_gbs'), '{:.2f}')} | {num(ma)} | {num(mb)} | {mratio} |")
        ga, gb = a.get("gpu"), b.get("gpu")
        print(f"| **sum of ops** | | | {num(ga)} | {num(gb)} | {f'{gb / ga:.2f}' if ga and gb else ''} | | | | | |")
        wa, wb = a.get("wall"), b.get("wall")
        print(f"| **wall** | | | {num(wa)} | {num(wb)} | {f'{wb / wa:.2f}' if wa and wb else ''} | | | | | |")


if __name__ == "__main__":
    main(sys.argv[1:])
