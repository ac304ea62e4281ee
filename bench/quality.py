"""Search quality: best-so-far simple regret of each algorithm on objectives with known optima.

    python bench/quality.py [--algorithms random grid] [--objectives branin hartmann6 mixed noisy-branin]
                            [--trials 100] [--seeds 10] [--batch 1 4] [--setting NAME=VALUE ...]

Every run is a whole experiment driven by the local runner's controller over real gRPC: a
`katib-suggestion` server per algorithm and a `katib-dbmanager` child process, trials evaluated
by a function instead of a process (`runner.functions.FunctionExecutor`). `random_state` is the
seed. For each algorithm, objective and batch size (parallelTrialCount) the table gives the
median and interquartile range over seeds of the simple regret (best noiseless value so far
minus the optimum) after 25%, 50% and 100% of the trials.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from objectives import OBJECTIVES, Objective  # noqa: E402

from katib_services.runner import spec  # noqa: E402
from katib_services.runner.controller import Controller, Endpoints, Outcome  # noqa: E402
from katib_services.runner.functions import FunctionExecutor  # noqa: E402
from katib_services.runner.state import State  # noqa: E402
from katib_services.services.client import ServerProcess  # noqa: E402

FRACTIONS = (0.25, 0.5, 1.0)


def manifest(name: str, algorithm: str, settings: dict, parameters: list[dict], trials: int, seed: int, batch: int) -> dict:
    """A minimized Experiment with the objective metric `value`; `random_state` is the seed."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "value"},
            "algorithm": {
                "algorithmName": algorithm,
                "algorithmSettings": [{"name": k, "value": v} for k, v in {"random_state": str(seed), **settings}.items()],
            },
            "parallelTrialCount": batch,
            "maxTrialCount": trials,
            "parameters": parameters,
        },
    }


def run_experiment(endpoints: Endpoints, document: dict, executor, controller: type[Controller] = Controller, **options) -> Outcome:
    """Runs an Experiment manifest through the local runner's controller; raises unless it Succeeded."""
    config = spec.parse(document, trial_template=False)
    outcome = controller(config, endpoints, executor, State(Path(":memory:")), **options).run()
    if outcome.status != "Succeeded":
        raise RuntimeError(f"{document['metadata']['name']}: {outcome.status}: {outcome.message}")
    return outcome


def served(algorithms: list[str]) -> Iterator[tuple[str, Endpoints]]:
    """(algorithm, endpoints) in turn: a `katib-suggestion` process per algorithm, one shared `katib-dbmanager`."""
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(["katib_services.services.dbmanager", "--db", f"{tmp}/obs.db"]) as db:
        for algorithm in algorithms:
            with ServerProcess(["katib_services.services.suggestion", "--algorithm", algorithm]) as server:
                yield algorithm, Endpoints(server.channel, db.channel, db.address)


def run_once(endpoints: Endpoints, algorithm: str, settings: dict, objective: Objective, trials: int, seed: int, batch: int) -> list[float]:
    """One experiment; returns the noiseless value of each trial in creation order."""
    name = f"{objective.name}-{algorithm}-s{seed}-b{batch}"
    document = manifest(name, algorithm, settings, objective.space(algorithm), trials, seed, batch)
    executor = FunctionExecutor(lambda a: {"value": objective.observed(a, seed)})
    outcome = run_experiment(endpoints, document, executor)
    return [objective.function(t.assignment) for t in outcome.trials]


def regret_at(values: list[float], optimum: float, count: int) -> float:
    return min(values[:count]) - optimum


def summary(regrets: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(regrets, n=4, method="inclusive") if len(regrets) > 1 else [regrets[0]] * 3
    return f"{median:.3g} [{q1:.3g}, {q3:.3g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["random", "grid"])
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="an algorithm setting")
    args = parser.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting)

    header = [f"regret at {int(f * args.trials)} trials" for f in FRACTIONS]
    print(f"median [IQR] of simple regret over {args.seeds} seeds, {args.trials} trials\n")
    print("| algorithm | objective | batch | " + " | ".join(header) + " | seconds |")
    print("|---" * (4 + len(header)) + "|")
    for algorithm, endpoints in served(args.algorithms):
        for name in args.objectives:
            objective = OBJECTIVES[name]
            for batch in args.batch:
                start = time.perf_counter()
                runs = [run_once(endpoints, algorithm, settings, objective, args.trials, seed, batch) for seed in range(args.seeds)]
                cells = [summary([regret_at(v, objective.optimum, max(1, int(f * args.trials))) for v in runs]) for f in FRACTIONS]
                seconds = time.perf_counter() - start
                print(f"| {algorithm} | {name} | {batch} | " + " | ".join(cells) + f" | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
