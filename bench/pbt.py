"""PBT against random search on the PBT example's objective (examples/pbt), with the same budget.

    python bench/pbt.py [--seeds 5] [--trials 60] [--population 10] [--shuffle | --processes] [--figure PATH]

Each run is examples/pbt/experiment.yaml (pbt: n_population 10, truncation_threshold 0.2) or
examples/pbt/random.yaml (random search), 60 trials of 3 epochs, 10 at a time (6 generations),
with `random_state` set to the seed. Runs go through the local runner's controller over real gRPC
to a `katib-suggestion` server (with a temporary --data-dir) and a `katib-dbmanager`.

By default each trial runs examples/pbt/train.py's `run` in this process, in the checkpoint
directory the service prepared for it (random search has none: every trial starts from scratch).
Trials then finish in the order they started, so a generation is complete before the next one is
asked for, and every run is deterministic. With --shuffle the running trials finish one to three
at a time, in a random order seeded by the run's seed: generations overlap (pbt's rule for
incomplete generations applies), and runs are still deterministic. With --processes every run is
`katib-local run`: trials are processes that finish in whatever order the machine gives, so
generations overlap and results vary from run to run.

Prints, per algorithm, the best final accuracy of each seed and their median, then the ratio of
the medians (the goal: pbt at least 1.5 times random). --figure writes the generations plot
(examples/pbt/plot.py) of the first pbt run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pbt"
sys.path.insert(0, str(EXAMPLE))

import plot  # noqa: E402  (examples/pbt/plot.py)
import train  # noqa: E402  (examples/pbt/train.py)

from katib_services.runner import spec  # noqa: E402
from katib_services.runner.controller import Controller, Endpoints  # noqa: E402
from katib_services.runner.functions import FunctionExecutor  # noqa: E402
from katib_services.runner.state import State  # noqa: E402
from katib_services.services.client import ServerProcess  # noqa: E402

MANIFESTS = {"pbt": EXAMPLE / "experiment.yaml", "random": EXAMPLE / "random.yaml"}
GOAL = 1.5


class CheckpointExecutor(FunctionExecutor):
    """Runs each trial as examples/pbt/train.py would, in this process: in the trial's checkpoint
    directory under the service's --data-dir when there is one, from scratch otherwise. With
    `shuffle`, trials wait until `wait` ends one to three of them, drawn at random."""

    def __init__(self, data_dir: Path, experiment: str, epochs: int, shuffle: random.Random | None = None):
        super().__init__(objective=None)
        self.directory = data_dir / experiment
        self.epochs = epochs
        self.shuffle = shuffle
        self.queued: list = []

    def start(self, trial, collector) -> None:
        if self.shuffle is None:
            self._run(trial, collector)
        else:
            self.queued.append((trial, collector))

    def wait(self, timeout: float) -> list:
        if self.shuffle is not None:
            for _ in range(min(len(self.queued), self.shuffle.choice((1, 1, 1, 2, 3)))):
                self._run(*self.queued.pop(self.shuffle.randrange(len(self.queued))))
        return super().wait(timeout)

    def _run(self, trial, collector) -> None:
        checkpoint = self.directory / trial.name
        lr, decay = float(trial.assignment["lr"]), float(trial.assignment["weight_decay"])
        where = str(checkpoint) if checkpoint.is_dir() else None
        self.objective = lambda _: {"accuracy": train.run(lr, decay, self.epochs, where, report=lambda line: None)}
        super().start(trial, collector)


def manifest(algorithm: str, seed: int, trials: int, population: int) -> dict:
    document = yaml.safe_load(MANIFESTS[algorithm].read_text())
    document["metadata"]["name"] = f"{document['metadata']['name']}-s{seed}"
    document["spec"]["maxTrialCount"] = trials
    document["spec"]["parallelTrialCount"] = population
    for setting in document["spec"]["algorithm"]["algorithmSettings"]:
        if setting["name"] == "random_state":
            setting["value"] = str(seed)
        if setting["name"] == "n_population":
            setting["value"] = str(population)
    return document


def epochs_of(document: dict) -> int:
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    return next(int(arg.split("=", 1)[1]) for arg in container["command"] if arg.startswith("--epochs="))


def run_in_process(document: dict, data_dir: Path, db: ServerProcess, suggestion: ServerProcess, shuffle=None) -> list[dict]:
    config = spec.parse(document, base_dir=EXAMPLE)
    executor = CheckpointExecutor(data_dir, config.name, epochs_of(document), shuffle)
    outcome = Controller(config, Endpoints(suggestion.channel, db.channel, db.address), executor, State(Path(":memory:"))).run()
    if outcome.status != "Succeeded":
        raise RuntimeError(f"{config.name}: {outcome.status}: {outcome.message}")
    return [vars(t) for t in outcome.trials]


def run_processes(document: dict, tmp: Path) -> list[dict]:
    path = tmp / f"{document['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    (tmp / "train.py").write_text((EXAMPLE / "train.py").read_text())
    workdir = tmp / document["metadata"]["name"]
    done = subprocess.run(
        [sys.executable, "-m", "katib_services.runner.cli", "run", str(path), "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"katib-local failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads((workdir / "experiment.json").read_text())["trials"]


def best_final(trials: list[dict]) -> float:
    return max(float(t["observation"]["accuracy"]) for t in trials if t["condition"] == "Succeeded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--population", type=int, default=10, help="n_population, and parallelTrialCount")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--shuffle", action="store_true", help="trials finish in a seeded random order: generations overlap")
    order.add_argument("--processes", action="store_true", help="run each experiment with katib-local, trials as processes")
    parser.add_argument("--figure", type=Path, help="write the generations plot of the first pbt run here")
    args = parser.parse_args()

    mode = "trials in process, generation by generation"
    if args.shuffle:
        mode = "trials in process, finishing in a seeded random order"
    if args.processes:
        mode = "katib-local, trials as processes"
    print(f"best final accuracy: {args.trials} trials of 3 epochs, {args.population} at a time; n_population {args.population}; {mode}\n")
    print("| algorithm | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | median | seconds |")
    print("|---" * (args.seeds + 3) + "|")
    medians = {}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(["katib_services.services.dbmanager", "--db", f"{tmp}/obs.db"]) as db:
        data_dir = Path(tmp) / "data"
        for algorithm in MANIFESTS:
            start = time.perf_counter()
            command = ["katib_services.services.suggestion", "--algorithm", algorithm, "--data-dir", str(data_dir)]
            with ServerProcess(command) as suggestion:
                results = []
                for seed in range(args.seeds):
                    document = manifest(algorithm, seed, args.trials, args.population)
                    if args.processes:
                        trials = run_processes(document, Path(tmp))
                    else:
                        shuffle = random.Random(seed) if args.shuffle else None
                        trials = run_in_process(document, data_dir, db, suggestion, shuffle)
                    results.append(best_final(trials))
                    if args.figure and algorithm == "pbt" and seed == 0:
                        parameters = document["spec"]["parameters"]
                        title = f"pbt on examples/pbt (seed 0): {len(trials)} trials, best final accuracy {results[0]:.3f}"
                        plot.plot_generations(trials, parameters, "accuracy", args.figure, title=title)
            medians[algorithm] = statistics.median(results)
            cells = " | ".join(f"{r:.3f}" for r in results)
            print(f"| {algorithm} | {cells} | {medians[algorithm]:.3f} | {time.perf_counter() - start:.1f} |", flush=True)
    ratio = medians["pbt"] / medians["random"]
    print(f"\npbt / random (medians): {ratio:.2f} (goal: at least {GOAL}) {'met' if ratio >= GOAL else 'NOT MET'}")
    if args.figure:
        print(f"wrote {args.figure}")
    sys.exit(0 if ratio >= GOAL else 1)


if __name__ == "__main__":
    main()
