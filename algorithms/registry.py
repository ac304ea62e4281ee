"""Algorithm names and where each one lives. Adding an algorithm adds one line here.

Modules are imported on first use, so a server pays only for the algorithm it runs.
"""

from __future__ import annotations

import importlib

from .base import Algorithm

_LOCATIONS = {
    "asha": "katib_services.algorithms.asha:Asha",
    "bayesianoptimization": "katib_services.algorithms.bayesianoptimization:BayesianOptimization",
    "cmaes": "katib_services.algorithms.cma_es:CmaEs",
    "darts": "katib_services.algorithms.darts:Darts",
    "enas": "katib_services.algorithms.enas:Enas",
    "grid": "katib_services.algorithms.grid:GridSearch",
    "hyperband": "katib_services.algorithms.hyperband:Hyperband",
    "multivariate-tpe": "katib_services.algorithms.multivariate_tpe:MultivariateTpe",
    "pbt": "katib_services.algorithms.pbt:Pbt",
    "random": "katib_services.algorithms.random_search:RandomSearch",
    "sobol": "katib_services.algorithms.sobol:Sobol",
    "tpe": "katib_services.algorithms.tpe:Tpe",
}
_loaded: dict[str, Algorithm] = {}


def names() -> list[str]:
    return sorted(_LOCATIONS)


def get(name: str) -> Algorithm | None:
    """The algorithm registered under `name`, or None."""
    algorithm = _loaded.get(name)
    if algorithm is None and name in _LOCATIONS:
        module, _, cls = _LOCATIONS[name].partition(":")
        algorithm = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return algorithm


def register(name: str, location: str) -> None:
    """Registers the algorithm at `module:Class` under `name` (for plug-ins and tests)."""
    _LOCATIONS[name] = location
    _loaded.pop(name, None)
