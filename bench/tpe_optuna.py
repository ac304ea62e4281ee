"""Check that the tpe and multivariate-tpe services propose exactly what Optuna's TPESampler does.

    python bench/tpe_optuna.py [--trials 60] [--seeds 3] [--batch 1]

For each algorithm and seed, an experiment on Branin (plus a categorical parameter) is driven over
gRPC against `katib-suggestion` run as a child process. Before each request, the same history is
given to Optuna in process through its public API only (`Study.add_trials` with `create_trial`,
in the service's canonical trial order and unit-cube encoding, and `TPESampler` with the seed the
service derives from the request), and Optuna is asked for the same number of points. The table
counts the proposals that are identical. The service builds its study without `add_trials` (see
algorithms/_optuna.py), so this is what shows that the shortcut changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from katib_services.algorithms import _optuna  # noqa: E402
from katib_services.algorithms.base import derive_seed  # noqa: E402
from katib_services.algorithms.history import parse_trial  # noqa: E402
from katib_services.algorithms.model import Encoder  # noqa: E402
from katib_services.services import convert  # noqa: E402
from katib_services.services.client import ServerProcess, assignments, experiment_pb, trial_pb  # noqa: E402
from katib_services.services.pb import api_pb2, api_pb2_grpc  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from objectives import OBJECTIVES  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_STARTUP = 10


def spec(algorithm: str, seed: int) -> dict:
    parameters = [*OBJECTIVES["branin"].parameters, {"name": "c", "parameterType": "categorical", "feasibleSpace": {"list": ["a", "b", "c"]}}]
    return {
        "parameters": parameters,
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
        "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": "random_state", "value": str(seed)}, {"name": "n_startup_trials", "value": str(N_STARTUP)}]},
    }


def public_study(space, history) -> tuple[optuna.Study, dict]:
    """The parsed trials of a request (in the service's canonical order) in a minimizing study
    built through Optuna's public API only, in the states the service gives them; and the
    distributions. tests/test_tpe_sobol.py compares it with the service's `_optuna.study_of`."""
    dists = _optuna.distributions(Encoder(space))
    study = optuna.create_study(direction="minimize")
    trials = []
    for t in history:
        if t.point is None:
            continue
        state = _optuna._state(t)
        value = t.value if state is TrialState.COMPLETE else None
        trials.append(create_trial(state=state, value=value, params=dict(zip(space.names, space.encode(t.point))), distributions=dists))
    study.add_trials(trials)
    return study, dists


def optuna_proposals(experiment_message, trials, count: int, total: int, multivariate: bool) -> list[dict]:
    """What Optuna's own public API proposes for this request."""
    experiment = convert.experiment(experiment_message)
    history = sorted((parse_trial(experiment, *convert.trial_fields(t)) for t in trials), key=lambda t: t.order)
    encoder = Encoder(experiment.space)
    study, dists = public_study(experiment.space, history)
    seed = derive_seed(experiment.name, int(spec_seed(experiment_message)), total, len(history))
    study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32, multivariate=multivariate, constant_liar=True, n_startup_trials=N_STARTUP)
    out = []
    for _ in range(count):
        trial = study.ask(dists)
        out.append(experiment.space.format(encoder.decode([trial.params[n] for n in experiment.space.names])))
    return out


def spec_seed(experiment_message) -> str:
    return next(s.value for s in experiment_message.spec.algorithm.algorithm_settings if s.name == "random_state")


def compare(stub, algorithm: str, seed: int, budget: int, batch: int) -> tuple[int, int]:
    experiment = experiment_pb(f"tpe-check-{seed}", spec(algorithm, seed))
    branin = OBJECTIVES["branin"].function
    trials, same, total = [], 0, 0
    while len(trials) < budget:
        request = api_pb2.GetSuggestionsRequest(experiment=experiment, trials=trials, current_request_number=batch, total_request_number=len(trials) + batch)
        ours = assignments(stub.GetSuggestions(request, timeout=60))
        theirs = optuna_proposals(experiment, trials, batch, len(trials) + batch, algorithm == "multivariate-tpe")
        same += sum(a == b for a, b in zip(ours, theirs))
        total += batch
        for a in ours:
            value = branin(a) + {"a": 0.0, "b": 1.0, "c": 2.0}[a["c"]]
            trials.append(trial_pb(f"t{len(trials):04d}", a, "Succeeded", {"loss": value}))
    return same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print("| algorithm | seed | proposals | identical to Optuna |\n|---|---|---|---|")
    failed = False
    for algorithm in ("tpe", "multivariate-tpe"):
        with ServerProcess(["katib_services.services.suggestion", "--algorithm", algorithm, "--log-level", "WARNING"]) as server:
            stub = api_pb2_grpc.SuggestionStub(server.channel)
            for seed in range(args.seeds):
                same, total = compare(stub, algorithm, seed, args.trials, args.batch)
                failed |= same != total
                print(f"| {algorithm} | {seed} | {total} | {same} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
