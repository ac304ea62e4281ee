"""random over real gRPC: exact counts, no repeats in any condition, determinism, restarts."""

import math
from decimal import Decimal

import pytest

from katib_services.services.client import trial_pb

from .conftest import MIXED, categorical, double, experiment, integer, points

CONDITIONS = ["Created", "Running", "Succeeded", "Killed", "Failed", "MetricsUnavailable", "EarlyStopped"]


def trials_from(reply_points, start=0, condition=None):
    """Trials for the given points, cycling through every condition."""
    out = []
    for i, point in enumerate(reply_points, start):
        state = condition or CONDITIONS[i % len(CONDITIONS)]
        out.append(trial_pb(f"t{i}", dict(point), state, {"accuracy": 0.5} if state == "Succeeded" else {}))
    return out


def test_batch_has_exact_count_and_values_in_space(serve):
    client = serve("random")
    reply = client.suggest(experiment(MIXED), count=50)
    assert len(reply.parameter_assignments) == 50
    assert len(set(points(reply))) == 50
    for item in reply.parameter_assignments:
        values = {a.name: a.value for a in item.assignments}
        assert list(values) == ["lr", "layers", "dropout", "optimizer", "batch"]
        assert 0.0001 <= float(values["lr"]) <= 0.1
        assert values["layers"] in {str(i) for i in range(1, 9)}
        dropout = Decimal(values["dropout"])
        assert 0 <= dropout <= Decimal("0.5") and dropout % Decimal("0.05") == 0
        assert len(values["dropout"]) <= 4, values["dropout"]  # exact decimals: "0.35", never "0.35000000000000003"
        assert values["optimizer"] in {"sgd", "adam", "rmsprop"}
        assert values["batch"] in {"16", "32", "64"}


def test_never_repeats_a_trial_in_any_condition(serve):
    client = serve("random")
    space = [integer("a", 1, 6), categorical("b", "x", "y", "z")]  # 18 points
    exp = experiment(space)
    trials = trials_from(points(client.suggest(exp, count=12)))
    reply = client.suggest(exp, trials, count=6)
    new = points(reply)
    assert len(new) == 6 and len(set(new)) == 6
    existing = {tuple(sorted((a.name, a.value) for a in t.spec.parameter_assignments.assignments)) for t in trials}
    assert not existing & set(new), "re-proposed an existing trial"
    assert len(existing | set(new)) == 18


def test_repeats_only_when_space_is_too_small(serve):
    client = serve("random")
    exp = experiment([categorical("b", "x", "y", "z")])
    trials = trials_from(points(client.suggest(exp, count=2)), condition="Succeeded")
    reply = points(client.suggest(exp, trials, count=3))
    assert len(reply) == 3
    taken = {tuple(sorted((a.name, a.value) for a in t.spec.parameter_assignments.assignments)) for t in trials}
    assert len(set(reply) - taken) == 1, "the one unused point must come first"


def test_same_request_gives_same_reply(serve):
    client = serve("random")
    exp = experiment(MIXED)
    trials = trials_from(points(client.suggest(exp, count=5)))
    assert points(client.suggest(exp, trials, count=3)) == points(client.suggest(exp, trials, count=3))
    other = serve("random")  # a second replica agrees
    assert points(other.suggest(exp, trials, count=3)) == points(client.suggest(exp, trials, count=3))


def test_random_state_changes_the_sequence(serve):
    client = serve("random")
    a = points(client.suggest(experiment(MIXED, settings={"random_state": 1}), count=3))
    b = points(client.suggest(experiment(MIXED, settings={"random_state": 2}), count=3))
    assert a != b


def test_restart_continues_without_repeats(serve):
    exp = experiment([integer("a", 1, 10), integer("b", 1, 10)])  # 100 points
    trials = []
    client = serve("random")
    for round_ in range(10):
        if round_ == 5:  # a new pod: nothing but the request carries state
            expected = points(client.suggest(exp, trials, count=8))
            serve.servers[0].shutdown(grace=1)
            client = serve("random")
            assert points(client.suggest(exp, trials, count=8)) == expected, "the new pod gives the same reply"
        reply = points(client.suggest(exp, trials, count=8))
        trials += trials_from(reply, start=len(trials))
    seen = [tuple(sorted((a.name, a.value) for a in t.spec.parameter_assignments.assignments)) for t in trials]
    assert len(seen) == 80 and len(set(seen)) == 80


def test_foreign_and_broken_trials_do_not_crash(serve):
    client = serve("random")
    trials = [
        trial_pb("other-exp-1", {"unrelated": "7"}, "Succeeded", {"accuracy": "0.9"}),
        trial_pb("t1", {"lr": "not-a-number", "layers": "3"}, "Succeeded", {"accuracy": "unavailable"}),
        trial_pb("t2", {"lr": "0.01", "layers": "99"}, "Failed", {"accuracy": "nan"}),
        trial_pb("t3", {"lr": "0.01", "layers": "2"}, "Succeeded", {"loss": "1"}),
    ]
    reply = client.suggest(experiment([double("lr", "0.001", "0.1"), integer("layers", 1, 4)]), trials, count=4)
    assert len(reply.parameter_assignments) == 4


@pytest.mark.parametrize(
    "distribution,lo,hi",
    [("normal", "-3", "5"), ("logNormal", "0.001", "10"), ("logUniform", "1", "1000"), ("uniform", "-1", "1")],
)
def test_distributions_respect_bounds(serve, distribution, lo, hi):
    client = serve("random")

    def draw(param, count=300):
        reply = client.suggest(experiment([param]), count=count)
        return [float(item.assignments[0].value) for item in reply.parameter_assignments]

    values = draw(double("x", lo, hi, distribution=distribution))
    # A batch never repeats a point: at most as many ints as the range holds.
    ints = draw(integer("x", lo, hi, distribution=distribution), min(300, int(hi) - int(lo) + 1)) if "." not in lo else []
    assert all(v.is_integer() for v in ints)
    assert all(float(lo) <= v <= float(hi) for v in values + ints)
    # The shape, on the doubles (distinct ints are pushed apart by the no-repeat rule).
    log = distribution.startswith("log")
    scale = [math.log(v) for v in values] if log else values
    low, high = (math.log(float(lo)), math.log(float(hi))) if log else (float(lo), float(hi))
    middle = (low + high) / 2
    assert abs(sorted(scale)[len(scale) // 2] - middle) < (high - low) * 0.1
    within_one_sigma = sum(abs(v - middle) <= (high - low) / 6 for v in scale) / len(scale)
    if distribution.endswith("ormal"):  # sigma is a sixth of the range: about 68% within one sigma
        assert within_one_sigma > 0.55
    else:  # uniform in the (log) range: about a third
        assert within_one_sigma < 0.45
