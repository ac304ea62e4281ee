"""tpe, multivariate-tpe and sobol specifics: Katib's settings, batches, the Sobol sequence."""

import grpc
import pytest

from katib_services.services.client import trial_pb

from .conftest import double, experiment, integer, points

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
