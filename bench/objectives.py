"""Benchmark objectives with known optima, as Katib search spaces (all minimized).

Each objective maps an assignment (parameter name -> value string, as a trial receives it) to
its value; `noise` > 0 adds seeded Gaussian noise to what the trial reports, while the regret is
always measured on the noiseless value.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    parameters: list[dict]  # Katib YAML shape
    function: Callable[[Mapping[str, str]], float]
    optimum: float
    grid_steps: dict[str, str]  # a step for each continuous parameter, for grid search
    noise: float = 0.0

    def space(self, algorithm: str) -> list[dict]:
        """The parameters; grid gets a step on every continuous double."""
        if algorithm != "grid":
            return self.parameters
        out = []
        for p in self.parameters:
            if p["name"] in self.grid_steps:
                p = {**p, "feasibleSpace": {**p["feasibleSpace"], "step": self.grid_steps[p["name"]]}}
            out.append(p)
        return out

    def observed(self, assignment: Mapping[str, str], seed: int) -> float:
        """The value a trial reports: noiseless, or with noise seeded by the seed and the point."""
        value = self.function(assignment)
        if self.noise:
            value += random.Random(f"{seed}:{sorted(assignment.items())}").gauss(0.0, self.noise)
        return value


def _double(name: str, lo: str, hi: str, distribution: str | None = None) -> dict:
    space = {"min": lo, "max": hi}
    if distribution:
        space["distribution"] = distribution
    return {"name": name, "parameterType": "double", "feasibleSpace": space}


def branin(a: Mapping[str, str]) -> float:
    x1, x2 = float(a["x1"]), float(a["x2"])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H_A = (
    (10, 3, 17, 3.5, 1.7, 8),
    (0.05, 10, 17, 0.1, 8, 14),
    (3, 3.5, 1.7, 10, 17, 8),
    (17, 8, 0.05, 10, 0.1, 14),
)
_H_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def hartmann6(a: Mapping[str, str]) -> float:
    return augmented_hartmann6(a, 1.0)


def augmented_hartmann6(a: Mapping[str, str], fidelity: float) -> float:
    """BoTorch's AugmentedHartmann: Hartmann6 with the first alpha lowered by 0.1 * (1 - fidelity),
    so it equals Hartmann6 at fidelity 1 (fidelity in [0, 1])."""
    x = [float(a[f"x{i}"]) for i in range(1, 7)]
    alphas = (_H_ALPHA[0] - 0.1 * (1.0 - fidelity), *_H_ALPHA[1:])
    return -sum(
        alpha * math.exp(-sum(A[j] * (x[j] - P[j]) ** 2 for j in range(6))) for alpha, A, P in zip(alphas, _H_A, _H_P)
    )


_OPTIMIZER_PENALTY = {"adam": 0.0, "rmsprop": 0.15, "sgd": 0.4}


def mixed(a: Mapping[str, str]) -> float:
    """A training-loss-like surface: log learning rate, integer depth, dropout and an optimizer."""
    lr, layers, dropout = float(a["lr"]), int(a["layers"]), float(a["dropout"])
    return (math.log10(lr) + 2.5) ** 2 + 0.08 * (layers - 5) ** 2 + 4 * (dropout - 0.2) ** 2 + _OPTIMIZER_PENALTY[a["optimizer"]]


BRANIN_SPACE = [_double("x1", "-5", "10"), _double("x2", "0", "15")]
OBJECTIVES = {
    o.name: o
    for o in (
        Objective("branin", BRANIN_SPACE, branin, 0.397887, {"x1": "0.25", "x2": "0.25"}),
        Objective(
            "hartmann6", [_double(f"x{i}", "0", "1") for i in range(1, 7)], hartmann6, -3.32237, {f"x{i}": "0.1" for i in range(1, 7)}
        ),
        Objective(
            "mixed",
            [
                _double("lr", "0.0001", "0.1", "logUniform"),
                {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "10"}},
                _double("dropout", "0", "0.6"),
                {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam", "rmsprop"]}},
            ],
            mixed,
            0.0,
            {"lr": "0.0001", "dropout": "0.05"},
        ),
        Objective("noisy-branin", BRANIN_SPACE, branin, 0.397887, {"x1": "0.25", "x2": "0.25"}, noise=2.0),
    )
}
