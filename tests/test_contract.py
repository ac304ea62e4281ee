"""The contract every search algorithm keeps, over real gRPC (grid has its own, tests/test_grid.py).

Exact counts, distinct proposals, pending trials never re-proposed, a repeated request answered
the same, a restarted server continuing, trials in every condition (and foreign or broken ones)
tolerated, every type, distribution and step honoured, and a real optimization bar.

hyperband and asha keep it with a resource parameter added to every space (conftest.RESOURCE,
which they set themselves): "never re-proposed" then applies to configurations, the parameters
besides the resource, since a promotion is a new trial with the same configuration and a larger
resource. Their optimization bar is at equal resource, not equal trials (tests/test_multifidelity.py).
"""

import importlib.util
import math
import random
import statistics
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from katib_services.services.client import trial_pb

from .conftest import MULTI_FIDELITY, RESOURCE, SPACE_ALGORITHMS, categorical, discrete, double, experiment, integer, points, with_resource

ALGORITHMS = [name for name in SPACE_ALGORITHMS if name != "grid"]  # NAS: tests/test_nas.py
MODEL_BASED = [name for name in ALGORITHMS if name != "random" and name not in MULTI_FIDELITY]
CONDITIONS = ["Created", "Running", "Succeeded", "Killed", "Failed", "MetricsUnavailable", "EarlyStopped"]
# Few random start-up trials, so that the models are used within the short runs of these tests.
QUICK = {"tpe": {"n_startup_trials": 3}, "multivariate-tpe": {"n_startup_trials": 3}, "bayesianoptimization": {"n_initial_points": 3}}
# pbt's required settings (its population is small, so that the short runs here reach later generations).
QUICK["pbt"] = {"suggestion_trial_dir": "/var/log/katib/checkpoints", "n_population": 5, "truncation_threshold": 0.2}

MIXED = [
    double("lr", "0.0001", "0.1", distribution="logUniform"),
    double("momentum", "-0.5", "0.5", distribution="normal"),
    double("dropout", "0", "0.5", step="0.05"),
    double("scale", "0.01", "100", distribution="logNormal"),
    integer("layers", 1, 8),
    integer("width", 16, 512, distribution="logUniform"),
    discrete("batch", 16, 32, 64),
    categorical("optimizer", "sgd", "adam", "rmsprop"),
]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "objectives.py"


def load_objectives():
    spec = importlib.util.spec_from_file_location("bench_objectives", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def exp_for(algorithm, parameters, name="exp", settings=None, **extra):
    parameters, merged = with_resource(algorithm, parameters, {**QUICK.get(algorithm, {}), **(settings or {})})
    return experiment(parameters, name=name, algorithm=algorithm, settings=merged, objective="minimize", metric="loss", **extra)


def configuration(point):
    """A point without the resource of hyperband and asha."""
    return tuple(pair for pair in point if pair[0] != RESOURCE)


def as_trials(pts, start=0, condition="Succeeded", values=None, labels=None):
    out = []
    for i, point in enumerate(pts, start):
        state = condition or CONDITIONS[i % len(CONDITIONS)]
        metrics = {"loss": values[i - start]} if values is not None and state in ("Succeeded", "EarlyStopped") else {}
        out.append(trial_pb(f"t{i}", dict(point), state, metrics, labels[i - start] if labels else None))
    return out


def drive(client, exp, objective, budget, batch=1):
    """Runs an experiment over gRPC: each batch is evaluated and sent back as Succeeded trials, named
    as the service named them (as Katib does), or t0, t1, ..."""
    trials = []
    while len(trials) < budget:
        reply = client.suggest(exp, trials, count=min(batch, budget - len(trials)))
        for item in reply.parameter_assignments:
            assignment = {a.name: a.value for a in item.assignments}
            name = item.trial_name or f"t{len(trials)}"
            trials.append(trial_pb(name, assignment, "Succeeded", {"loss": objective(assignment)}, dict(item.labels)))
    return trials


def key(trial):
    return tuple(sorted((a.name, a.value) for a in trial.spec.parameter_assignments.assignments))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_exact_counts_and_distinct(serve, algorithm):
    client = serve(algorithm)
    space = [double("x", "-1", "1"), double("y", "0", "3"), categorical("c", "a", "b")]
    trials = drive(client, exp_for(algorithm, space), lambda a: float(a["x"]) ** 2 + float(a["y"]), 8, batch=4)
    for count in (1, 4, 7):
        reply = client.suggest(exp_for(algorithm, space), trials, count=count)
        got = points(reply)
        assert len(got) == count and len(set(got)) == count
        assert not set(got) & {key(t) for t in trials}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_pending_and_all_conditions_are_never_reproposed(serve, algorithm):
    client = serve(algorithm)
    space = [integer("a", 1, 4), integer("b", 1, 3)]  # 12 points
    exp = exp_for(algorithm, space)
    grid = [(("a", str(a)), ("b", str(b))) for a in range(1, 5) for b in range(1, 4)]
    resource = ((RESOURCE, "1"),) if algorithm in MULTI_FIDELITY else ()  # trials at the lowest rung's resource
    trials = as_trials([point + resource for point in grid[:8]], condition=None, values=[float(i) for i in range(8)])
    reply = [configuration(point) for point in points(client.suggest(exp, trials, count=4))]
    assert sorted(reply) == sorted(grid[8:]), "exactly the four unused points"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_repeated_request_and_restart(serve, algorithm):
    space = [double("x", "-2", "2"), double("y", "-2", "2"), integer("n", 1, 5)]
    exp = exp_for(algorithm, space)
    f = lambda a: (float(a["x"]) - 0.5) ** 2 + (float(a["y"]) + 0.5) ** 2 + int(a["n"]) * 0.1  # noqa: E731
    first = serve(algorithm)
    trials = drive(first, exp, f, 9, batch=3)
    pending = as_trials(points(first.suggest(exp, trials, count=2)), start=9, condition="Running", labels=None)
    request_trials = trials + pending
    warm = points(first.suggest(exp, request_trials, count=3))
    assert warm == points(first.suggest(exp, request_trials, count=3)), "a retried request gets the same reply"
    serve.servers[0].shutdown(grace=1)
    restarted = serve(algorithm)
    cold = points(restarted.suggest(exp, request_trials, count=3))
    assert cold == warm, "a restarted server gives the same reply"
    more = drive(restarted, exp, f, 12)  # and the restarted server carries on
    assert len({key(t) for t in more}) == 12


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_foreign_nan_and_missing_metric_trials(serve, algorithm):
    client = serve(algorithm)
    space = [double("x", "0", "1"), double("y", "0", "1")]
    trials = [
        trial_pb("other-1", {"unrelated": "3"}, "Succeeded", {"loss": "0.1"}, {"cmaes-generation": "x", "sobol-index": "oops"}),
        trial_pb("nan", {"x": "0.5", "y": "0.5"}, "Succeeded", {"loss": "nan"}),
        trial_pb("unavailable", {"x": "0.2", "y": "0.3"}, "Succeeded", {"loss": "unavailable"}),
        trial_pb("missing", {"x": "0.7", "y": "0.1"}, "Succeeded", {"accuracy": "0.5"}),
        trial_pb("out-of-range", {"x": "7", "y": "-2"}, "Succeeded", {"loss": "0.01"}),
        trial_pb("early", {"x": "0.9", "y": "0.9"}, "EarlyStopped", {"loss": "2.5"}),
        *as_trials([(("x", "0.1"), ("y", "0.1")), (("x", "0.4"), ("y", "0.8"))], start=10, values=[1.0, 2.0]),
    ]
    reply = points(client.suggest(exp_for(algorithm, space), trials, count=3))
    assert len(set(reply)) == 3


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_type_distribution_and_step(serve, algorithm):
    client = serve(algorithm)
    exp = exp_for(algorithm, MIXED)
    f = lambda a: (math.log10(float(a["lr"])) + 2) ** 2 + float(a["dropout"]) + (a["optimizer"] != "adam")  # noqa: E731
    trials = drive(client, exp, f, 14, batch=2)
    for trial in trials:
        a = {x.name: x.value for x in trial.spec.parameter_assignments.assignments}
        assert 0.0001 <= float(a["lr"]) <= 0.1
        assert -0.5 <= float(a["momentum"]) <= 0.5
        assert Decimal(a["dropout"]) % Decimal("0.05") == 0 and 0 <= Decimal(a["dropout"]) <= Decimal("0.5")
        assert 0.01 <= float(a["scale"]) <= 100
        assert a["layers"] in {str(i) for i in range(1, 9)}
        assert 16 <= int(a["width"]) <= 512 and a["width"] == str(int(a["width"]))
        assert a["batch"] in {"16", "32", "64"} and a["optimizer"] in {"sgd", "adam", "rmsprop"}
    assert len({key(t) for t in trials}) == 14


@pytest.mark.parametrize("algorithm", MODEL_BASED)
def test_beats_random_at_equal_budget(serve, algorithm):
    """A fixed-seed bar: the median best Branin value over 3 seeds after 30 trials beats random's."""
    objectives = load_objectives()
    branin = objectives.OBJECTIVES["branin"]
    results = {}
    for name in (algorithm, "random"):
        client = serve(name)
        bests = []
        for seed in range(3):
            exp = exp_for(name, branin.parameters, name=f"branin-{seed}", settings={"random_state": seed})
            trials = drive(client, exp, branin.function, 30, batch=2)
            bests.append(min(float(t.status.observation.metrics[0].value) for t in trials))
        results[name] = statistics.median(bests)
    assert results[algorithm] < results["random"], results


@pytest.mark.parametrize("algorithm", SPACE_ALGORITHMS)
def test_reply_is_a_function_of_the_request_alone(serve, algorithm):
    """Shuffled trials; a warm server, a fresh one, one warmed on another experiment, one that
    keeps no state at all and a new server process (a restarted pod: not even the algorithm's
    instance is shared) give the same reply, and repeated calls do not grow the state store."""
    space = [double("x", "-2", "2", step="0.01"), double("y", "-2", "2", step="0.01"), integer("n", 1, 5)]
    extra = {"maxTrialCount": 1000} if algorithm == "grid" else {}
    exp = exp_for(algorithm, space, **extra)
    f = lambda a: (float(a["x"]) - 0.5) ** 2 + (float(a["y"]) + 0.5) ** 2 + int(a["n"]) * 0.1  # noqa: E731
    trials = drive(serve(algorithm), exp, f, 56, batch=4)
    trials += as_trials(points(serve(algorithm).suggest(exp, trials, count=4)), start=56, condition="Running")
    assert len(trials) == 60
    rng = random.Random(1)
    shuffled = [rng.sample(trials, len(trials)) for _ in range(3)]

    warm = serve(algorithm)
    replies = [points(warm.suggest(exp, order, count=3)) for order in [trials, *shuffled]]
    other = serve(algorithm)
    other.suggest(exp_for(algorithm, space, name="another", **extra), trials[:30], count=2)
    replies.append(points(other.suggest(exp, shuffled[0], count=3)))
    replies.append(points(serve(algorithm).suggest(exp, shuffled[1], count=3)))
    replies.append(points(serve(algorithm, state_entries=0).suggest(exp, shuffled[2], count=3)))
    replies.append(points(serve.process(algorithm).suggest(exp, shuffled[0], count=3)))
    assert all(reply == replies[0] for reply in replies), replies

    before = warm.store.stats()
    for order in shuffled * 5:
        warm.suggest(exp, order, count=3)
    assert warm.store.stats() == before, "identical requests do not grow the state store"
