"""A training run that needs a learning-rate schedule: the trial of the PBT example.

    python train.py --lr LR --weight-decay WD [--epochs 3] [--checkpoint DIR]

It stands in for a network trained with SGD on a loss surface that gets sharper as training
proceeds: the largest learning rate that still makes progress (the *ceiling*) falls from 0.1 at
the start to 0.02 near convergence, as 0.1 x 10^(-0.7 x accuracy). In each epoch:

* at or below the ceiling, the accuracy gains 30% of what it still lacks, times
  (lr / ceiling)^3: half the ceiling learns eight times slower;
* between the ceiling and 1.2 times it, the gain falls linearly to 0; above, training is unstable
  and loses accuracy (more the further above);
* the weight decay scales every gain by exp(-(log10(wd) + 4)^2 / 8): best at 1e-4, and the same
  at every stage of training.

So no constant learning rate converges: one near the ceiling at the start soon becomes unstable,
one low enough to stay stable learns too slowly. Following the ceiling down reaches 0.996 in 18
epochs; the best constant learning rate (0.038) trained for the same 18 epochs stalls at 0.717
(`python train.py --report`). Population-based training finds the schedule by exploiting the
members whose learning rate fits the current stage and perturbing it, generation after generation.

Checkpoint: with --checkpoint DIR, the run resumes from DIR/checkpoint.json (the accuracy reached
and the epochs trained, as the parent left it) and writes it back at the end; without it, every
run starts from scratch. Each epoch prints a line for Katib's StdOut metrics collector:

    epoch=4 accuracy=0.5123

The run is deterministic: its small noise is seeded by its inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random

CEILING, DECAY = 0.1, 0.7  # the ceiling: CEILING * 10 ** (-DECAY * accuracy)
RATE = 0.3  # share of the missing accuracy gained per epoch at the ceiling
POWER = 3  # below the ceiling the gain scales as (lr / ceiling) ** POWER
UNSTABLE = 1.2  # above UNSTABLE x ceiling, an epoch loses accuracy
BEST_DECAY = 1e-4
NOISE = 0.003
MAX_ACCURACY = 0.999


def ceiling(accuracy: float) -> float:
    return CEILING * 10 ** (-DECAY * accuracy)


def epoch(accuracy: float, lr: float, weight_decay: float, rng: random.Random) -> float:
    """The accuracy after one more epoch."""
    ratio = lr / ceiling(accuracy)
    scale = math.exp(-((math.log10(weight_decay) - math.log10(BEST_DECAY)) ** 2) / 8)
    if ratio <= 1:
        accuracy += RATE * scale * (1 - accuracy) * ratio**POWER
    elif ratio <= UNSTABLE:
        accuracy += RATE * scale * (1 - accuracy) * (UNSTABLE - ratio) / (UNSTABLE - 1)
    else:
        accuracy -= 0.2 * accuracy * min(1.0, 3 * math.log10(ratio / UNSTABLE))
    return min(max(accuracy + rng.gauss(0, NOISE), 0.0), MAX_ACCURACY)


def train(accuracy: float, trained: int, lr: float, weight_decay: float, epochs: int) -> list[float]:
    """The accuracy after each of `epochs` epochs, from `accuracy` after `trained` epochs."""
    seed = hashlib.sha256(repr((lr, weight_decay, trained, accuracy)).encode()).digest()
    rng = random.Random(seed)
    out = []
    for _ in range(epochs):
        accuracy = epoch(accuracy, lr, weight_decay, rng)
        out.append(accuracy)
    return out


def run(lr: float, weight_decay: float, epochs: int, checkpoint: str | None, report=print) -> float:
    """One trial: resume, train, report each epoch, save. Returns the final accuracy."""
    state = {"accuracy": 0.0, "epochs": 0}
    path = os.path.join(checkpoint, "checkpoint.json") if checkpoint else None
    if path and os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
    accuracies = train(state["accuracy"], state["epochs"], lr, weight_decay, epochs)
    for i, accuracy in enumerate(accuracies, state["epochs"] + 1):
        report(f"epoch={i} accuracy={accuracy:.6f}")
    if path:
        os.makedirs(checkpoint, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump({"accuracy": accuracies[-1], "epochs": state["epochs"] + epochs}, f)
        os.replace(path + ".tmp", path)
    return accuracies[-1]


def constant_and_scheduled(epochs: int = 18) -> tuple[float, float, float]:
    """(best constant learning rate, the accuracy it reaches, the accuracy of following the ceiling)."""
    grid = [10 ** (-3 + 2.5 * i / 500) for i in range(501)]  # 0.001 .. 0.3
    best = max(grid, key=lambda lr: train(0.0, 0, lr, BEST_DECAY, epochs)[-1])
    accuracy = 0.0
    for i in range(epochs):
        accuracy = train(accuracy, i, ceiling(accuracy), BEST_DECAY, 1)[-1]
    return best, train(0.0, 0, best, BEST_DECAY, epochs)[-1], accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float, default=BEST_DECAY)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint", help="checkpoint directory (resumed from and saved to)")
    parser.add_argument("--report", action="store_true", help="print what a constant learning rate and the schedule reach in 18 epochs")
    args = parser.parse_args()
    if args.report:
        lr, constant, scheduled = constant_and_scheduled()
        print(f"18 epochs: best constant lr {lr:.4g} reaches {constant:.3f}; following the ceiling reaches {scheduled:.3f}")
        return
    if args.lr is None or args.lr <= 0 or args.weight_decay <= 0:
        parser.error("--lr and --weight-decay must be positive")
    run(args.lr, args.weight_decay, args.epochs, args.checkpoint)


if __name__ == "__main__":
    main()
