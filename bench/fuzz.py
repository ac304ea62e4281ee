"""The fuzz suite at depth: fresh random cases over every RPC of the three servers, and its table.

    python bench/fuzz.py [--examples 1500]

Runs tests/test_fuzz.py with hypothesis's `deep` profile: `--examples` cases for each of its tests
(a quarter of that for each algorithm's own GetSuggestions test), so the default runs more than
10,000 cases in all. Every answer must pass the suite's checks (no UNKNOWN, no INTERNAL, OK replies
with exactly current_request_number valid and different assignments, healthy servers with a bounded
peak RSS at the end), and no call may take 10 s or more (checked here, from the suite's timings: a
timing is a measurement, not a test assertion). Prints, per RPC, the number of calls by status code
and the slowest call, then each server's peak RSS; exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fuzzing import SLOW_SECONDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CODES = ["OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAVAILABLE"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1500, help="cases per test (default 1500: over 10,000 in all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {**os.environ, "KATIB_FUZZ_REPORT": str(report), "KATIB_FUZZ_EXAMPLES": str(args.examples)}
        start = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py", "--hypothesis-profile=deep"]
        result = subprocess.run(command, cwd=ROOT, env=env)
        minutes = (time.monotonic() - start) / 60
        if not report.exists():
            print("no report: the suite did not get to its end", file=sys.stderr)
            return 1
        data = json.loads(report.read_text())
    rows, total = [], 0
    for rpc in sorted(data["codes"]):
        codes = data["codes"][rpc]
        calls = sum(codes.values())
        total += calls
        others = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()) if c not in CODES) or ""
        rows.append([rpc, calls, *[codes.get(c, 0) for c in CODES], others, f"{data['slowest'][rpc]:.2f}"])
    header = ["RPC", "calls", *CODES, "other", "slowest s"]
    print(f"\n{total:,} calls in {minutes:.1f} min, {args.examples} cases per test; suite {'passed' if result.returncode == 0 else 'FAILED'}\n")
    for line in [header, ["---"] * len(header), *rows]:
        print("| " + " | ".join(str(cell) for cell in line) + " |")
    print("\nPeak RSS MiB: " + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(data.get("peak_rss_mib", {}).items())))
    slow = {rpc: seconds for rpc, seconds in data["slowest"].items() if seconds >= SLOW_SECONDS}
    for rpc, seconds in sorted(slow.items()):
        print(f"FAILED: a {rpc} call took {seconds:.1f} s (the bound is {SLOW_SECONDS:.0f} s)", file=sys.stderr)
    return result.returncode or (1 if slow else 0)


if __name__ == "__main__":
    sys.exit(main())
