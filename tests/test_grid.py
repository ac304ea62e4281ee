"""grid over real gRPC: every point once, exact decimals, failure retries, exhaustion, validation."""

import itertools

import grpc
import pytest

from katib_services.services.client import trial_pb

from .conftest import categorical, discrete, double, experiment, integer, points

SPACE = [double("lr", "0.1", "0.5", step="0.1"), integer("layers", 1, 3), categorical("opt", "sgd", "adam")]
ALL_POINTS = {
    tuple(sorted({"lr": lr, "layers": str(n), "opt": o}.items()))
    for lr, n, o in itertools.product(["0.1", "0.2", "0.3", "0.4", "0.5"], (1, 2, 3), ("sgd", "adam"))
}  # 30 points, written as a user expects them


def as_trials(pts, condition="Succeeded", start=0):
    return [
        trial_pb(f"t{i}", dict(p), condition, {"accuracy": 0.5} if condition == "Succeeded" else {})
        for i, p in enumerate(pts, start)
    ]


def run_grid(client, exp, batch, trials=(), condition="Succeeded"):
    """Requests batches until every grid point is proposed; returns the proposals and all trials."""
    trials = list(trials)
    proposed = []
    while len(proposed) < len(ALL_POINTS):
        reply = points(client.suggest(exp, trials, count=min(batch, len(ALL_POINTS) - len(proposed))))
        proposed += reply
        trials += as_trials(reply, condition, start=len(trials))
    return proposed, trials


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_enumerates_every_point_exactly_once_with_exact_decimals(serve, batch):
    client = serve("grid")
    proposed, _ = run_grid(client, experiment(SPACE, algorithm="grid"), batch)
    assert len(proposed) == 30
    assert set(proposed) == ALL_POINTS  # "0.3", not "0.30000000000000004"


def test_exhausted_grid_is_failed_precondition(serve):
    client = serve("grid")
    exp = experiment(SPACE, algorithm="grid")
    _, trials = run_grid(client, exp, 5)
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(exp, trials, count=1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "the grid is exhausted: all 30 of its points already have trials" in caught.value.details()


def test_short_reply_is_never_sent(serve):
    client = serve("grid")
    exp = experiment(SPACE, algorithm="grid")
    trials = as_trials(sorted(ALL_POINTS)[:28])
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(exp, trials, count=3)  # only 2 points are left
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(points(client.suggest(exp, trials, count=2))) == 2


def test_failed_points_are_retried_only_after_unused_points(serve):
    client = serve("grid")
    exp = experiment(SPACE, algorithm="grid")
    ordered = sorted(ALL_POINTS)
    failed = as_trials(ordered[:3], "Failed")
    done = as_trials(ordered[3:20], "Succeeded", start=3)
    first = points(client.suggest(exp, failed + done, count=10))
    assert set(first) == set(ordered[20:]), "unused points come before failed ones"
    rest = as_trials(first, "Running", start=20)
    retry = points(client.suggest(exp, failed + done + rest, count=3))
    assert set(retry) == set(ordered[:3])
    # A failed point that was retried and now runs is not offered again.
    retried = as_trials(retry, "Running", start=30)
    with pytest.raises(grpc.RpcError) as caught:
        client.suggest(exp, failed + done + rest + retried, count=1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_pending_and_other_conditions_count_as_used(serve):
    client = serve("grid")
    exp = experiment(SPACE, algorithm="grid")
    ordered = sorted(ALL_POINTS)
    conditions = ["Created", "Running", "Killed", "MetricsUnavailable", "EarlyStopped", "Succeeded"]
    trials = [t for i, c in enumerate(conditions) for t in as_trials(ordered[i * 4 : i * 4 + 4], c, start=i * 4)]
    reply = points(client.suggest(exp, trials, count=6))
    assert set(reply) == set(ordered[24:])


def test_same_request_same_reply_and_restart(serve):
    exp = experiment(SPACE, algorithm="grid", settings={"random_state": 3})
    first = serve("grid")
    trials = as_trials(points(first.suggest(exp, count=10)))
    again = points(first.suggest(exp, trials, count=5))
    assert again == points(first.suggest(exp, trials, count=5))
    serve.servers[0].shutdown(grace=1)
    restarted = serve("grid")
    assert points(restarted.suggest(exp, trials, count=5)) == again


def test_order_is_shuffled_and_seeded(serve):
    client = serve("grid")
    space = [integer("a", 0, 99)]
    a = [p[0][1] for p in points(client.suggest(experiment(space, algorithm="grid", settings={"random_state": 1}), count=10))]
    b = [p[0][1] for p in points(client.suggest(experiment(space, algorithm="grid", settings={"random_state": 2}), count=10))]
    assert a != b
    assert a != sorted(a, key=int), "a prefix of the order spreads over the grid"


def test_discrete_values_are_returned_exactly_as_listed(serve):
    client = serve("grid")
    reply = points(client.suggest(experiment([discrete("k", "1.50", "0.5", "10")], algorithm="grid"), count=3))
    assert sorted(v for ((_, v),) in reply) == ["0.5", "1.50", "10"]


def test_large_stepped_double_grid(serve):
    client = serve("grid")
    exp = experiment([double("x", "0", "1", step="0.0001")], algorithm="grid", maxTrialCount=200)
    values = [v for ((_, v),) in points(client.suggest(exp, count=200))]
    assert len(set(values)) == 200
    assert all(len(v.split(".")[-1]) <= 4 for v in values), values[:5]


@pytest.mark.parametrize(
    "space,max_trials,expected",
    [
        (SPACE, 31, "spec.maxTrialCount: (31) is larger than the grid, which has 30 points; lower maxTrialCount to at most 30"),
        ([integer("a", 1, 200), integer("b", 1, 100)], 0, "spec.maxTrialCount: is unset and the grid has 20,000 points"),
        ([double("lr", "0", "1"), integer("a", 1, 3)], 3, 'spec.parameters[0] ("lr").feasibleSpace.step: is missing'),
    ],
)
def test_grid_validation(serve, space, max_trials, expected):
    client = serve("grid")
    exp = experiment(space, algorithm="grid", maxTrialCount=max_trials)
    for call in (client.validate, client.suggest):
        with pytest.raises(grpc.RpcError) as caught:
            call(exp)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in caught.value.details()


def test_large_grid_with_max_trial_count_is_valid(serve):
    client = serve("grid")
    client.validate(experiment([integer("a", 1, 200), integer("b", 1, 100)], algorithm="grid", maxTrialCount=500))
    client.validate(experiment(SPACE, algorithm="grid", maxTrialCount=30))
