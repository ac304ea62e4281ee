"""tpe: Tree-structured Parzen Estimator over each parameter independently (Optuna's TPESampler).

Katib's settings keep their meaning: `gamma` is hyperopt's (the ceil(gamma * sqrt(n)) best
trials, at most 25, form the "good" density; unset, Optuna's default ceil(0.1 n) is used),
`prior_weight`, and `n_EI_candidates` (alias `n_ei_candidates`). `n_startup_trials` random trials
come first, counted in completed trials, not tied to the batch size. Running trials take part as
constant liars, so members of one batch differ and keep away from pending trials.
"""

from __future__ import annotations

import optuna

from . import _optuna
from .base import Algorithm, Reply, Request
from .settings import RANDOM_STATE, Schema, Setting

N_STARTUP = Setting("n_startup_trials", int, 10, "Random trials before the model is used.", low=0, high=100_000)
N_EI = Setting(
    "n_ei_candidates",
    int,
    24,
    "Candidates drawn from the good density to score by expected improvement; at most 2,000,000 / (trials + 1) "
    "(and at least 24) are used, which bounds the memory of one call.",
    low=1,
    high=10_000,
)


class Tpe(Algorithm):
    name = "tpe"
    summary = "Independent TPE (Optuna) with constant liar for pending trials and batches."
    schema = Schema(
        RANDOM_STATE,
        Setting("gamma", float, None, "Hyperopt's gamma: ceil(gamma*sqrt(n)) best trials (at most 25) are 'good'.", low=0, high=1, low_open=True, high_open=True),
        Setting("prior_weight", float, None, "Weight of the prior in the Parzen estimators (unset: 1.0).", low=0, low_open=True, high=1e6),
        Setting("n_EI_candidates", int, None, "Katib's (hyperopt's) name for n_ei_candidates; wins when both are set.", low=1, high=10_000),
        N_EI,
        N_STARTUP,
    )

    def suggest(self, request: Request) -> Reply:
        s = request.settings
        options = {}
        if s["gamma"] is not None:
            options["gamma"] = _optuna.gamma_from_hyperopt(s["gamma"])
        if s["prior_weight"] is not None:
            options["prior_weight"] = s["prior_weight"]

        def sampler(trials: int) -> optuna.samplers.BaseSampler:
            return optuna.samplers.TPESampler(
                seed=request.seed % 2**32,
                multivariate=False,  # Optuna 5 defaults to the multivariate TPE
                constant_liar=True,
                n_startup_trials=s["n_startup_trials"],
                n_ei_candidates=_optuna.ei_candidates(s["n_EI_candidates"] or s["n_ei_candidates"], trials),
                **options,
            )

        return _optuna.suggest_with(request, sampler)
