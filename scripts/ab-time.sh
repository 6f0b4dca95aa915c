#!/usr/bin/env bash
# Whole-process A/B timing with public tools (Python's standard library): scripts/ab_time.py.
#   scripts/ab-time.sh [-n RUNS] [-w WARMUP] 'A COMMAND' 'B COMMAND'
exec python3 "$(dirname "$0")/ab_time.py" "$@"
