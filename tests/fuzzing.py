"""The fuzz suite's parts: hostile but well-formed messages (hypothesis strategies), raw byte
mutations, and the checks every answer must pass.

Used by tests/test_fuzz.py (a few hundred cases per RPC in CI, `--hypothesis-profile=deep` for
10,000) and bench/fuzz.py (which runs that and prints the table quoted in the README).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict

import grpc
from hypothesis import strategies as st

from katib_services.algorithms import registry
from katib_services.algorithms.errors import InvalidSpec
from katib_services.algorithms.limits import Limits
from katib_services.services import suggestion
from katib_services.services.pb import api_pb2

SLOW_SECONDS = 10.0  # bench/fuzz.py fails on a slower call (a measurement, so not asserted in the tests)
# A bug's codes, and a call still running at the client's timeout (30 s, three times the 10 s bound
# that bench/fuzz.py checks): the fuzz client never cancels, so DEADLINE_EXCEEDED or CANCELLED
# means a call that hangs or does unbounded work.
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}

# -- numbers and strings --------------------------------------------------------------------------------

EDGE_NUMBERS = [
    "0", "1", "-1", "0.1", "0.5", "2", "10", "100", "-0", "+3", "1e-5", "1e30", "1e40", "-1e30",
    "1e308", "-1e308", "1.7976931348623157e308", "1e309", "1e400", "-1e400", "5e-324", "1e-400",
    "NaN", "nan", "inf", "-inf", "Infinity", "1e999", "0x10", "1_000", "٣", "١٢", "", " ", "1.",
    ".5", "1e", "e5", "--1", "0.1000000000000000000000000000001", "12345678901234567890123456789",
    "9" * 401, "1e2147483648", "2147483648", "9223372036854775808", "1" * 120, "abc", "\x00", "1,5",
]
NAMES = ["x", "y", "lr", "layers", "", "a" * 300, "π", "\x00name", "x y", "../../etc", "x" * 64]


def number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(EDGE_NUMBERS),
        st.integers(-(10**40), 10**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
        st.text(max_size=12),
    )


def small_number() -> st.SearchStrategy[str]:
    """Mostly ordinary numbers, so that most experiments are valid and reach the algorithms."""
    return st.one_of(st.integers(-50, 50).map(str), st.floats(-10, 10, allow_nan=False).map(repr), st.sampled_from(["0.1", "0.01", "1e-3"]))


# -- experiments ------------------------------------------------------------------------------------------
# Most generated experiments are valid, so that the algorithms run on them; each has a small chance
# of a hostile field, and a few are hostile throughout.

VALID_RANGES = [
    ("0", "1"), ("-1", "1"), ("0.001", "0.1"), ("1", "1"), ("0.5", "0.5"), ("-1e308", "1e308"), ("1e-300", "1e300"),
    ("1", "1.0000000000000004"), ("0", "1e30"), ("1.0000000000000000000000000001", "1.0000000000000000000000000009"),
    ("-5", "5"), ("1", "100"), ("5e-324", "1e-320"),
]
STEPS = ["", "", "", "0.1", "1", "0.25", "1e-28", "1e306", "3", "1e29"]


@st.composite
def valid_parameter(draw, name: str) -> api_pb2.ParameterSpec:
    p = api_pb2.ParameterSpec(name=name)
    kind = draw(st.sampled_from(["double", "double", "int", "discrete", "categorical"]))
    fs = p.feasible_space
    if kind in ("double", "int"):
        p.parameter_type = 1 if kind == "double" else 2
        low, high = draw(st.one_of(st.sampled_from(VALID_RANGES), st.tuples(st.integers(-20, 20), st.integers(0, 50)).map(lambda x: (str(x[0]), str(x[0] + x[1])))))
        if kind == "int":
            low, high = str(int(float(low))) if abs(float(low)) < 1e31 else "0", str(int(float(high))) if abs(float(high)) < 1e31 else "10"
            low, high = (low, high) if int(low) <= int(high) else (high, low)
        fs.min, fs.max = low, high
        fs.step = draw(st.sampled_from(STEPS)) if kind == "double" else draw(st.sampled_from(["", "", "1", "2", "7"]))
        fs.distribution = draw(st.sampled_from([0, 1, 2, 3, 4])) if float(low) > 0 else draw(st.sampled_from([0, 1, 3]))
    elif kind == "discrete":
        p.parameter_type = 3
        fs.list.extend(draw(st.lists(st.sampled_from(["1", "2", "0.5", "-3", "1e10", "1e-10", "100", "7.25"]), min_size=1, max_size=5, unique=True)))
    else:
        p.parameter_type = 4
        fs.list.extend(draw(st.lists(st.sampled_from(["a", "b", "sgd", "adam", "", "π", "x" * 70]), min_size=1, max_size=5, unique=True)))
    return p


@st.composite
def hostile_parameter(draw, name: str) -> api_pb2.ParameterSpec:
    p = api_pb2.ParameterSpec(name=name)
    p.parameter_type = draw(st.sampled_from([1, 1, 2, 2, 3, 4, 4, 0, 99]))
    fs = p.feasible_space
    fs.min, fs.max = draw(number_text()), draw(number_text())
    fs.step = draw(st.one_of(st.just(""), small_number(), number_text()))
    fs.distribution = draw(st.sampled_from([0, 0, 1, 2, 3, 4, 77]))
    if p.parameter_type in (3, 4) or draw(st.integers(0, 9)) == 0:
        values = st.one_of(small_number(), number_text()) if p.parameter_type == 3 else st.text(max_size=8)
        fs.list.extend(draw(st.lists(values, max_size=8)))
        if p.parameter_type in (3, 4) and draw(st.booleans()):
            fs.ClearField("min"), fs.ClearField("max"), fs.ClearField("step")
    return p


def setting_values(setting) -> st.SearchStrategy[str]:
    """Values a setting accepts, its edges included."""
    if setting.choices:
        valid = st.sampled_from(setting.choices)
    elif setting.kind is int:
        low = int(setting.low if setting.low is not None else 0)
        valid = st.one_of(st.integers(low, low + 30), st.sampled_from([int(setting.high), low])).map(str)
    elif setting.kind is float:
        low = setting.low if setting.low is not None else 0.0
        valid = st.floats(low, min(setting.high, low + 10), exclude_min=setting.low_open, exclude_max=setting.high_open).map(repr)
    elif setting.kind is str:  # a path (pbt's suggestion_trial_dir)
        valid = st.sampled_from(["/var/log/katib/checkpoints/", "/ckpt", "ckpt", "/a b/π", "../x"])
    else:
        valid = st.sampled_from(["true", "false"])
    return valid


@st.composite
def experiment(draw, algorithm: str | None = None, hostile: float = 0.04, early_stopping: bool | None = None) -> api_pb2.Experiment:
    """An experiment; each field is hostile with probability `hostile` (decided by a drawn Random,
    since hypothesis favours the edges of the ranges it draws from)."""
    rng = draw(st.randoms(use_true_random=True))

    def rarely(scale: float = 1.0) -> bool:
        return rng.random() < hostile * scale

    e = api_pb2.Experiment(name=draw(st.text(max_size=30)) if rarely() else rng.choice(["exp", "exp-2"]))
    spec = e.spec
    count = rng.choice([0, 8, 10_000]) if rarely(0.5) else rng.randint(1, 4)
    if count == 10_000:
        spec.parameter_specs.parameters.extend(api_pb2.ParameterSpec(name=f"p{i}", parameter_type=1) for i in range(count))
    else:
        names = draw(st.lists(st.sampled_from(NAMES), min_size=count, max_size=count)) if rarely() else [f"p{i}" for i in range(count)]
        for name in names:
            p = draw(hostile_parameter(name) if rarely(0.5) else valid_parameter(name))
            if algorithm == "grid" and p.parameter_type == 1 and not p.feasible_space.step and rng.random() < 0.9:
                p.feasible_space.step = rng.choice(["0.25", "1", "1e306"])
            spec.parameter_specs.parameters.append(p)
    if algorithm in RESOURCE_TOPS and not rarely():
        _add_resource(spec, rng)
    spec.objective.type = rng.choice([0, 9]) if rarely(0.5) else rng.choice([1, 2])
    spec.objective.objective_metric_name = rng.choice(["", "accuracy"]) if rarely(0.5) else "loss"
    spec.objective.goal = draw(st.floats(allow_nan=True, allow_infinity=True)) if rarely() else 0.0
    if algorithm is None:
        algorithm = rng.choice(["", "nope", "x" * 100_000]) if rarely(0.5) else rng.choice(registry.names())
    spec.algorithm.algorithm_name = algorithm
    if algorithm in NAS and not rarely():  # NAS algorithms read spec.nasConfig (rarely: parameters, which they refuse)
        spec.parameter_specs.ClearField("parameters")
        spec.nas_config.CopyFrom(_nas_config(draw, rng, algorithm, rarely))
    schema = registry.get(algorithm).schema.settings if registry.get(algorithm) else {}
    required = [name for name in sorted(schema) if schema[name].required]  # present, but now and then left out
    optional = [name for name in sorted(schema) if not schema[name].required]
    for setting in required + rng.sample(optional, rng.randint(0, min(3, len(optional)))):
        if setting in required and rarely():
            continue
        value = draw(number_text()) if rarely() else draw(setting_values(schema[setting]))
        spec.algorithm.algorithm_settings.add(name=setting, value=value)
    if algorithm in RESOURCE_TOPS and not rarely():
        for name, value in _resource_settings(spec, algorithm, rng):
            spec.algorithm.algorithm_settings.add(name=name, value=value)  # later settings win
    if rarely(0.5):
        spec.algorithm.algorithm_settings.add(name=draw(st.sampled_from(["unknown", "", "x" * 300, *schema])), value=draw(number_text()))
    spec.max_trial_count = draw(st.integers(-(2**31), 2**31 - 1)) if rarely() else rng.choice([0, rng.randint(1, 30)])
    spec.parallel_trial_count = draw(st.integers(-(2**31), 2**31 - 1)) if rarely() else rng.randint(0, 8)
    if algorithm == "darts" and not rarely():
        spec.parallel_trial_count = rng.choice([0, 1])  # every darts trial gets the same search: one at a time
    if early_stopping or (early_stopping is None and rng.random() < 0.5):
        from katib_services.earlystopping.rules import RULES

        early = spec.early_stopping
        early.algorithm_name = rng.choice(["", "nope"]) if rarely() else rng.choice(sorted(RULES))
        rule = RULES.get(early.algorithm_name)
        for setting in rng.sample(sorted(rule.schema.settings), rng.randint(0, len(rule.schema.settings))) if rule else []:
            value = draw(number_text()) if rarely() else draw(setting_values(rule.schema.settings[setting]))
            early.algorithm_settings.add(name=setting, value=value)
    return e


# Neural architecture search: a nasConfig instead of parameters; trials mostly architectures of its space.
NAS = ("darts", "enas")
DARTS_TYPES = ("separable_convolution", "dilated_convolution", "avg_pooling", "max_pooling", "skip_connection")
NAS_TRIALS = 20  # at most this many of a NAS experiment's trials are its own architectures (bounded training)


def _nas_config(draw, rng, algorithm: str, rarely) -> api_pb2.NasConfig:
    config = api_pb2.NasConfig()
    graph = config.graph_config
    graph.num_layers = rng.choice([0, -1, 33, 2**31 - 1]) if rarely() else rng.randint(1, 4)
    for sizes in (graph.input_sizes, graph.output_sizes):
        sizes.extend(rng.choice([[], [0], [-3], list(range(1, 20))]) if rarely() else [rng.randint(1, 64) for _ in range(rng.randint(1, 3))])
    for i in range(rng.choice([0, 40]) if rarely(0.5) else rng.randint(1, 3)):
        op = config.operations.operation.add()
        if algorithm == "darts":
            op.operation_type = draw(st.text(max_size=10)) if rarely() else rng.choice(DARTS_TYPES)
            sizes = rng.sample(["3", "5", "7"], rng.randint(1, 3))
            p = draw(hostile_parameter("filter_size")) if rarely() else api_pb2.ParameterSpec(name="filter_size", parameter_type=4)
            p.feasible_space.list.extend([] if rarely() else sizes)
            if op.operation_type != "skip_connection" or rarely():
                op.parameter_specs.parameters.append(p)
            continue
        op.operation_type = draw(st.text(max_size=10)) if rarely() else rng.choice(["conv", "dense", "pool", "identity"])
        for j in range(rng.randint(0, 3)):
            p = draw(hostile_parameter(f"q{j}") if rarely(0.5) else valid_parameter(f"q{j}"))
            if p.parameter_type == 1 and not p.feasible_space.step and not rarely():
                p.feasible_space.step = rng.choice(["0.25", "1"])  # an operation's double needs a step
            op.parameter_specs.parameters.append(p)
    return config


def _nas_assignment(draw, rng, space, index: int) -> dict[str, str]:
    """A point of the NAS space as the service formats it, now and then corrupted, or garbage."""
    if space is not None and index < NAS_TRIALS and rng.random() < 0.8:
        assignment = space.format(space.point(rng.randrange(space.count)))
        if rng.random() < 0.1:
            name = rng.choice(sorted(assignment))
            assignment[name] = rng.choice(["", assignment[name][:-1], assignment[name] + " ", draw(st.text(max_size=12))])
        return assignment
    return {
        "architecture": rng.choice(["", "[[0]]", "[[1], [0, 1]]", "[" * 5000, "[[0], [0, 2]]", "[[-1]]", "[[true]]", draw(st.text(max_size=20))]),
        "nn_config": draw(st.text(max_size=20)),
    }




# hyperband and asha need a resource parameter (any int or double: its feasibleSpace is not
# sampled) and their top resource; most of their experiments get both, the rest stay as drawn.
RESOURCE_TOPS = {"hyperband": "r_l", "asha": "max_resource"}


def _add_resource(spec: api_pb2.ExperimentSpec, rng) -> None:
    p = api_pb2.ParameterSpec(name="resource", parameter_type=rng.choice([1, 2]))
    p.feasible_space.min, p.feasible_space.max = rng.choice([("1", "1"), ("1", "100"), ("0.5", "2")])
    if p.parameter_type == 2 and "." in p.feasible_space.min:
        p.feasible_space.min = "1"
    spec.parameter_specs.parameters.append(p)


def _resource_settings(spec: api_pb2.ExperimentSpec, algorithm: str, rng) -> list[tuple[str, str]]:
    numeric = [p.name for p in spec.parameter_specs.parameters if p.parameter_type in (1, 2)]
    settings = [("resource_name", rng.choice(numeric) if numeric else "resource")]
    top = rng.choice(["1", "2", "9", "27", "100", "0.5", "1e6", "3.3"])
    settings.append((RESOURCE_TOPS[algorithm], top))
    if algorithm == "asha" and rng.random() < 0.5:
        settings.append(("min_resource", rng.choice(["1", "0.1", "3", top])))
    if rng.random() < 0.3:
        settings.append(("eta", rng.choice(["2", "3", "1.5", "4.7", "1000"])))
    return settings


LABELS = [
    "cmaes-run", "cmaes-generation", "cmaes-member", "cmaes-late", "sobol-index", "enas-index", "other",
    "hyperband-round", "hyperband-bracket", "hyperband-rung", "hyperband-config", "asha-bracket", "asha-rung", "asha-config",
]


@st.composite
def trials(draw, e: api_pb2.Experiment, max_size: int = 60) -> list[api_pb2.Trial]:
    """Trials of the experiment: mostly points of its space (bounds, list values, small numbers),
    some foreign values, crafted labels, every condition, numeric and hostile metric values."""
    rng = draw(st.randoms(use_true_random=True))
    out = []
    parameters = list(e.spec.parameter_specs.parameters)[:20]
    metric = e.spec.objective.objective_metric_name or "loss"
    nas_space = None
    if e.spec.HasField("nas_config"):
        try:
            nas_space = algorithm_space(e, Limits())
        except InvalidSpec:  # trials of an invalid experiment are garbage
            pass
    schedule = _Schedule(e.spec.algorithm.algorithm_name, rng) if e.spec.algorithm.algorithm_name in RESOURCE_TOPS else None
    resource = {s.name: s.value for s in e.spec.algorithm.algorithm_settings}.get("resource_name")
    configurations: dict[str, dict] = {}  # a configuration's first assignment, which its promotions repeat
    for i in range(rng.randint(0, max_size // 3) if rng.random() < 0.7 else rng.randint(0, max_size)):
        t = api_pb2.Trial(name=rng.choice(NAMES) if rng.random() < 0.05 else f"t{i:03d}")
        labels, config, level = schedule.labels(i) if schedule and rng.random() < 0.8 else ({}, str(-i - 1), "")
        earlier = configurations.setdefault(config, {})
        if e.spec.algorithm.algorithm_name == "pbt" and out and rng.random() < 0.7:
            pbt_member(t, e.name, out, rng)
        if e.spec.HasField("nas_config"):
            for name, value in _nas_assignment(draw, rng, nas_space, i).items():
                t.spec.parameter_assignments.assignments.add(name=name, value=value)
            if rng.random() < 0.9:
                t.spec.labels["enas-index"] = str(i)
        for p in parameters:
            fs = p.feasible_space
            if rng.random() < 0.05:
                value = draw(number_text())
            elif p.name == resource and level:
                value = level
            else:
                value = earlier.setdefault(p.name, rng.choice([fs.min, fs.max, *fs.list, str(rng.randint(-3, 3)), repr(rng.random())]))
            t.spec.parameter_assignments.assignments.add(name=p.name, value=value)
        t.spec.labels.update(labels)
        if rng.random() < 0.15:
            for key in rng.sample(LABELS, rng.randint(1, 4)):
                t.spec.labels[key] = draw(number_text()) if rng.random() < 0.5 else str(rng.choice([0, 1, 2, 7, 64, 2**30 - 1, 2**31]))
        t.status.condition = rng.choice([2, 2, 2, 2, 0, 1, 3, 4, 5, 6, 7, 42])
        if rng.random() < 0.85:
            value = draw(number_text()) if rng.random() < 0.1 else repr(rng.uniform(-5, 5))
            t.status.observation.metrics.add(name=metric, value=value)
        out.append(t)
    return out


class _Schedule:
    """Labels and resources that mostly fit a small schedule (the first `size` trials fill a base
    rung, later ones claim promotions of them), so that rungs complete and promotions happen."""

    LADDERS = [("1", "3", "9"), ("3", "9"), ("1", "3", "9", "27"), ("9", "27"), ("1", "2"), ("1.0", "3.0", "9.0"), ("2",)]

    def __init__(self, algorithm: str, rng):
        self.algorithm, self.rng = algorithm, rng
        self.ladder = rng.choice(self.LADDERS)
        self.size = rng.choice([1, 2, 3, 5, 9, 27])
        self.bracket = rng.choice([0, 1, 2, 3] if algorithm == "hyperband" else [0, 0, 1])

    def labels(self, i: int) -> tuple[dict[str, str], str, str]:
        """(labels, configuration, resource) of trial i."""
        rng = self.rng
        rung = 0 if i < self.size else rng.choice([1, 1, 2])
        config = str(i if i < self.size else rng.randrange(self.size))
        resource = self.ladder[min(rung, len(self.ladder) - 1)] if rng.random() < 0.9 else rng.choice(["1", "0.5", "100"])
        if self.algorithm == "hyperband":
            keys = ("hyperband-round", "hyperband-bracket", "hyperband-rung", "hyperband-config")
            values = (0 if rng.random() < 0.9 else 1, self.bracket, rung, config)
        else:
            keys, values = ("asha-bracket", "asha-rung", "asha-config"), (self.bracket, self.bracket + rung, config)
        return {k: str(v) for k, v in zip(keys, values)}, config, resource


def pbt_member(t: api_pb2.Trial, experiment_name: str, earlier: list[api_pb2.Trial], rng) -> None:
    """Names and labels a trial as pbt names its members (generation, slot, parent), sometimes wrongly."""
    generation, slot = rng.choice([0, 0, 1, 1, 2, 3, 99]), rng.randint(0, 12)
    t.name = f"{experiment_name}-g{generation}m{slot}-{rng.randrange(16**6):06x}"
    t.spec.labels["pbt.suggestion.katib.kubeflow.org/generation"] = str(generation if rng.random() < 0.9 else generation + 1)
    if generation or rng.random() < 0.1:
        t.spec.labels["pbt.suggestion.katib.kubeflow.org/parent"] = rng.choice(earlier).name


@st.composite
def suggestion_request(draw, algorithm: str | None = None) -> api_pb2.GetSuggestionsRequest:
    e = draw(experiment(algorithm))
    rng = draw(st.randoms(use_true_random=True))
    count = rng.choice([-1, 0, 12, 100, 1000, 1001, 2**31 - 1]) if rng.random() < 0.1 else rng.randint(1, 6)
    if e.spec.algorithm.algorithm_name == "darts" and rng.random() < 0.8:
        count = 1  # its space has one point
    return api_pb2.GetSuggestionsRequest(
        experiment=e, trials=draw(trials(e)), current_request_number=count, total_request_number=draw(st.integers(-(2**31), 2**31 - 1))
    )


def mutations(message_bytes: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Raw byte mutations of serialized messages: flips, truncations, insertions, duplicated tails."""

    @st.composite
    def mutate(draw):
        data = bytearray(draw(message_bytes))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate"]))
            position = draw(st.integers(0, max(len(data), 1)))
            if kind == "flip" and data:
                data[min(position, len(data) - 1)] = draw(st.integers(0, 255))
            elif kind == "truncate":
                del data[position:]
            elif kind == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            else:
                data += data[position:]
        return bytes(data)

    return mutate()


# -- checks and statistics ----------------------------------------------------------------------------


class Recorder:
    """Per-RPC counts of status codes and the slowest call; written as JSON at the end if asked."""

    def __init__(self):
        self.codes: dict[str, Counter] = defaultdict(Counter)
        self.slowest: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def call(self, rpc: str, function, *args, **kwargs):
        """Calls, checks the code is not FORBIDDEN and records the time taken; returns (reply, code, details)."""
        start = time.perf_counter()
        try:
            reply, code, details = function(*args, **kwargs), grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            reply, code, details = None, error.code(), error.details()
        elapsed = time.perf_counter() - start
        with self.lock:
            self.codes[rpc][code.name] += 1
            self.slowest[rpc] = max(self.slowest[rpc], elapsed)
        assert code not in FORBIDDEN, f"{rpc} answered {code.name}: {details}"
        return reply, code, details

    def save(self, path: str, extra: dict) -> None:
        data = {"codes": {rpc: dict(c) for rpc, c in self.codes.items()}, "slowest": dict(self.slowest), **extra}
        with open(path, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)


RECORDER = Recorder()
REPORT = os.environ.get("KATIB_FUZZ_REPORT")  # bench/fuzz.py reads the statistics from this file


def check_suggestions(request: api_pb2.GetSuggestionsRequest, reply: api_pb2.GetSuggestionsReply, limits: Limits) -> None:
    """An OK reply has exactly current_request_number assignments, each a point of the space, all
    different (checked with the core's own parser, and for the names independently)."""
    count = request.current_request_number
    assert len(reply.parameter_assignments) == count, (len(reply.parameter_assignments), count)
    try:
        space = algorithm_space(request.experiment, limits)
    except InvalidSpec as error:
        raise AssertionError(f"an invalid experiment got suggestions: {error}") from None
    names = set(space.names)
    seen = set()
    for item in reply.parameter_assignments:
        assignment = {a.name: a.value for a in item.assignments}
        assert set(assignment) == names and len(item.assignments) == len(names)
        point = space.key_of(assignment)
        assert point is not None, f"not a point of the space: {assignment}"
        assert point not in seen, f"repeated in the batch: {assignment}"
        seen.add(point)
        for key, value in item.labels.items():
            assert len(key) <= 63 and len(value) <= 63, item.labels


def algorithm_space(e: api_pb2.Experiment, limits: Limits):
    """The space the service verifies replies against, validated by the service's own `prepare`:
    the experiment's parameters, or the algorithm's own (hyperband's and asha's resource takes the
    values of their schedule; a NAS algorithm's points are architectures)."""
    return suggestion.prepare(e, "random", limits)[1].space  # "random": the fuzz server's --algorithm
