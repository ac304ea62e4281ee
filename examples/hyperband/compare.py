"""asha against random search at the same total epochs, on the log-anomaly network.

    python examples/hyperband/compare.py [--workdir runs/hyperband-example] [--figure examples/hyperband/comparison.png]

Runs random.yaml (8 trials at 9 epochs: 72 epochs) and asha.yaml (epochs 1, 3, 9; its
maxTrialCount is set to train a little more than that) with katib-local, then compares them at
random's total epochs: the trials of asha count in the order they finished, until their epochs
add up to random's. It prints a table and draws the best validation accuracy found against the
epochs trained so far. A run already in --workdir is reused; delete it to run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from katib_services.obslog import time_ns

HERE = Path(__file__).resolve().parent
VARIANTS = ("random", "asha")


def run(variant: str, workdir: Path) -> list[dict]:
    """The finished trials of one experiment, in the order they finished."""
    target = workdir / variant
    if not (target / "experiment.json").exists():
        command = [sys.executable, "-m", "katib_services.runner.cli", "run", str(HERE / f"{variant}.yaml"), "--workdir", str(target)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    trials = json.loads((target / "experiment.json").read_text())["trials"]
    done = [t for t in trials if t["condition"] == "Succeeded"]
    return sorted(done, key=lambda t: time_ns(t["completion_time"], "completion_time"))


def seconds(trial: dict) -> float:
    return (time_ns(trial["completion_time"], "completion_time") - time_ns(trial["start_time"], "start_time")) / 1e9


def curve(trials: list[dict], budget: int) -> list[tuple[int, float, dict]]:
    """(epochs trained so far, best accuracy so far, that trial) after each trial, up to `budget` epochs."""
    out, used, best = [], 0, None
    for t in trials:
        used += int(t["assignment"]["epochs"])
        if used > budget:
            break
        if best is None or float(t["observation"]["accuracy"]) > float(best["observation"]["accuracy"]):
            best = t
        out.append((used, float(best["observation"]["accuracy"]), best))
    return out


def draw(curves: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for variant, points in curves.items():
        x = [0] + [p[0] for p in points]
        y = [None] + [p[1] for p in points]
        axis.step(x, y, where="post", label=variant, linewidth=2)
    axis.set_xlabel("epochs trained (all trials so far)")
    axis.set_ylabel("best validation accuracy so far")
    axis.set_title("log-anomaly network: asha vs random at the same total epochs")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/hyperband-example"))
    parser.add_argument("--figure", type=Path, default=HERE / "comparison.png")
    args = parser.parse_args()
    finished = {variant: run(variant, args.workdir) for variant in VARIANTS}
    budget = sum(int(t["assignment"]["epochs"]) for t in finished["random"])
    curves = {variant: curve(trials, budget) for variant, trials in finished.items()}
    for variant, trials in finished.items():
        if sum(int(t["assignment"]["epochs"]) for t in trials) < budget:
            print(f"note: {variant} trained fewer than {budget} epochs in all; raise its maxTrialCount")
    goal = curves["random"][-1][1]
    print(f"at random's total of {budget} epochs:\n")
    print("| | trials | configurations | epochs | trial seconds | best accuracy | its lr, batch size, epochs | epochs to reach random's best |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, points in curves.items():
        used, accuracy, best = points[-1]
        trials = finished[variant][: len(points)]
        configurations = {(t["assignment"]["lr"], t["assignment"]["batch_size"]) for t in trials}
        reach = next((p[0] for p in points if p[1] >= goal), None)
        a = best["assignment"]
        print(
            f"| {variant} | {len(points)} | {len(configurations)} | {used} | {sum(map(seconds, trials)):.1f} | {accuracy:.4f} | "
            f"{float(a['lr']):.3g}, {a['batch_size']}, {a['epochs']} | {reach if reach is not None else 'not reached'} |"
        )
    draw(curves, args.figure)
    print(f"\nwrote {args.figure}")


if __name__ == "__main__":
    main()
