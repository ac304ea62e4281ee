"""A trial program for the runner tests: prints metrics in a chosen format, can fail or be slow.

    python trial.py --x X --opt NAME [--steps N] [--sleep S] [--fail-on NAME] [--format text|json|custom|stamped]
                    [--file PATH] [--record PATH] [--trial NAME] [--signal N] [--chatty N] [--pids PATH]

The loss falls towards (x - 1)^2 + (1 if opt == "sgd" else 0) over the steps. --record appends
the trial name to PATH when the trial starts, so tests can count how often each trial ran.
--signal N kills the trial with signal N after its first step; --fail-at-step N exits 4 after
reporting step N; --chatty N prints N lines of noise
after each step; --pids appends the trial's PID and that of a child it starts (a `sleep` in its
process group) to PATH. --file PATH is printed to stdout as received, then the metrics go there.
"""

import argparse
import json
import os
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--opt", default="adam")
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--fail-on", default="")
parser.add_argument("--format", default="text")
parser.add_argument("--file")
parser.add_argument("--record")
parser.add_argument("--trial", default="")
parser.add_argument("--signal", type=int, default=0)
parser.add_argument("--chatty", type=int, default=0)
parser.add_argument("--pids")
parser.add_argument("--fail-at-step", type=int, default=0)
args = parser.parse_args()

if args.pids:
    child = subprocess.Popen(["sleep", "120"])
    with open(args.pids, "a") as f:
        f.write(f"{os.getpid()} {child.pid}\n")

if args.record:
    with open(args.record, "a") as f:
        f.write(args.trial + "\n")
if args.opt == args.fail_on:
    print("something went wrong", file=sys.stderr)
    sys.exit(3)
if args.file:
    print(f"metrics file {args.file}", flush=True)
out = open(args.file, "a") if args.file else sys.stdout
final = (args.x - 1) ** 2 + (1.0 if args.opt == "sgd" else 0.0)
for step in range(1, args.steps + 1):
    loss = final + (args.steps - step)
    if args.format == "json":
        line = json.dumps({"loss": str(loss), "step": str(step), "timestamp": f"2026-11-28T08:00:{step:02d}Z"})
    elif args.format == "custom":
        line = f"{{metricName: loss, metricValue: {loss}}}"
    elif args.format == "stamped":
        line = f"2026-11-28T08:00:{step:02d}.5+00:00 step={step} loss={loss}"
    else:
        line = f"noise line\nstep={step} loss={loss} garbage=abc"
    print(line, file=out, flush=True)
    for _ in range(args.chatty):
        print("chatter " * 20, flush=True)
    if step == args.fail_at_step:
        sys.exit(4)
    if args.signal:
        os.kill(os.getpid(), args.signal)
        time.sleep(5)
    time.sleep(args.sleep)
