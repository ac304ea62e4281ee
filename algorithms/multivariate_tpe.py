"""multivariate-tpe: TPE over all parameters jointly (Optuna's TPESampler(multivariate=True)).

Unlike Katib's service, which keeps its study in memory and rejects any trial it did not create,
the study here is built from the request (see algorithms/_optuna.py), so a restarted server
continues the experiment. Running trials take part as constant liars.
"""

from __future__ import annotations

import optuna

from . import _optuna
from .base import Algorithm, Reply, Request
from .settings import RANDOM_STATE, Schema
from .tpe import N_EI, N_STARTUP


class MultivariateTpe(Algorithm):
    name = "multivariate-tpe"
    summary = "Multivariate TPE (Optuna): models the parameters jointly; constant liar for pending trials."
    schema = Schema(RANDOM_STATE, N_STARTUP, N_EI)

    def suggest(self, request: Request) -> Reply:
        def sampler(trials: int) -> optuna.samplers.BaseSampler:
            return optuna.samplers.TPESampler(
                seed=request.seed % 2**32,
                multivariate=True,
                constant_liar=True,
                n_startup_trials=request.settings["n_startup_trials"],
                n_ei_candidates=_optuna.ei_candidates(request.settings["n_ei_candidates"], trials),
            )

        return _optuna.suggest_with(request, sampler)
