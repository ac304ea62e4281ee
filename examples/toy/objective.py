"""A toy training script for katib-local: prints Katib StdOut metric lines in well under a second.

    python objective.py --x 1.5 --y -0.5 --optimizer adam [--steps 5]

The "loss" is a shifted quadratic bowl with its minimum 0 at x=1, y=-0.5, optimizer=adam; each
step prints a line such as `loss=0.4321`, falling to the final value at the last step.
"""

import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--y", type=float, required=True)
parser.add_argument("--optimizer", required=True)
parser.add_argument("--steps", type=int, default=5)
args = parser.parse_args()

final = (args.x - 1) ** 2 + (args.y + 0.5) ** 2 + {"adam": 0.0, "sgd": 0.3, "rmsprop": 0.1}.get(args.optimizer, 1.0)
for step in range(1, args.steps + 1):
    print(f"step={step} loss={final + (args.steps - step) / args.steps:.4f}", flush=True)
