"""Neural architecture search: darts and enas over real gRPC, and the enas controller in process.

Katib's own NAS examples validate; every proposal parses the way Katib's DARTS trial
(run_trial.py) and ENAS trial (RunTrial.py, ModelConstructor.py) parse it; exact counts, pending
and failed architectures never proposed again, repeated requests, restarts, trial order and the
state store change no reply; every setting and the nasConfig are validated naming the field; the
controller's gradient matches finite differences, and enas learns (bench/nas.py's reward, small).
"""

import csv
import dataclasses
import importlib.util
import itertools
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from katib_services.algorithms import registry
from katib_services.algorithms.base import Request
from katib_services.algorithms.enas import INDEX, _Learner, learning_events
from katib_services.algorithms.enas_controller import Architecture, Config, Controller, size
from katib_services.algorithms.errors import Cancelled, Problems
from katib_services.algorithms.history import History, parse_trial
from katib_services.runner import spec as runner_spec
from katib_services.services import convert
from katib_services.services.client import experiment_pb, trial_pb
from katib_services.statestore import StateStore

from .conftest import categorical, double, experiment, integer, nas_config, nas_experiment, operation, points
from .test_local import manifest, result, run

DATA = Path(__file__).resolve().parent / "data"
BENCH = Path(__file__).resolve().parent.parent / "bench" / "nas.py"


def katib(text: str):
    """What Katib's NAS trials do with an assignment: ' back to ", then JSON."""
    return json.loads(text.replace("'", '"'))


def parse_like_darts_trial(assignment: dict) -> tuple[dict, list, int]:
    """run_trial.py: the settings it converts, the primitives, the number of layers."""
    settings = katib(assignment["algorithm-settings"])
    for key in ("num_epochs", "num_workers", "init_channels", "print_step", "num_nodes", "stem_multiplier"):
        int(settings[key])
    assert settings["batch_size"] is None or int(settings["batch_size"]) >= 1  # None: Katib's trial needs a number
    for key in ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "w_grad_clip", "alpha_lr", "alpha_weight_decay"):
        float(settings[key])
    primitives = katib(assignment["search-space"])
    assert isinstance(primitives, list) and all(isinstance(p, str) for p in primitives)
    return settings, primitives, int(assignment["num-layers"])


def parse_like_enas_trial(assignment: dict) -> list[tuple[dict, list[int]]]:
    """ModelConstructor.build_model: per layer, the operation's config and the tensors it reads
    (0: the input, j: layer j's output; layer l reads layer l - 1 and its skip connections)."""
    arch, config = katib(assignment["architecture"]), katib(assignment["nn_config"])
    layers, embedding = config["num_layers"], config["embedding"]
    assert config["input_sizes"] and config["output_sizes"][-1]
    assert len(arch) == layers
    out = []
    for l_index in range(1, layers + 1):
        op = arch[l_index - 1][0]
        op_config = embedding[str(op)]
        skip = arch[l_index - 1][1 : l_index + 1]
        assert len(arch[l_index - 1]) == l_index and op_config["opt_id"] == op
        inputs = [l_index - 1] + [i for i in range(l_index - 1) if l_index > 1 and skip[i] == 1]
        assert all(bit in (0, 1) for bit in skip)
        out.append((op_config, inputs))
    assert set(embedding) == {str(row[0]) for row in arch}, "the embedding describes the operations used"
    return out


def load_katib_example(name: str):
    document = yaml.safe_load((DATA / "katib" / f"{name}.yaml").read_text())
    return document, experiment_pb(document["metadata"]["name"], document["spec"])


def status_of(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def drive(client, exp, score, count, batch=3, trials=None, condition="Succeeded"):
    """Proposals scored by `score(assignment)` and sent back with their labels, `batch` at a time."""
    trials = list(trials or [])
    while len(trials) < count:
        reply = client.suggest(exp, trials, count=min(batch, count - len(trials)))
        for item in reply.parameter_assignments:
            assignment = {a.name: a.value for a in item.assignments}
            trials.append(trial_pb(f"t{len(trials):03d}", assignment, condition, {"accuracy": score(assignment)}, dict(item.labels)))
    return trials


def ops_score(assignment):
    """A cheap reward: the operation ids of the architecture, scaled."""
    return sum(row[0] for row in katib(assignment["architecture"])) / 10


def key(trial):
    return tuple(sorted((a.name, a.value) for a in trial.spec.parameter_assignments.assignments))


# -- Katib's examples and formats ---------------------------------------------------------------------------


def test_katib_darts_example_validates_and_its_trial_parses_the_proposal(serve):
    document, exp = load_katib_example("darts-cpu")
    client = serve("darts")
    client.validate(exp)
    reply = client.suggest(exp, count=1)
    (item,) = reply.parameter_assignments
    assignment = {a.name: a.value for a in item.assignments}
    assert [a.name for a in item.assignments] == ["algorithm-settings", "search-space", "num-layers"]
    settings, primitives, layers = parse_like_darts_trial(assignment)
    assert primitives == ["max_pooling_3x3"] and layers == 1
    # The example's settings, the rest at Katib's defaults, in Katib's order.
    assert settings == {
        "num_epochs": 1, "w_lr": 0.025, "w_lr_min": 0.001, "w_momentum": 0.9, "w_weight_decay": 3e-4, "w_grad_clip": 5.0,
        "alpha_lr": 3e-4, "alpha_weight_decay": 1e-3, "batch_size": 128, "num_workers": 4, "init_channels": 1,
        "print_step": 50, "num_nodes": 1, "stem_multiplier": 1,
    }
    assert list(settings) == list(registry.get("darts").schema.settings)


def test_darts_search_space_lists_one_primitive_per_filter_size(serve):
    """Katib's darts-gpu example: skip_connection needs no parameters; batch_size may be None."""
    operations = [
        operation("separable_convolution", filter_size=["3"]),
        operation("dilated_convolution", filter_size=["3", "5"]),
        operation("avg_pooling", filter_size=["3"]),
        operation("max_pooling", filter_size=["3"]),
        {"operationType": "skip_connection"},
    ]
    exp = nas_experiment("darts", nasConfig={"graphConfig": {"numLayers": 3}, "operations": operations}, settings={"batch_size": "None"})
    client = serve("darts")
    client.validate(exp)
    assignment = dict(points(client.suggest(exp))[0])
    settings, primitives, layers = parse_like_darts_trial(assignment)
    assert settings["batch_size"] is None
    assert primitives == [
        "separable_convolution_3x3", "dilated_convolution_3x3", "dilated_convolution_5x5", "avg_pooling_3x3", "max_pooling_3x3", "skip_connection",
    ]
    assert layers == 3


def test_katib_enas_example_validates_and_every_id_is_one_combination(serve):
    document, exp = load_katib_example("enas-cpu")
    client = serve("enas")
    client.validate(exp)
    operations = document["spec"]["nasConfig"]["operations"]
    expected = []  # Katib's numbering: operations in order, each one's combinations with the last parameter fastest
    for op in operations:
        lists = []
        for p in op["parameters"]:
            fs = p["feasibleSpace"]
            lists.append(fs["list"] if "list" in fs else list(range(int(fs["min"]), int(fs["max"]) + 1, int(fs["step"]))))
        for values in itertools.product(*lists):
            expected.append((op["operationType"], dict(zip([p["name"] for p in op["parameters"]], values))))
    assert len(expected) == 106
    seen = {}
    trials = []
    for _ in range(40):  # one layer: every proposal is one operation id
        reply = client.suggest(exp, trials, count=2)
        for item in reply.parameter_assignments:
            assignment = {a.name: a.value for a in item.assignments}
            ((config, inputs),) = parse_like_enas_trial(assignment)
            assert inputs == [0] and config["opt_params"] == expected[config["opt_id"]][1]
            assert config["opt_type"] == expected[config["opt_id"]][0]
            seen[config["opt_id"]] = config
            trials.append(trial_pb(f"t{len(trials)}", assignment, "Succeeded", {"Validation-Accuracy": "0.5"}, dict(item.labels)))
    assert len(seen) == 80, "80 different architectures (operation ids) in 80 proposals"
    reduction = [c for c in seen.values() if c["opt_type"] == "reduction"]
    assert all(isinstance(c["opt_params"]["pool_size"], int) for c in reduction), "an int parameter is a JSON number, as in Katib"


def test_enas_proposals_parse_like_katibs_model_constructor(serve):
    client = serve("enas")
    exp = nas_experiment(layers=5, input_sizes=(32, 32, 3), output_sizes=(10,))
    trials = drive(client, exp, ops_score, 12)
    for trial in trials:
        assignment = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
        layers = parse_like_enas_trial(assignment)
        assert len(layers) == 5 and katib(assignment["nn_config"])["input_sizes"] == [32, 32, 3]
        for config, inputs in layers:
            assert config["opt_type"] in ("dense", "conv1d")
    assert [t.spec.labels[INDEX] for t in trials] == [str(i) for i in range(12)], "numbered in creation order"


def test_quotes_and_non_ascii_values_survive_the_trials_parsing(serve):
    values = ["it's", 'say "hi"', "back\\slash", "π"]
    exp = nas_experiment(layers=1, operations=[operation("dense", label=values)])
    client = serve("enas")
    got = set()
    for point in points(client.suggest(exp, count=4)):
        ((config, _),) = parse_like_enas_trial(dict(point))
        got.add(config["opt_params"]["label"])
    assert got == set(values)


# -- the contract: counts, repeats, restarts, order, failures -----------------------------------------------


def test_exact_counts_distinct_and_never_reproposed(serve):
    client = serve("enas")
    exp = nas_experiment(layers=3)
    trials = drive(client, exp, ops_score, 12, batch=4)
    for count in (1, 4, 7):
        got = points(client.suggest(exp, trials, count=count))
        assert len(got) == count and len(set(got)) == count
        assert not set(got) & {key(t) for t in trials}


@pytest.mark.parametrize("condition", ["Created", "Running", "Succeeded", "Killed", "Failed", "MetricsUnavailable", "EarlyStopped"])
def test_a_tiny_space_gives_the_unused_architectures_first(serve, condition):
    """One layer, three operation ids: trials on two of them, in any condition, leave the third;
    a batch of four is more than the space."""
    client = serve("enas")
    exp = nas_experiment(layers=1, operations=[operation("dense", units=["1", "2", "3"])])
    first = points(client.suggest(exp, count=3))
    assert len(set(first)) == 3
    trials = [trial_pb(f"t{i}", dict(p), condition, {"accuracy": "0.5"}, {INDEX: str(i)}) for i, p in enumerate(first[:2])]
    assert points(client.suggest(exp, trials, count=1)) == [first[2]]
    assert len(set(points(client.suggest(exp, trials, count=3)))) == 3, "then old points, never twice in a batch"
    code, details = status_of(lambda: client.suggest(exp, trials, count=4))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "has only 3" in details


def test_reply_is_a_function_of_the_request_alone(serve):
    """Shuffled trials; a warm server, a fresh one, one warmed on another experiment and one with no
    state store give the same reply; identical requests do not grow the store."""
    exp = nas_experiment(layers=4)
    trials = drive(serve("enas"), exp, ops_score, 30, batch=3)
    pending = points(serve("enas").suggest(exp, trials, count=3))
    trials += [trial_pb(f"p{i}", dict(p), "Running", labels={INDEX: str(30 + i)}) for i, p in enumerate(pending)]
    rng = random.Random(1)
    shuffled = [rng.sample(trials, len(trials)) for _ in range(3)]
    warm = serve("enas")
    replies = [points(warm.suggest(exp, order, count=3)) for order in [trials, *shuffled]]
    other = serve("enas")
    other.suggest(nas_experiment(layers=4, name="another"), trials[:10], count=2)
    replies.append(points(other.suggest(exp, shuffled[0], count=3)))
    replies.append(points(serve("enas").suggest(exp, shuffled[1], count=3)))
    replies.append(points(serve("enas", state_entries=0).suggest(exp, shuffled[2], count=3)))
    assert all(reply == replies[0] for reply in replies), replies
    before = warm.store.stats()
    for order in shuffled * 3:
        warm.suggest(exp, order, count=3)
    assert warm.store.stats() == before


def test_trials_finishing_out_of_order_give_a_warm_server_the_replies_of_a_new_one(serve):
    """Three trials run at a time and finish in a random order, so an earlier trial's reward often
    arrives after later ones: the warm server's cached controller must never show."""
    exp = nas_experiment(layers=3)
    warm, cold = serve("enas"), serve("enas", state_entries=0)
    rng = random.Random(7)
    trials, running = [], []
    for _ in range(14):
        count = 3 - len(running)
        request = trials + running
        reply = warm.suggest(exp, request, count=count)
        assert points(reply) == points(cold.suggest(exp, request, count=count))
        for item in reply.parameter_assignments:
            assignment = {a.name: a.value for a in item.assignments}
            running.append(trial_pb(f"t{len(trials) + len(running):03d}", assignment, "Running", labels=dict(item.labels)))
        done = running.pop(rng.randrange(len(running)))
        done.status.condition = 2  # Succeeded
        done.status.observation.metrics.add(name="accuracy", value=str(ops_score({a.name: a.value for a in done.spec.parameter_assignments.assignments})))
        trials.append(done)


def test_a_retried_request_and_a_restarted_server_continue(serve):
    exp = nas_experiment(layers=3)
    first = serve("enas")
    trials = drive(first, exp, ops_score, 9)
    warm = points(first.suggest(exp, trials, count=3))
    assert warm == points(first.suggest(exp, trials, count=3))
    serve.servers[0].shutdown(grace=1)
    restarted = serve.process("enas")  # a restarted pod: a new process
    assert points(restarted.suggest(exp, trials, count=3)) == warm
    more = drive(restarted, exp, ops_score, 15, trials=trials)
    assert len({key(t) for t in more}) == 15


@pytest.mark.parametrize("objective,sign", [("maximize", 1), ("minimize", -1)])
def test_failed_trials_give_no_reward_and_are_never_proposed_again(serve, objective, sign):
    client = serve("enas")
    exp = nas_experiment(layers=2, objective=objective)
    failed = drive(client, exp, ops_score, 12, condition="Failed")
    assert len({key(t) for t in failed}) == 12, "a failed architecture is never retried"
    for _ in range(3):  # every trial failed: still a full reply of new architectures, every time
        got = points(client.suggest(exp, failed, count=3))
        assert len(set(got)) == 3 and not set(got) & {key(t) for t in failed}
    algorithm = registry.get("enas")
    parsed = convert.experiment(exp, architecture_search=True)
    space = algorithm.space(parsed, algorithm.schema.parse("enas", parsed.settings, Problems()))
    conditions = ["Failed", "Killed", "MetricsUnavailable", "Succeeded", "EarlyStopped", "Running", "Succeeded"]
    mixed = [trial_pb(f"m{i}", dict(key(t)), c, {"accuracy": i / 10} if c != "MetricsUnavailable" else {}, dict(t.spec.labels)) for i, (t, c) in enumerate(zip(failed, conditions))]
    mixed.append(trial_pb("no-metric", dict(key(failed[7])), "Succeeded", {"other": 1}, {INDEX: "7"}))
    history = _history(parsed, space, mixed)
    events, settled = learning_events(history, space)
    assert [reward for _, reward in events] == [sign * 0.3, sign * 0.4, sign * 0.6], "only Succeeded and EarlyStopped trials with a value, negated when minimizing"
    assert settled == 2, "the events before the first pending trial (Running, index 5)"


def _history(parsed, space, trials):
    experiment = dataclasses.replace(parsed, space=space)
    return History(experiment, [parse_trial(experiment, *convert.trial_fields(t)) for t in trials])


def _enas_request(exp, trials, store=None):
    """The Request enas gets for `exp` and `trials` (store: a StateStore's view, or none)."""
    algorithm = registry.get("enas")
    parsed = convert.experiment(exp, architecture_search=True)
    settings = algorithm.schema.parse("enas", parsed.settings, Problems())
    space = algorithm.space(parsed, settings)
    history = _history(parsed, space, trials)
    options = {} if store is None else {"store": store.view("enas")}
    return Request(dataclasses.replace(parsed, space=space), settings, history, 3, len(trials) + 3, **options), space


def test_learning_follows_the_enas_index_not_the_trial_names(serve):
    """Katib's trial names end in random characters: creation order is carried by the index label
    alone. Here the names sort the other way round."""
    trials = drive(serve("enas"), nas_experiment(layers=2), ops_score, 6)
    renamed = [
        trial_pb(f"exp-{'zyxwvu'[i]}", dict(key(t)), "Succeeded", {"accuracy": i / 10}, dict(t.spec.labels)) for i, t in enumerate(trials)
    ]
    request, space = _enas_request(nas_experiment(layers=2), renamed)
    events, settled = learning_events(request.history, space)
    assert [reward for _, reward in events] == [i / 10 for i in range(6)] and settled == 6


def test_a_controller_cached_for_another_experiment_is_never_used(serve):
    """The same trials and settings under another experiment name: its trained controller is in
    the store, but this experiment's controller (its own seed) is trained as on a fresh server."""
    exp, other = nas_experiment(layers=3), nas_experiment(layers=3, name="another")
    trials = drive(serve("enas"), exp, ops_score, 9)
    store = StateStore()
    _Learner(*_enas_request(other, trials, store)).train()
    warm = _Learner(*_enas_request(exp, trials, store)).train()
    fresh = _Learner(*_enas_request(exp, trials)).train()
    assert np.array_equal(warm.flat, fresh.flat)


def test_the_skip_penalty_and_the_entropy_bonus_push_the_right_way():
    """With no reward signal (zero advantages) only the two regularisers act: the KL penalty pulls
    the skip rate to controller_skip_target, and the entropy bonus raises the entropy."""
    rng = np.random.default_rng(1)
    config = Config(layers=4, operations=3, hidden=8, entropy_weight=None, skip_target=0.1, skip_weight=1.0)
    controller = Controller(config, np.random.default_rng(0))  # skips start near 0.5
    arch = controller.sample(16, rng)
    for _ in range(30):
        controller.step(arch, np.zeros(16), 0.05)
    sampled = controller.sample(2000, np.random.default_rng(2))
    assert np.mean(np.concatenate([s.ravel() for s in sampled.skips[1:]])) < 0.3

    config = Config(layers=3, operations=4, hidden=8, entropy_weight=1.0, skip_weight=None)
    controller = Controller(config, flat=np.random.default_rng(0).normal(0, 0.5, size(config)))  # peaked at the start
    arch = controller.sample(16, rng)
    before = controller.loss_and_grads(arch, np.zeros(16))[2]["entropy"]
    for _ in range(30):
        controller.step(arch, np.zeros(16), 0.05)
    assert controller.loss_and_grads(arch, np.zeros(16))[2]["entropy"] > before


def test_a_cancelled_call_keeps_what_it_trained_and_changes_no_reply(serve):
    exp = nas_experiment(layers=3)
    trials = drive(serve("enas"), exp, ops_score, 15)
    algorithm = registry.get("enas")
    checks = []

    def gone_after_six_events():
        checks.append(1)
        if len(checks) > 6:
            raise Cancelled("the caller is gone")

    store = StateStore()
    request, _ = _enas_request(exp, trials, store)
    with pytest.raises(Cancelled):
        algorithm.suggest(dataclasses.replace(request, check=gone_after_six_events))
    assert store.stats()[0] == 1, "the six events trained are kept"
    resumed = algorithm.suggest(_enas_request(exp, trials, store)[0])
    fresh = algorithm.suggest(_enas_request(exp, trials)[0])
    assert [p.assignment for p in resumed.proposals] == [p.assignment for p in fresh.proposals]


@pytest.mark.parametrize("index", ["", "-1", "1e3", "٣", "9" * 12, "5"])
def test_crafted_indexes_never_break_a_reply(serve, index):
    client = serve("enas")
    exp = nas_experiment(layers=2)
    trials = drive(client, exp, ops_score, 6)
    for t in trials:
        t.spec.labels[INDEX] = index  # all the same, or garbage
    got = points(client.suggest(exp, trials, count=3))
    assert len(set(got)) == 3 and not set(got) & {key(t) for t in trials}


def test_darts_gives_every_trial_the_same_search_one_at_a_time(serve):
    client = serve("darts")
    exp = nas_experiment("darts", operations=[operation("max_pooling", filter_size=["3"])], maxTrialCount=3, parallelTrialCount=1)
    first = points(client.suggest(exp))
    trial = trial_pb("t0", dict(first[0]), "Succeeded", {"accuracy": "Genotype(normal=[])"})
    assert points(client.suggest(exp, [trial])) == first, "the one point again: the space has only one"
    code, details = status_of(lambda: client.suggest(exp, [trial], count=2))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "has only 1" in details
    code, details = status_of(lambda: client.validate(nas_experiment("darts", operations=[operation("max_pooling", filter_size=["3"])], parallelTrialCount=3, maxTrialCount=5)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "spec.parallelTrialCount" in details
    client.validate(nas_experiment("darts", operations=[operation("max_pooling", filter_size=["3"])], parallelTrialCount=3, maxTrialCount=1))


# -- validation -----------------------------------------------------------------------------------------------


def _bad_values(setting):
    """Values the schema must refuse: past the upper bound, below the lower one, not a number."""
    if setting.kind is int:
        yield str(int(setting.high) + 1)
        yield str(int(setting.low) - 1)
        yield "1.5"
    else:
        yield repr(float(setting.high) * 2 + 1) if not setting.high_open else repr(float(setting.high))
        yield repr(float(setting.low)) if setting.low_open else repr(float(setting.low) - 1)
        yield "nan"
    if not setting.none:
        yield "None"


NAS_SETTINGS = [(name, s) for name in ("darts", "enas") for s in registry.get(name).schema.settings.values()]


@pytest.mark.parametrize("algorithm,setting", NAS_SETTINGS, ids=[f"{a}-{s.name}" for a, s in NAS_SETTINGS])
def test_every_setting_is_validated_naming_it(serve, algorithm, setting):
    client = serve(algorithm)
    kind = operation("max_pooling", filter_size=["3"]) if algorithm == "darts" else operation("dense", units=["4"])
    for value in _bad_values(setting):
        exp = nas_experiment(algorithm, operations=[kind], settings={setting.name: value})
        code, details = status_of(lambda: client.validate(exp))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f'spec.algorithm.algorithmSettings["{setting.name}"]' in details, (value, details)
    good = str(setting.high) if setting.kind is float and not setting.high_open else str(int(setting.high)) if setting.kind is int else "0.5"
    values = [good, "None"] if setting.none else [good]
    for value in values:
        client.validate(nas_experiment(algorithm, operations=[kind], settings={setting.name: value}))


@pytest.mark.parametrize(
    "algorithm,config,field,text",
    [
        ("enas", {"layers": 0}, "spec.nasConfig.graphConfig.numLayers", "must be from 1 to 32"),
        ("darts", {"layers": 33}, "spec.nasConfig.graphConfig.numLayers", "must be from 1 to 32"),
        ("enas", {"input_sizes": ()}, "spec.nasConfig.graphConfig.inputSizes", "is empty"),
        ("enas", {"output_sizes": (10, -1)}, "spec.nasConfig.graphConfig.outputSizes[1]", "positive"),
        ("enas", {"input_sizes": tuple(range(1, 20))}, "spec.nasConfig.graphConfig.inputSizes", "at most 16"),
        ("enas", {"nasConfig": {"graphConfig": {"numLayers": 2, "inputSizes": [1], "outputSizes": [1]}, "operations": []}}, "spec.nasConfig.operations", "is empty"),
        ("enas", {"operations": [{"operationType": "", "parameters": [categorical("x", "1")]}]}, "spec.nasConfig.operations[0].operationType", "is empty"),
        ("enas", {"operations": [operation("dense"), {"operationType": "conv", "parameters": [double("rate", "0", "1")]}]}, 'spec.nasConfig.operations[1].parameters[0] ("rate").feasibleSpace.step', "needs a step"),
        ("enas", {"operations": [{"operationType": "conv", "parameters": [integer("size", 5, 3)]}]}, 'spec.nasConfig.operations[0].parameters[0] ("size").feasibleSpace.min', "must not be greater"),
        ("enas", {"operations": [{"operationType": "conv", "parameters": [categorical("a", "1"), categorical("a", "2")]}]}, 'spec.nasConfig.operations[0].parameters[1] ("a").name', "unique"),
        ("enas", {"operations": [{"operationType": "conv", "parameters": [integer("size", 1, 2000)]}]}, "spec.nasConfig.operations", "at most 1,000"),
        ("darts", {"operations": [operation("convolution", filter_size=["3"])]}, "spec.nasConfig.operations[0].operationType", '"convolution" is not a DARTS operation'),
        ("darts", {"operations": [operation("max_pooling")]}, "spec.nasConfig.operations[0].parameters", "has 0 parameters"),
        ("darts", {"operations": [operation("avg_pooling", filter_size=["3"], stride=["1"])]}, "spec.nasConfig.operations[0].parameters", "has 2 parameters"),
        ("darts", {"operations": [operation("avg_pooling", filter_size=["3x3"])]}, 'spec.nasConfig.operations[0].parameters[0] ("filter_size")', "not a filter size"),
        ("darts", {"operations": [operation("avg_pooling", filter_size=["3"]), operation("avg_pooling", k=["5", "3"])]}, "spec.nasConfig.operations[1]", "list each primitive once"),
    ],
)
@pytest.mark.parametrize("rpc", ["validate", "suggest"])
def test_nas_config_and_operations_are_validated_naming_the_field(serve, algorithm, config, field, text, rpc):
    client = serve(algorithm)
    exp = nas_experiment(algorithm, **config)
    code, details = status_of((lambda: client.validate(exp)) if rpc == "validate" else (lambda: client.suggest(exp)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"{field}: " in details and text in details, details


def test_nas_config_and_parameters_go_to_their_own_algorithms(serve):
    client = serve("random")
    with_nas = experiment([double("x", 0, 1)], algorithm="random", nasConfig=nas_config())
    code, details = status_of(lambda: client.validate(with_nas))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "spec.nasConfig: is not used by algorithm" in details
    code, details = status_of(lambda: client.validate(experiment([double("x", 0, 1)], algorithm="enas")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "spec.parameters: is not used" in details and "spec.nasConfig: is missing" in details


# -- the controller ---------------------------------------------------------------------------------------------

GRADIENT_CASES = [
    Config(layers=4, operations=5, hidden=6, entropy_weight=0.3, skip_weight=0.7),
    Config(layers=3, operations=3, hidden=4, temperature=None, tanh_const=None, entropy_weight=None, skip_weight=None),
    Config(layers=2, operations=4, hidden=5, temperature=2.0, tanh_const=None, skip_target=0.1),
    Config(layers=1, operations=4, hidden=5),
]


@pytest.mark.parametrize("config", GRADIENT_CASES, ids=["all-terms", "no-shaping-no-bonus", "temperature-only", "one-layer"])
def test_controller_gradient_matches_finite_differences(config):
    rng = np.random.default_rng(0)
    controller = Controller(config, flat=rng.normal(0.0, 0.5, size(config)))  # away from the tiny initial weights
    arch = controller.sample(3, rng)
    advantages = np.array([0.7, -1.3, 0.4])
    _, grad, _ = controller.loss_and_grads(arch, advantages)
    numeric = np.zeros_like(grad)
    for i in range(len(controller.flat)):
        original = controller.flat[i]
        controller.flat[i] = original + 1e-6
        plus = controller.loss_and_grads(arch, advantages)[0]
        controller.flat[i] = original - 1e-6
        minus = controller.loss_and_grads(arch, advantages)[0]
        controller.flat[i] = original
        numeric[i] = (plus - minus) / 2e-6
    assert np.max(np.abs(numeric - grad)) <= 1e-6 * np.max(np.abs(numeric)), np.max(np.abs(numeric - grad))


def test_a_positive_advantage_makes_the_architecture_more_likely():
    config = Config(layers=3, operations=4, hidden=8, entropy_weight=None, skip_weight=None)
    controller = Controller(config, np.random.default_rng(1))
    arch = Architecture.of([((2,), (1, 0), (3, 1, 1))])
    before = controller.loss_and_grads(arch, np.array([1.0]))[2]["log_prob"]
    for _ in range(20):
        controller.step(arch, np.array([1.0]), 0.01)
    after = controller.loss_and_grads(arch, np.array([1.0]))[2]["log_prob"]
    assert after > before + 0.1, (before, after)
    for _ in range(40):
        controller.step(arch, np.array([-1.0]), 0.01)
    assert controller.loss_and_grads(arch, np.array([1.0]))[2]["log_prob"] < after


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_nas", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_enas_learns_the_synthetic_reward(serve):
    """bench/nas.py in small: 3 seeds, 45 trials; enas's mean noiseless reward over the last 20
    beats random architectures' (median over seeds), by a clear margin."""
    bench = load_bench()
    client = serve("enas")
    enas, baseline = [], []
    for seed in range(3):
        reward = bench.SyntheticReward(seed)
        _, exact = bench.drive(client.stub, bench.experiment(f"learn-{seed}", seed), reward, 45, 3)
        enas.append(statistics.fmean(exact[25:]))
        baseline.append(statistics.fmean(bench.random_baseline(reward, 45, seed)[25:]))
    assert statistics.median(enas) > statistics.median(baseline) + 0.05, (enas, baseline)


# -- katib-local ------------------------------------------------------------------------------------------------

NAS_TRIAL = DATA / "nas_trial.py"
ROOT = DATA.parent.parent


def nas_manifest(algorithm="enas", **spec):
    """test_local's manifest with a nasConfig, running tests/data/nas_trial.py with Katib's quoted
    arguments (Katib runs them through `sh -c`, which removes the quotes; so does katib-local)."""
    document = manifest(name="nas", algorithm=algorithm, **spec)
    body = document["spec"]
    body.pop("parameters")
    body["nasConfig"] = nas_config(layers=3)
    body["objective"] = {"type": "maximize", "objectiveMetricName": "accuracy"}
    body["trialTemplate"]["trialParameters"] = [{"name": "arch", "reference": "architecture"}, {"name": "config", "reference": "nn_config"}]
    container = body["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(NAS_TRIAL)]
    container["args"] = ['--architecture="${trialParameters.arch}"', '--nn_config="${trialParameters.config}"']
    return document


def test_katib_local_runs_an_enas_experiment(tmp_path, capsys):
    code, workdir = run(tmp_path, nas_manifest(maxTrialCount=6, parallelTrialCount=2))
    status, trials = result(workdir)
    assert code == 0 and status["condition"] == "Succeeded", status
    assert [t["condition"] for t in trials] == ["Succeeded"] * 6, "every trial parsed its assignments"
    assert sorted(int(t["labels"][INDEX]) for t in trials) == list(range(6))
    assert len({t["assignment"]["architecture"] for t in trials}) == 6
    rows = list(csv.DictReader(open(workdir / "trials.csv")))
    assert [katib(r["architecture"]) for r in rows] == [katib(t["assignment"]["architecture"]) for t in trials]
    assert all(katib(r["nn_config"])["num_layers"] == 3 for r in rows)
    out = capsys.readouterr().out
    assert "trial    condition  architecture" in out and "best trial nas-" in out


def test_katib_local_runs_katibs_darts_example(tmp_path):
    """darts-cpu.yaml with its command pointed at a local script: the assignments reach it through
    trialParameters. Its objective is a genotype, not a number, so the trial is MetricsUnavailable."""
    document, _ = load_katib_example("darts-cpu")
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(NAS_TRIAL), *container["command"][2:]]
    code, workdir = run(tmp_path, document)
    status, trials = result(workdir)
    assert code == 0 and [t["condition"] for t in trials] == ["MetricsUnavailable"]
    log = (workdir / "trials" / trials[0]["name"] / "output.log").read_text()
    assert "Best-Genotype=Genotype(normal=[[('max_pooling_3x3',0)]],normal_concat=range(2,3))" in log


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.update(parameters=[{"name": "x", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}}]), "spec.nasConfig: and spec.parameters are both set"),
        (lambda s: s["nasConfig"]["graphConfig"].update(numLayers="3"), "spec.nasConfig.graphConfig.numLayers: '3' is not an integer"),
        (lambda s: s["nasConfig"]["graphConfig"].update(inputSizes=[2**31]), "spec.nasConfig.graphConfig.inputSizes[0]: 2147483648 is not an integer"),
        (lambda s: s["nasConfig"].update(operations={"a": 1}), "spec.nasConfig.operations: must be a list"),
        (lambda s: s["nasConfig"]["operations"][0].update(parameters=["x"]), "spec.nasConfig.operations[0].parameters[0]: must be a mapping"),
        (lambda s: s["trialTemplate"]["trialParameters"][0].update(reference="search-space"), "'search-space' is not an assignment of neural architecture search (architecture, nn_config)"),
        (lambda s: s["nasConfig"]["graphConfig"].update(numLayers=0), "spec.nasConfig.graphConfig.numLayers: (0) must be from 1 to 32"),
    ],
)
def test_katib_local_refuses_a_bad_nas_manifest_naming_the_field(tmp_path, capsys, change, message):
    document = nas_manifest()
    change(document["spec"])
    code, _ = run(tmp_path, document)
    captured = capsys.readouterr()
    assert code in (1, 2) and message in captured.err + captured.out, captured  # 2: the manifest; 1: the service refused it


def test_the_example_trial_builds_and_trains_a_proposed_network(serve, tmp_path):
    config = runner_spec.load(ROOT / "examples" / "nas" / "experiment.yaml")
    exp = experiment_pb(config.name, config.spec)
    client = serve("enas")
    client.validate(exp)
    assignment = dict(points(client.suggest(exp))[0])
    argv, _ = config.command_for("t", assignment)
    assert argv[2].startswith("--architecture=[[") and argv[3].startswith("--nn_config={'num_layers': 3")
    done = subprocess.run(
        [sys.executable, *argv[1:], "--epochs", "1", "--train-size", "640"], capture_output=True, text=True, timeout=120, cwd=ROOT / "examples" / "nas"
    )
    assert done.returncode == 0, done.stderr
    accuracy = float(done.stdout.split("accuracy=")[1].split()[0])
    assert 0.5 < accuracy <= 1.0
