"""`inv --list` against `python -c "import invoke"`: the tool's start-up cost, as a ratio.

Both commands run alternately in one process tree on the same machine, so noise from other load
hits both; the medians' ratio is what counts (goal: at most 1.5, i.e. no boto3/rich at list time).
Run: `make bench` or `.venv/bin/python bench/startup.py [--runs 15]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL = 1.5


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    baseline_cmd = [sys.executable, "-c", "import invoke"]
    inv_cmd = [str(BIN / "inv"), "--list"]
    timed(baseline_cmd), timed(inv_cmd)  # warm the file cache
    base, inv = [], []
    for _ in range(args.runs):
        base.append(timed(baseline_cmd))
        inv.append(timed(inv_cmd))
    b, i = statistics.median(base), statistics.median(inv)
    ratio = i / b
    print(f"python -c 'import invoke'  median {b * 1000:7.1f} ms")
    print(f"inv --list                 median {i * 1000:7.1f} ms")
    print(f"ratio {ratio:.2f} (goal <= {GOAL})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
