"""tpe, multivariate-tpe and sobol specifics: Katib's settings, batches, the Sobol sequence."""

import importlib.util
import sys
from pathlib import Path

import grpc
import optuna
import pytest

from katib_services.algorithms import _optuna
from katib_services.algorithms.history import History, parse_trial
from katib_services.algorithms.model import Encoder
from katib_services.services import convert
from katib_services.services.client import trial_pb

from .conftest import categorical, double, experiment, integer, points

SPACE = [double("x", "0", "1"), double("y", "0", "1")]


@pytest.mark.parametrize(
    "algorithm,settings,expected",
    [
        ("tpe", {"gamma": 1}, 'algorithmSettings["gamma"]: 1 is out of range; it must be in (0, 1)'),
        ("tpe", {"gamma": 0}, 'algorithmSettings["gamma"]: 0 is out of range; it must be in (0, 1)'),
        ("tpe", {"prior_weight": 0}, 'algorithmSettings["prior_weight"]: 0 is out of range; it must be in (0, 1,000,000]'),
        ("tpe", {"n_EI_candidates": 0}, 'algorithmSettings["n_EI_candidates"]: 0 is out of range; it must be in [1, 10,000]'),
        ("tpe", {"n_startup_trials": -1}, 'algorithmSettings["n_startup_trials"]: -1 is out of range; it must be in [0, 100,000]'),
        ("multivariate-tpe", {"gamma": 0.5}, 'unknown setting "gamma" for algorithm multivariate-tpe'),
        ("multivariate-tpe", {"n_ei_candidates": "many"}, 'algorithmSettings["n_ei_candidates"]: "many" is not an integer'),
        ("sobol", {"random_state": -2}, 'algorithmSettings["random_state"]: -2 is out of range'),
    ],
)
def test_settings_validation(serve, algorithm, settings, expected):
    client = serve(algorithm)
    with pytest.raises(grpc.RpcError) as caught:
        client.validate(experiment(SPACE, algorithm=algorithm, settings=settings))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()


def test_katib_tpe_settings_are_accepted_and_used(serve):
    client = serve("tpe")
    trials = [
        trial_pb(f"t{i}", {"x": str(i / 20), "y": str(1 - i / 20)}, "Succeeded", {"accuracy": str(i / 20)}) for i in range(20)
    ]
    settings = {"gamma": 0.25, "prior_weight": 1.5, "n_EI_candidates": 12, "random_state": 4}
    client.validate(experiment(SPACE, algorithm="tpe", settings=settings))
    a = points(client.suggest(experiment(SPACE, algorithm="tpe", settings=settings), trials, count=4))
    b = points(client.suggest(experiment(SPACE, algorithm="tpe", settings={**settings, "gamma": 0.9}), trials, count=4))
    assert len(set(a)) == 4 and a != b, "gamma changes the model"


@pytest.mark.parametrize("algorithm", ["tpe", "multivariate-tpe"])
def test_batch_members_differ_after_the_start_up_phase(serve, algorithm):
    """Katib's hyperopt tpe returns the same point several times in one batch; here they differ."""
    client = serve(algorithm)
    space = [integer("a", 1, 6), integer("b", 1, 6)]  # small: a model without liar repeats itself
    trials = [trial_pb(f"t{i}", {"a": str(1 + i % 6), "b": str(1 + (i * 5) % 6)}, "Succeeded", {"accuracy": str(i % 7)}) for i in range(12)]
    reply = points(client.suggest(experiment(space, algorithm=algorithm, settings={"n_startup_trials": 2}), trials, count=8))
    assert len(set(reply)) == 8


def test_sobol_sequence_continues_across_requests_and_restarts(serve):
    exp = experiment(SPACE, algorithm="sobol", settings={"random_state": 3})
    client = serve("sobol")
    whole = client.suggest(exp, count=8)
    first = client.suggest(exp, count=3)
    assert points(first) == points(whole)[:3]
    trials = [
        trial_pb(f"t{i}", {a.name: a.value for a in item.assignments}, "Running", labels=dict(item.labels))
        for i, item in enumerate(first.parameter_assignments)
    ]
    assert [dict(item.labels) for item in first.parameter_assignments] == [{"sobol-index": str(i)} for i in range(3)]
    serve.servers[0].shutdown(grace=1)
    rest = serve("sobol").suggest(exp, trials, count=5)
    assert points(rest) == points(whole)[3:], "a restarted server continues the same sequence"


def load_bench():
    """bench/tpe_optuna.py (imported from its path: bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_tpe_optuna", Path(__file__).resolve().parent.parent / "bench" / "tpe_optuna.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("multivariate", [False, True])
def test_the_storage_shortcut_builds_the_study_optunas_add_trials_builds(multivariate):
    """_optuna.study_of puts the trials into Optuna's in-memory storage directly; the same trials
    given to Optuna through `Study.add_trials` (bench/tpe_optuna.py) make a seeded TPESampler
    ask the same points."""
    space = [double("x", "0", "1"), double("lr", "0.0001", "0.1", distribution="logUniform"), integer("n", 1, 8), categorical("c", "a", "b", "c")]
    exp = convert.experiment(experiment(space, algorithm="tpe", objective="minimize", metric="loss"))
    conditions = ["Succeeded", "Succeeded", "Running", "Succeeded", "Failed", "Created", "EarlyStopped", "Killed", "MetricsUnavailable"]
    messages = [
        trial_pb(
            f"t{(i * 17) % 41:02d}",  # names out of creation order: both ways use the canonical order
            {"x": str(((i * 7) % 40) / 40), "lr": str(0.0001 * 10 ** ((i % 9) / 3)), "n": str(1 + i % 8), "c": "abc"[i % 3]},
            conditions[i % len(conditions)],
            {"loss": str(((i * 13) % 11) / 7)} if i % 10 else {},  # every tenth without a value: FAIL
        )
        for i in range(40)
    ]
    messages.append(trial_pb("foreign", {"x": "2", "lr": "0.01", "n": "1", "c": "a"}, "Succeeded", {"loss": "0"}))
    history = History(exp, [parse_trial(exp, *convert.trial_fields(m)) for m in messages]).trials
    dists = _optuna.distributions(Encoder(exp.space))
    ours = _optuna.study_of(_optuna.frozen_trials(Encoder(exp.space), history, dists), dists)
    theirs, _ = load_bench().public_study(exp.space, history)
    states = [t.state for t in ours.trials]
    assert states == [t.state for t in theirs.trials] and len(states) == 40 and len(set(states)) == 3
    assert ours.best_trial.number == theirs.best_trial.number
    asks = []
    for study in (ours, theirs):
        study.sampler = optuna.samplers.TPESampler(seed=11, multivariate=multivariate, constant_liar=True, n_startup_trials=5)
        asks.append([study.ask(dists).params for _ in range(6)])
    assert asks[0] == asks[1]
