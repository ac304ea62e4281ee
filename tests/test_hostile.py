"""Hostile and unlucky requests, each seen answered wrongly once, over real gRPC.

Numbers at the edges of the exact-decimal core and of doubles, oversized messages and settings,
crafted labels, bytes that do not decode: every one gets a clean status (INVALID_ARGUMENT,
RESOURCE_EXHAUSTED, FAILED_PRECONDITION) or a valid reply, never INTERNAL or UNKNOWN.
"""

from decimal import Context, Decimal, localcontext

import grpc
import pytest

from katib_services.algorithms import cma_es
from katib_services.algorithms.limits import Limits
from katib_services.services.client import trial_pb
from katib_services.services.pb import api_pb2

from .conftest import SPACE_ALGORITHMS, categorical, double, experiment, integer, points, status_of, with_resource

ALGORITHMS = SPACE_ALGORITHMS  # NAS: tests/test_nas.py
FEW_STARTUP = {"tpe": {"n_startup_trials": 2}, "multivariate-tpe": {"n_startup_trials": 2}, "bayesianoptimization": {"n_initial_points": 2}}
FEW_STARTUP["pbt"] = {"suggestion_trial_dir": "/ckpt", "n_population": 5, "truncation_threshold": 0.2}  # its required settings


def exp_for(algorithm, parameters, settings=None, **extra):
    extra.setdefault("maxTrialCount", 10 if algorithm == "grid" else 50)
    parameters, settings = with_resource(algorithm, parameters, {**FEW_STARTUP.get(algorithm, {}), **(settings or {})})
    return experiment(parameters, algorithm=algorithm, settings=settings, **extra)


def valid_reply(client, exp, trials, count):
    """The reply's assignments; each one a value the space allows, all different."""
    reply = client.suggest(exp, trials, count=count)
    got = points(reply)
    assert len(got) == count and len(set(got)) == count
    return [dict(p) for p in got], reply


def run(client, exp, rounds, batch=2, objective=None):
    """Drives an experiment: every reply valid, trials sent back Succeeded with their labels."""
    trials = []
    for _ in range(rounds):
        assignments, reply = valid_reply(client, exp, trials, batch)
        for a, item in zip(assignments, reply.parameter_assignments):
            value = objective(a) if objective else len(trials) % 7
            name = item.trial_name or f"t{len(trials):03d}"  # pbt names its trials
            trials.append(trial_pb(name, a, "Succeeded", {"accuracy": value}, dict(item.labels)))
    return trials


# -- numbers past the exact-decimal core and the double range ------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_int_up_to_1e30_works_and_beyond_the_core_is_refused(serve, algorithm):
    client = serve(algorithm)
    exp = exp_for(algorithm, [integer("n", 0, "1e30"), integer("m", 1, 3)])
    client.validate(exp)
    for trial in run(client, exp, rounds=3):
        n = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}["n"]
        assert n.isdigit() and 0 <= int(n) <= 10**30
    code, details = status_of(lambda: client.validate(exp_for(algorithm, [integer("n", 0, "1e40"), integer("m", 1, 3)])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert 'spec.parameters[0] ("n").feasibleSpace.max' in details and "significant digits" in details


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_trial_values_that_are_not_points_make_the_trial_foreign(serve, algorithm):
    client = serve(algorithm)
    exp = exp_for(algorithm, [double("x", "0", "1", step="0.1"), integer("n", 1, 4)])
    trials = [
        trial_pb(f"other-{i}", {"x": x, "n": "2"}, "Succeeded", {"accuracy": "0.9"})
        for i, x in enumerate(["1e100", "1e-999999", "0.15", "-0", "0.1000000000000000000000000000000000000001", "٣", "NaN", "1" * 200])
    ]
    valid_reply(client, exp, trials, 3)
    valid_reply(client, exp, trials, 3)  # and again: nothing was poisoned


def test_grid_with_29_significant_digits_runs_out_exactly(serve):
    client = serve("grid")
    low = "1.0000000000000000000000000001"  # 29 significant digits
    exp = experiment([double("x", low, "1.0000000000000000000000000005", step="1e-28")], algorithm="grid", maxTrialCount=5)
    trials = run(client, exp, rounds=5, batch=1)
    values = [Decimal(t.spec.parameter_assignments.assignments[0].value) for t in trials]
    with localcontext(Context(prec=50)):
        assert sorted(values) == [Decimal(low) + k * Decimal("1e-28") for k in range(5)]
    code, _ = status_of(lambda: client.suggest(exp, trials, count=1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    "parameter,field,text",
    [
        (double("x", 0, "1e400"), "feasibleSpace.max", "beyond the range of a double"),
        (double("x", "-1e309", 0), "feasibleSpace.min", "beyond the range of a double"),
        (double("x", "1e-400", 1, distribution="logUniform"), "feasibleSpace.min", "beyond the range of a double"),
        (double("x", 0, 1, step="1e-400"), "feasibleSpace.step", "beyond the range of a double"),
        (double("x", "0", "1", step="1e-40"), "feasibleSpace.step", "significant digits"),
        (double("x", "NaN", "1"), "feasibleSpace.min", "is not a number"),
        (double("x", "0x10", "1"), "feasibleSpace.min", "is not a number"),
        (double("x", "٣", "9"), "feasibleSpace.min", "is not a number"),
        (integer("n", "1e999", "1e1000"), "feasibleSpace.min", "beyond the range of a double"),
        (double("x", 0, 1, step="-0"), "feasibleSpace.step", "must be greater than 0"),
    ],
)
@pytest.mark.parametrize("rpc", ["validate", "suggest"])
def test_hostile_bounds_are_invalid_argument_naming_the_field(serve, parameter, field, text, rpc):
    client = serve("random")
    exp = experiment([parameter])
    call = (lambda: client.validate(exp)) if rpc == "validate" else (lambda: client.suggest(exp))
    code, details = status_of(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f'spec.parameters[0] ("{parameter["name"]}").{field}' in details and text in details, details


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_widest_double_range_gives_distinct_finite_values(serve, algorithm):
    client = serve(algorithm)
    step = {"step": "1e306"} if algorithm == "grid" else {}
    exp = exp_for(algorithm, [double("x", "-1e308", "1e308", **step), double("y", "-1e308", "1e308", **step)])
    client.validate(exp)
    for trial in run(client, exp, rounds=4, batch=3):
        for a in trial.spec.parameter_assignments.assignments:
            assert -1e308 <= float(a.value) <= 1e308


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_min_equal_max_is_a_constant_parameter(serve, algorithm):
    """Katib's webhook allows it: its own hyperband example has num-epochs 1..1."""
    client = serve(algorithm)
    step = {"step": "0.1"} if algorithm == "grid" else {}
    exp = exp_for(algorithm, [integer("epochs", 1, 1), double("c", "0.5", "0.5", **step), double("lr", "0.01", "0.1", step="0.01"), integer("k", 1, 9)])
    client.validate(exp)
    for trial in run(client, exp, rounds=3):
        a = {x.name: x.value for x in trial.spec.parameter_assignments.assignments}
        assert a["epochs"] == "1" and a["c"] == "0.5"


@pytest.mark.parametrize("algorithm", ["random", "tpe", "bayesianoptimization"])
def test_a_batch_never_repeats_a_point_and_a_tiny_space_is_refused(serve, algorithm):
    client = serve(algorithm)
    tiny = exp_for(algorithm, [double("x", "1", "1.0000000000000004"), categorical("c", "a", "b")])  # 3 doubles x 2
    got, _ = valid_reply(client, tiny, [], 6)
    assert len(got) == 6
    code, details = status_of(lambda: client.suggest(tiny, count=7))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "has only 6" in details


# -- messages that fit, work that is bounded ----------------------------------------------------------


def test_thousands_of_problems_fit_in_one_short_message(serve):
    client = serve("random")
    exp = experiment([double(f"p{i}", "b", "a") for i in range(900)])
    code, details = status_of(lambda: client.validate(exp))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(details.encode()) <= 4096 and "more problem(s)" in details
    assert details.startswith('spec.parameters[0] ("p0").feasibleSpace.min: "b" is not a number')


@pytest.mark.parametrize("rpc", ["validate", "suggest"])
def test_a_huge_name_is_cut_in_the_message(serve, rpc):
    client = serve("random")
    exp = experiment([double("x", 0, 1)], algorithm="a" * 100_000)
    call = (lambda: client.validate(exp)) if rpc == "validate" else (lambda: client.suggest(exp))
    code, details = status_of(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown algorithm" in details and "(100000 characters)" in details and len(details) < 1000


@pytest.mark.parametrize(
    "algorithm,settings,field",
    [
        ("cmaes", {"popsize": 10**7}, "popsize"),
        ("tpe", {"n_ei_candidates": 10**9}, "n_ei_candidates"),
        ("tpe", {"n_EI_candidates": 10**9}, "n_EI_candidates"),
        ("multivariate-tpe", {"n_ei_candidates": 10**8}, "n_ei_candidates"),
        ("random", {"random_state": "9" * 401}, "random_state"),
        ("tpe", {"n_ei_candidates": "9" * 401}, "n_ei_candidates"),
        ("bayesianoptimization", {"n_initial_points": 10**9}, "n_initial_points"),
        ("cmaes", {"sigma": "1e300"}, "sigma"),
        ("random", {"random_state": "٣"}, "random_state"),
        ("tpe", {"gamma": "nan"}, "gamma"),
    ],
)
def test_settings_have_upper_bounds(serve, algorithm, settings, field):
    client = serve(algorithm)
    code, details = status_of(lambda: client.validate(experiment([double("x", 0, 1), double("y", 0, 1)], algorithm=algorithm, settings=settings)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f'spec.algorithm.algorithmSettings["{field}"]' in details


def test_request_size_limits_name_their_flag(serve):
    client = serve("random", limits=Limits(trials=10, parameters=3, list_values=4))
    exp = experiment([double("x", 0, 1)])
    code, details = status_of(lambda: client.suggest(exp, count=1001))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-request-number" in details
    trials = [trial_pb(f"t{i}", {"x": str(i / 20)}, "Succeeded", {"accuracy": 1}) for i in range(11)]
    code, details = status_of(lambda: client.suggest(exp, trials, count=1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-trials" in details
    code, details = status_of(lambda: client.validate(experiment([double(f"x{i}", 0, 1) for i in range(4)])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-parameters" in details
    code, details = status_of(lambda: client.validate(experiment([categorical("c", *"abcde")])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-list-values" in details
    code, details = status_of(lambda: client.validate(experiment([double("x", 0, 1)], parallelTrialCount=2000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "spec.parallelTrialCount" in details


# -- labels are input ---------------------------------------------------------------------------------


def test_crafted_cmaes_labels_make_trials_foreign(serve, monkeypatch):
    asks = []
    ask = cma_es._ask
    monkeypatch.setattr(cma_es, "_ask", lambda optimizer: asks.append(1) or ask(optimizer))
    client = serve("cmaes")
    exp = exp_for("cmaes", [double("x", 0, 1), double("y", 0, 1)], settings={"popsize": 2})
    crafted = []
    for i in range(240):
        # Members from 7000: past _SKIPS per trial of their generation, but below the old bound of
        # popsize + 33 (trials + 1), under which replay asked ~7,000 samples per generation.
        labels = {"cmaes-run": "0", "cmaes-generation": str(i // 2), "cmaes-member": str(7000 + i), "cmaes-late": "1.2.3"}
        crafted.append(trial_pb(f"c{i:03d}", {"x": str(i / 240), "y": "0.5"}, "Succeeded", {"accuracy": i}, labels))
    for labels in ({"cmaes-run": "99999999", "cmaes-generation": "0", "cmaes-member": "0"}, {"cmaes-generation": "-1", "cmaes-member": "1e3"}):
        crafted.append(trial_pb(f"d{len(crafted)}", {"x": "0.25", "y": "0.75"}, "Succeeded", {"accuracy": 1}, labels))
    valid_reply(client, exp, crafted, 4)
    assert len(asks) <= cma_es._SKIPS * (len(crafted) + 4)  # replay is linear in the trials


@pytest.mark.parametrize("index", [str(2**30 - 1), str(2**30), "99999999999999999999", "-5", "١٢", "+5", " 5"])
def test_crafted_sobol_index_is_foreign(serve, index):
    client = serve("sobol")
    exp = exp_for("sobol", [double("x", 0, 1), double("y", 0, 1)])
    trials = [trial_pb("t0", {"x": "0.5", "y": "0.5"}, "Succeeded", {"accuracy": 1}, {"sobol-index": index})]
    _, reply = valid_reply(client, exp, trials, 3)
    assert [item.labels["sobol-index"] for item in reply.parameter_assignments] == ["0", "1", "2"]


# -- bytes that do not decode ---------------------------------------------------------------------------

RPCS = {
    "Suggestion": ["GetSuggestions", "ValidateAlgorithmSettings"],
    "EarlyStopping": ["GetEarlyStoppingRules", "SetTrialStatus", "ValidateEarlyStoppingSettings"],
    "DBManager": ["ReportObservationLog", "GetObservationLog", "DeleteObservationLog"],
}


@pytest.fixture
def all_servers(serve, tmp_path):
    from katib_services.services import dbmanager, earlystopping

    servers = {"Suggestion": serve("random").address}
    started = [earlystopping.start("medianstop", "127.0.0.1:0"), dbmanager.start(str(tmp_path / "db.sqlite"), "127.0.0.1:0")]
    servers["EarlyStopping"], servers["DBManager"] = (s.address for s in started)
    yield servers
    for server in started:
        server.shutdown(grace=1)


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x02\xc3\x28", b"\x0a" * 10])
def test_every_rpc_answers_invalid_argument_to_undecodable_bytes(all_servers, payload):
    for service, methods in RPCS.items():
        channel = grpc.insecure_channel(all_servers[service])
        for method in methods:
            call = channel.unary_unary(f"/api.v1.beta1.{service}/{method}")
            code, details = status_of(lambda: call(payload, timeout=60))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (service, method, code, details)
    health = grpc.insecure_channel(all_servers["Suggestion"]).unary_unary("/grpc.health.v1.Health/Check")
    assert status_of(lambda: health(b"\xff\xff\xff", timeout=60))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_enum_numbers_and_unknown_fields_are_handled(serve):
    client = serve("random")
    exp = experiment([double("x", 0, 1)])
    exp.spec.parameter_specs.parameters[0].parameter_type = 77
    exp.spec.objective.type = 9
    code, details = status_of(lambda: client.validate(exp))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "parameterType: is unknown (77)" in details
    good = experiment([double("x", 0, 1)])
    trial = trial_pb("t", {"x": "0.5"}, "Succeeded", {"accuracy": 1})
    trial.status.condition = 42  # a condition Katib may add one day
    request = api_pb2.GetSuggestionsRequest(experiment=good, trials=[trial], current_request_number=2)
    data = request.SerializeToString() + b"\xa0\x06\x01"  # and an unknown field 100
    reply = api_pb2.GetSuggestionsReply.FromString(client.channel.unary_unary("/api.v1.beta1.Suggestion/GetSuggestions")(data, timeout=60))
    assert len(reply.parameter_assignments) == 2
