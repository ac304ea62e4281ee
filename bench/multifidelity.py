"""Multi-fidelity search: simple regret against total resource on an augmented Hartmann6.

    python bench/multifidelity.py [--seeds 10] [--parallelism 1 4] [--budget 100] [--max-resource 27]
                                  [--variants random hyperband asha asha-tpe]

The objective is BoTorch's augmented Hartmann6 (objectives.augmented_hartmann6) at fidelity
r / r_max, where r is the trial's resource parameter; a trial costs r units of resource. Every
run is a whole experiment driven by the local runner's controller over real gRPC (bench/quality.py's
machinery: a katib-suggestion process per algorithm, a katib-dbmanager), with trials as functions
on simulated workers: `--parallelism` workers, each trial occupying one for r units of time, so
trials finish in the order a real cluster would finish them, and a run ends once the workers
have spent the budget, `--budget` full-resource trials' worth (random's 100 trials at r_max).

Regret is measured on the true Hartmann6 for the configuration a user would pick at that moment:
the best observed value among the finished trials at the highest resource finished so far.
Each cell is the median [interquartile range] over seeds (`random_state`); a dash while the
median run has no finished trial. The last column is
the resource at which the median regret first reaches random's final median regret, as a share
of the budget (the issue's goal: at most 50% for asha).

Variants: random (every trial at r_max), hyperband (r_l = r_max, eta 3), asha (min_resource 1,
max_resource r_max, eta 3) and asha-tpe (asha with sampler: tpe, BOHB-style).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from objectives import OBJECTIVES, augmented_hartmann6  # noqa: E402
from quality import manifest, run_experiment, served, summary  # noqa: E402

from katib_services.runner.controller import Controller, Outcome  # noqa: E402
from katib_services.runner.functions import FunctionExecutor  # noqa: E402

HARTMANN6 = OBJECTIVES["hartmann6"]
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
RESOURCE = "r"


def variants(max_resource: int) -> dict[str, tuple[str, dict[str, str]]]:
    top = str(max_resource)
    return {
        "random": ("random", {}),
        "hyperband": ("hyperband", {"resource_name": RESOURCE, "r_l": top, "eta": "3"}),
        "asha": ("asha", {"resource_name": RESOURCE, "min_resource": "1", "max_resource": top, "eta": "3"}),
        "asha-tpe": ("asha", {"resource_name": RESOURCE, "min_resource": "1", "max_resource": top, "eta": "3", "sampler": "tpe"}),
    }


class Workers(FunctionExecutor):
    """Trials on simulated workers: each takes `cost(assignment)` units of time from its start;
    `wait` ends the trial that finishes first and moves the clock to its end."""

    def __init__(self, objective: Callable[[Mapping[str, str]], Mapping[str, float]], cost: Callable[[Mapping[str, str]], float]):
        super().__init__(objective)
        self.cost = cost
        self.clock = 0.0
        self.running: list = []  # heap of (end, order, Finished)
        self.spans: list[tuple[float, float]] = []
        self.ends: dict[str, float] = {}

    def start(self, trial, collector) -> None:
        super().start(trial, collector)  # evaluated and reported now, seen as finished at its end
        end = self.clock + self.cost(trial.assignment)
        heapq.heappush(self.running, (end, len(self.spans), self.finished.pop()))
        self.spans.append((self.clock, end))
        self.ends[trial.name] = end

    def wait(self, timeout: float) -> list:
        if not self.running:
            return []
        end, _, finished = heapq.heappop(self.running)
        self.clock = end
        return [finished]

    def spent(self, at: float) -> float:
        """Worker time used by `at`: the resource spent so far, running trials included."""
        return sum(max(0.0, min(end, at) - start) for start, end in self.spans)


class BudgetController(Controller):
    """The controller loop, ended once the workers have spent the budget."""

    def __init__(self, *args, budget: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget = budget

    def _ending(self) -> Outcome | None:
        if self.executor.spent(self.executor.clock) >= self.budget:
            return self._outcome("Succeeded", "BudgetSpent", f"{self.budget:g} units of resource spent")
        return super()._ending()


def run_once(endpoints, variant: str, algorithm: str, settings: dict, seed: int, workers: int, max_resource: int, budget: float):
    """One experiment: [(resource spent, regret of the pick)] at every trial's end, in time order."""
    low = str(max_resource) if algorithm == "random" else "1"  # random trains at r_max; the others set r themselves
    parameters = [*HARTMANN6.parameters, {"name": RESOURCE, "parameterType": "int", "feasibleSpace": {"min": low, "max": str(max_resource)}}]
    document = manifest(f"mf-{variant}-s{seed}-w{workers}", algorithm, settings, parameters, 1_000_000, seed, workers)
    executor = Workers(
        lambda a: {"value": augmented_hartmann6(a, int(a[RESOURCE]) / max_resource)},
        lambda a: float(a[RESOURCE]),
    )
    outcome = run_experiment(endpoints, document, executor, BudgetController, budget=budget)
    finished = sorted((t for t in outcome.trials if t.condition == "Succeeded"), key=lambda t: executor.ends[t.name])
    curve, pick, top = [], None, 0
    for t in finished:
        resource, value = int(t.assignment[RESOURCE]), float(t.observation["value"])
        if resource > top or (resource == top and value < pick[0]):
            top, pick = resource, (value, HARTMANN6.function(t.assignment) - HARTMANN6.optimum)
        curve.append((executor.spent(executor.ends[t.name]), pick[1]))
    return curve


def regret_at(curve: list[tuple[float, float]], spent: float) -> float:
    """The regret of the pick once `spent` resource is used (infinite before the first trial ends)."""
    regret = float("inf")
    for used, value in curve:
        if used > spent * (1 + 1e-9):
            break
        regret = value
    return regret


def cell(regrets: list[float]) -> str:
    """median [IQR], or a dash while the median run has no finished trial yet."""
    return "-" if statistics.median(regrets) == float("inf") else summary(regrets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--budget", type=int, default=100, help="the budget in full-resource trials (random's trial count)")
    parser.add_argument("--max-resource", type=int, default=27)
    parser.add_argument("--variants", nargs="+", default=["random", "hyperband", "asha", "asha-tpe"])
    args = parser.parse_args()
    budget = args.budget * args.max_resource
    table = variants(args.max_resource)
    chosen = [v for v in table if v in args.variants]
    by_algorithm: dict[str, list[str]] = {}
    for v in chosen:
        by_algorithm.setdefault(table[v][0], []).append(v)

    header = [f"regret at {f:.1%} ({f * budget:g})".replace(".0%", "%") for f in FRACTIONS]
    print(f"augmented Hartmann6, r_max {args.max_resource}, budget {budget} resource ({args.budget} trials at r_max); "
          f"median [IQR] of simple regret over {args.seeds} seeds\n")
    print("| variant | parallelism | " + " | ".join(header) + " | reaches random's final regret at | seconds |")
    print("|---" * (4 + len(header)) + "|")
    target: dict[int, float] = {}
    for algorithm, endpoints in served(list(by_algorithm)):
        for variant in by_algorithm[algorithm]:
            settings = table[variant][1]
            for workers in args.parallelism:
                start = time.perf_counter()
                curves = [run_once(endpoints, variant, algorithm, settings, seed, workers, args.max_resource, budget) for seed in range(args.seeds)]
                cells = [cell([regret_at(c, f * budget) for c in curves]) for f in FRACTIONS]
                if variant == "random":
                    target[workers] = statistics.median(regret_at(c, budget) for c in curves)
                reach = "-"
                if workers in target:
                    grid = [budget * k / 200 for k in range(1, 201)]
                    hit = next((x for x in grid if statistics.median(regret_at(c, x) for c in curves) <= target[workers]), None)
                    reach = "not reached" if hit is None else f"{hit / budget:.1%} ({hit:g})"
                seconds = time.perf_counter() - start
                print(f"| {variant} | {workers} | " + " | ".join(cells) + f" | {reach} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
