#!/usr/bin/env python3
"""Whole-process A/B timing: runs command A and command B in turns (A B A B ...), after warm-up
runs that are not counted, and prints each run's wall and CPU (user + system) seconds, its peak
resident memory, the medians, and the median of the pair ratios A/B. Pairing keeps the ratio fair
when the machine's speed drifts during the call; quote the medians.

    scripts/ab-time.sh [-n RUNS] [-w WARMUP] 'A COMMAND' 'B COMMAND'

Each command is one string split into words as a POSIX shell splits them (shlex), but run
without a shell: no pipes or redirections; a variable goes in front as `env X=1 CMD`. Its output
is discarded. Wall time is a monotonic clock around the child; CPU and peak memory are the
kernel's accounting of the reaped child (wait4), so the children it waited for count in CPU;
the peak cannot read below this script's own (about 15 MiB: the child starts as its copy).

Example (docs/benchmarks.md, end to end on lavapipe, in the models' folder):
    scripts/ab-time.sh -n 3 -w 1 \\
      'pigpu bench -m SmolLM2-135M-Instruct.Q4_1.gguf --backend vulkan --device llvmpipe -p 64 -n 16 -r 1' \\
      '/tmp/base/pigpu bench -m SmolLM2-135M-Instruct.Q4_1.gguf --backend vulkan --device llvmpipe -p 64 -n 16 -r 1'
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def one(cmd):
    """Runs cmd once: (wall s, cpu s, peak MiB, exit status)."""
    start = time.monotonic()
    try:
        child = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError as e:
        sys.exit(f"ab-time: cannot start {cmd[0]!r}: {e.strerror}")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode


def ratio(a, b):
    return a / b if b > 0 else float("nan")


def main():
    p = argparse.ArgumentParser(
        prog="ab-time.sh",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument("-n", type=int, default=5, metavar="RUNS", help="counted runs of each (default 5)")
    p.add_argument("-w", type=int, default=1, metavar="WARMUP", help="uncounted runs of each first (default 1)")
    p.add_argument("a", metavar="'A COMMAND'")
    p.add_argument("b", metavar="'B COMMAND'")
    args = p.parse_args()
    if args.n < 1 or args.w < 0:
        p.error(f"-n must be at least 1 and -w at least 0 (got -n {args.n} -w {args.w})")
    cmds = []
    for which, text in (("A", args.a), ("B", args.b)):
        try:
            words = shlex.split(text)
        except ValueError as e:
            p.error(f"command {which} cannot be split into words: {e}")
        if not words:
            p.error(f"command {which} is empty")
        cmds.append(words)
    for _ in range(args.w):
        for cmd in cmds:
            one(cmd)
    rows = []
    for i in range(1, args.n + 1):
        rows.append((i, one(cmds[0]), one(cmds[1])))
    print("run | A wall s   cpu s  peak MiB exit | B wall s   cpu s  peak MiB exit | A/B wall   cpu")
    for i, (aw, ac, ap, ae), (bw, bc, bp, be) in rows:
        print(
            f"{i:>3} | {aw:8.3f} {ac:7.3f} {ap:9.1f} {ae:>4} | {bw:8.3f} {bc:7.3f} {bp:9.1f} {be:>4} "
            f"| {ratio(aw, bw):8.3f} {ratio(ac, bc):5.3f}"
        )
    med = lambda side, k: statistics.median(r[side][k] for r in rows)
    pair = lambda k: statistics.median(ratio(r[1][k], r[2][k]) for r in rows)
    print(f"median: A {med(1, 0):.3f} s wall, {med(1, 1):.3f} s cpu; B {med(2, 0):.3f} s wall, {med(2, 1):.3f} s cpu")
    print(f"median of the pair ratios A/B: wall {pair(0):.3f}, cpu {pair(1):.3f}")
    if any(r[1][3] != 0 or r[2][3] != 0 for r in rows):
        print("note: a run exited non-zero (the exit columns): its times are not a measurement")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
