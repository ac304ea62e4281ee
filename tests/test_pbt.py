"""pbt over real gRPC with a real (temporary) data directory.

Each simulated trial does what a PBT trial does with its checkpoint directory: it reads the
state its parent left (a lineage list), appends its own name, writes it back, and leaves a marker
file named after itself. So a child's directory, before it runs, must hold exactly its parent's
files: that proves the copy, and which member it came from.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import statistics
import sys
from decimal import Decimal
from fractions import Fraction

import grpc
import pytest

from katib_services.algorithms import registry
from katib_services.algorithms.base import Request
from katib_services.algorithms.errors import Problems
from katib_services.algorithms.history import History, parse_trial
from katib_services.algorithms.pbt import GENERATION, PARENT
from katib_services.services import convert
from katib_services.services.client import trial_pb

from .conftest import categorical, discrete, double, experiment, integer, points, status_of

SETTINGS = {"suggestion_trial_dir": "/var/log/katib/checkpoints/", "n_population": 5, "truncation_threshold": 0.2}
SPACE = [double("lr", "0.0001", "0.1", distribution="logUniform"), integer("batch", 8, 256)]
TRIAL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def pbt(parameters=SPACE, name="pbt-exp", **settings):
    return experiment(parameters, name=name, algorithm="pbt", settings={**SETTINGS, **settings})


def accuracy(assignment):
    """A fixed pseudo-random value per point: enough to rank the members."""
    return int(hashlib.sha256(repr(sorted(assignment.items())).encode()).hexdigest()[:8], 16) / 2**32


def directory(data_dir, exp, name):
    return data_dir / exp.name / name


def contents(path):
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def values(item):
    """The assignment of a reply item."""
    return {a.name: a.value for a in item.assignments}


def run(data_dir, exp, item, condition="Succeeded", value=None):
    """Runs one proposal as a trial would (in its checkpoint directory); returns the Trial message."""
    assignment = values(item)
    path = directory(data_dir, exp, item.trial_name)
    state_file = path / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"lineage": []}
    state["lineage"].append(item.trial_name)
    state_file.write_text(json.dumps(state))
    (path / f"marker-{item.trial_name}").write_text(item.trial_name)
    metrics = {} if condition != "Succeeded" else {"accuracy": accuracy(assignment) if value is None else value}
    return trial_pb(item.trial_name, assignment, condition, metrics, dict(item.labels))


def generation_zero(client, name):
    """A new experiment and its first five trials, run."""
    exp = pbt(name=name)
    reply = client.suggest(exp, [], count=5)
    return exp, [run(client.data_dir, exp, item) for item in reply.parameter_assignments]


def drive(client, exp, generations, batch=5):
    """Asks for `batch` trials at a time and runs them; returns every trial. Before a child runs, its
    directory must hold exactly what its parent's held when the parent finished."""
    trials, finished = [], {}
    while len(trials) < generations * 5:
        reply = client.suggest(exp, trials, count=batch)
        for item in reply.parameter_assignments:
            path = directory(client.data_dir, exp, item.trial_name)
            assert path.is_dir(), f"{item.trial_name}: no checkpoint directory before the trial runs"
            parent = item.labels.get(PARENT)
            assert contents(path) == (finished[parent] if parent else {}), f"{item.trial_name} is not a copy of {parent}"
        for item in reply.parameter_assignments:
            trials.append(run(client.data_dir, exp, item))
            finished[item.trial_name] = contents(directory(client.data_dir, exp, item.trial_name))
    return trials


def labels(trial):
    return dict(trial.spec.labels)


def assignment(trial):
    return {a.name: a.value for a in trial.spec.parameter_assignments.assignments}


def value(trial):
    return float(trial.status.observation.metrics[0].value)


def by_generation(trials):
    out = {}
    for t in trials:
        out.setdefault(int(labels(t)[GENERATION]), []).append(t)
    return out


# -- generations, labels, parents, checkpoints ------------------------------------------------------


def test_generations_labels_and_checkpoint_copies(serve):
    client = serve("pbt")
    exp = pbt()
    client.validate(exp)
    trials = drive(client, exp, generations=6)
    generations = by_generation(trials)
    assert sorted(generations) == list(range(6)) and all(len(g) == 5 for g in generations.values())
    names = {t.name for t in trials}
    assert len(names) == 30 and len({tuple(sorted(assignment(t).items())) for t in trials}) == 30
    for t in trials:
        assert TRIAL_NAME.fullmatch(t.name) and t.name.startswith("pbt-exp-"), t.name
        generation = int(labels(t)[GENERATION])
        if generation == 0:
            assert PARENT not in labels(t)
        else:
            parent = labels(t)[PARENT]
            assert parent in {p.name for p in generations[generation - 1]}
        # the lineage in the checkpoint: one trial of each generation, ending with this one
        lineage = json.loads((directory(client.data_dir, exp, t.name) / "state.json").read_text())["lineage"]
        assert len(lineage) == generation + 1 and lineage[-1] == t.name


def test_exploit_copies_the_better_member(serve):
    """With whole generations at once: the worst floor(q n) members have no child (nobody starts
    from a loser's checkpoint), every other member continues once, and the extra children start
    from the best ceil(q n) members."""
    client = serve("pbt")
    for threshold, bottom, top in ((0.2, 2, 2), (0.5, 5, 5), (0.25, 2, 3)):
        exp = pbt(name=f"exploit-{bottom}-{top}", n_population=10, truncation_threshold=threshold)
        trials = []
        while len(trials) < 40:
            reply = client.suggest(exp, trials, count=10)
            trials += [run(client.data_dir, exp, item) for item in reply.parameter_assignments]
        generations = by_generation(trials)
        for g in range(1, 4):
            ranked = sorted(generations[g - 1], key=lambda t: -value(t))
            children = {}
            for child in generations[g]:
                children.setdefault(labels(child)[PARENT], []).append(child)
            worst = {t.name for t in ranked[-bottom:]}
            assert not worst & set(children), f"a child starts from a bottom member's checkpoint ({threshold})"
            for member in ranked[:-bottom]:
                assert member.name in children, "every member outside the bottom continues"
            best = {t.name for t in ranked[:top]}
            extra = sum(len(c) - 1 for c in children.values())
            assert extra == bottom and all(name in best for name, c in children.items() if len(c) > 1)


def test_child_hyperparameters_are_the_parents_perturbed(serve):
    client = serve("pbt")
    exp = pbt(name="perturbed", parameters=[double("lr", "0.0001", "0.1"), double("momentum", "0.5", "0.99")])
    trials = drive(client, exp, generations=4)
    by_name = {t.name: t for t in trials}
    ratios = set()
    for t in trials:
        parent = labels(t).get(PARENT)
        if parent is None:
            continue
        for name, low, high in (("lr", 0.0001, 0.1), ("momentum", 0.5, 0.99)):
            child, before = float(assignment(t)[name]), float(assignment(by_name[parent])[name])
            if low < child < high:
                ratio = round(child / before, 9)
                assert ratio in (0.8, 1.2), (name, child, before)
                ratios.add(ratio)
            else:
                assert child in (min(max(before * 0.8, low), high), min(max(before * 1.2, low), high))
    assert ratios == {0.8, 1.2}


# -- perturbation respects the space ------------------------------------------------------------------

TYPES = [
    integer("n", 1, 40),
    double("dropout", "0", "0.5", step="0.05"),
    discrete("batch", 16, 32, 64, 128),
    categorical("opt", "sgd", "adam", "rmsprop", "lamb"),
]


def moves(before, factor, low, high, step):
    """Where x0.8 or x1.2 takes a value on the grid low, low + step, ... high: rounded to the grid,
    or to the neighbouring point when rounding gives the value back; kept within the bounds."""
    before = Fraction(before)
    target = before * factor
    index = (before - low) / step
    moved = round((target - low) / step)
    if moved == index:
        moved = index + (1 if target > before or (target == before and factor > 1) else -1)
    return low + step * min(max(moved, 0), (high - low) / step)


def test_perturbation_keeps_types_steps_and_neighbours(serve):
    client = serve("pbt")
    exp = pbt(name="types", parameters=TYPES)
    trials = drive(client, exp, generations=6)
    by_name = {t.name: t for t in trials}
    batches, options = ["16", "32", "64", "128"], ["sgd", "adam", "rmsprop", "lamb"]
    children = 0
    for t in trials:
        a = assignment(t)
        assert a["n"].isdigit() and 1 <= int(a["n"]) <= 40
        assert Decimal(a["dropout"]) % Decimal("0.05") == 0 and 0 <= Decimal(a["dropout"]) <= Decimal("0.5")
        parent = labels(t).get(PARENT)
        if parent is None:
            continue
        children += 1
        p = assignment(by_name[parent])
        factors = (Fraction(4, 5), Fraction(6, 5))
        assert int(a["n"]) in {moves(int(p["n"]), f, 1, 40, 1) for f in factors}, (a["n"], p["n"])
        dropout = {moves(Fraction(p["dropout"]), f, 0, Fraction(1, 2), Fraction(1, 20)) for f in factors}
        assert Fraction(a["dropout"]) in dropout, (a["dropout"], p["dropout"])
        i = batches.index(p["batch"])
        assert batches.index(a["batch"]) in {max(i - 1, 0), min(i + 1, 3)}
        assert (options.index(a["opt"]) - options.index(p["opt"])) % 4 in (1, 3)
    assert children == 25


def test_integer_rounding_is_not_truncation(serve):
    """9 x 0.8 = 7.2 -> 7 and 9 x 1.2 = 10.8 -> 11 (truncating would give 10)."""
    client = serve("pbt")
    exp = pbt(name="rounding", parameters=[integer("n", 1, 40), categorical("c", *"abcdefghij")])
    seen = set()
    for i in range(12):  # generation 0 all at n = 9, each with another c; their children show the factors
        members = [trial_pb(f"rounding-g0m{k}-00000{k}", {"n": "9", "c": "abcdefghij"[k]}, "Succeeded", {"accuracy": k}, {GENERATION: "0"}) for k in range(5)]
        reply = client.suggest(exp, members, count=5, total=5 + i)  # another total: another seed
        seen.update(int(values(item)["n"]) for item in reply.parameter_assignments)
    assert seen == {7, 11}, seen


def test_resampling_follows_the_distribution(serve):
    client = serve("pbt")
    exp = pbt(name="resample", parameters=[double("lr", "0.00001", "1", distribution="logUniform"), integer("k", 1, 1000)], resample_probability=1)
    members = [trial_pb(f"resample-g0m{k}-00000{k}", {"lr": "0.5", "k": str(500 + k)}, "Succeeded", {"accuracy": k}, {GENERATION: "0"}) for k in range(5)]
    logs = []
    for i in range(40):
        reply = client.suggest(exp, members, count=5, total=5 + i)
        logs += [math.log10(float(values(item)["lr"])) for item in reply.parameter_assignments]
    assert -3.2 < statistics.median(logs) < -1.8, "log-uniform on [1e-5, 1]: median of log10 near -2.5"
    assert min(logs) < -4 and max(logs) > -1


# -- any parallelism: exact counts ---------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 7, 12])
def test_exact_counts_at_any_parallelism(serve, count):
    client = serve("pbt")
    exp = pbt(name=f"parallel-{count}")
    trials = []
    for _ in range(6):
        reply = client.suggest(exp, trials, count=count)
        got = points(reply)
        assert len(got) == count and len(set(got)) == count
        assert not set(got) & {tuple(sorted(assignment(t).items())) for t in trials}
        names = [item.trial_name for item in reply.parameter_assignments]
        assert len(set(names)) == count and not set(names) & {t.name for t in trials}
        trials += [run(client.data_dir, exp, item) for item in reply.parameter_assignments]
    assert [labels(t)[GENERATION] for t in trials[:5]] == ["0"] * 5  # generation 0 fills its slots before any child
    assert max(by_generation(trials)) >= 1


def test_incomplete_generation_children_come_from_its_finished_part(serve):
    """Two trials at a time, population 5: a generation is never complete when the next one starts."""
    client = serve("pbt")
    exp = pbt(name="incomplete")
    running, trials = [], []
    for _ in range(14):
        pending = [trial_pb(item.trial_name, values(item), "Running", {}, dict(item.labels)) for item in running]
        reply = client.suggest(exp, trials + pending, count=2 - len(running))
        for item in reply.parameter_assignments:  # each child's parent had finished when it was proposed
            assert item.labels.get(PARENT) in {None, *(t.name for t in trials)}, item.trial_name
        running += list(reply.parameter_assignments)
        trials.append(run(client.data_dir, exp, running.pop(0)))  # the oldest finishes
    assert max(by_generation(trials)) >= 2


def test_an_early_finisher_is_judged_against_the_population_as_it_stands(serve):
    """Generation 1 has finished only two members, 0.95 and 0.55. Among those two alone nobody is in
    the bottom; against the population as it stands (the other slots' newest results, 0.9, 0.8 and
    0.7 from generation 0) 0.55 is the worst fifth, so its slot restarts from the 0.95 member."""
    client = serve("pbt")
    exp = pbt(name="standing")
    first = list(client.suggest(exp, [], count=5).parameter_assignments)
    trials = [run(client.data_dir, exp, item, value=v) for item, v in zip(first, (0.9, 0.8, 0.7, 0.6, 0.5))]
    second = list(client.suggest(exp, trials, count=5).parameter_assignments)
    # slot k continues slot k, but the worst (0.5) is replaced by a child of the best (0.9)
    assert [item.labels[PARENT] for item in second] == [t.name for t in trials[:4]] + [trials[0].name]
    trials += [trial_pb(item.trial_name, values(item), "Running", {}, dict(item.labels)) for item in second[:3]]
    trials += [run(client.data_dir, exp, second[3], value=0.95), run(client.data_dir, exp, second[4], value=0.55)]
    third = list(client.suggest(exp, trials, count=2).parameter_assignments)
    assert [item.labels[PARENT] for item in third] == [second[3].trial_name, second[3].trial_name]


@pytest.mark.parametrize("name", ["above-a", "above-b", "above-c", "above-d"])
def test_a_member_in_the_bottom_is_never_a_parent_while_its_generation_has_a_better_one(serve, name):
    """q = 0.4. Generation 1 has finished 0.95, 0.2 and 0.1; against the population as it stands
    (with 0.6 and 0.5, generation 0's results of the two slots still running) 0.2 and 0.1 are the
    bottom. Their slots restart from 0.95 alone, never from 0.2 (which would be a member of the
    bottom replaced by a child of itself). Four experiments, so that a random pick among 0.95 and
    0.2 cannot pass by luck."""
    client = serve("pbt")
    exp = pbt(name=name, truncation_threshold=0.4)
    first = list(client.suggest(exp, [], count=5).parameter_assignments)
    trials = [run(client.data_dir, exp, item, value=v) for item, v in zip(first, (0.9, 0.8, 0.7, 0.6, 0.5))]
    second = list(client.suggest(exp, trials, count=5).parameter_assignments)
    trials += [run(client.data_dir, exp, item, value=v) for item, v in zip(second[:3], (0.95, 0.2, 0.1))]
    trials += [trial_pb(item.trial_name, values(item), "Running", {}, dict(item.labels)) for item in second[3:]]
    third = list(client.suggest(exp, trials, count=3).parameter_assignments)
    assert [item.labels[PARENT] for item in third] == [second[0].trial_name] * 3


# -- state from the request: restarts, replicas, repeated requests -------------------------------------


def test_a_restart_at_every_call_gives_the_same_experiment(serve, tmp_path):
    """One warm server, and a new server process (a restarted pod: no memory of the calls before,
    its own volume) for every call."""
    exp = pbt(name="restarts")
    warm = serve("pbt", data_dir=tmp_path / "warm")
    runs = []
    for fresh in (False, True):
        trials = []
        while len(trials) < 25:
            client = serve.process("pbt", data_dir=tmp_path / "cold") if fresh else warm
            reply = client.suggest(exp, trials, count=5)
            trials += [run(client.data_dir, exp, item) for item in reply.parameter_assignments]
            if fresh:
                serve.processes.pop().stop()
        runs.append([(t.name, assignment(t), labels(t)) for t in trials])
    assert runs[0] == runs[1]
    assert sorted(p.name for p in (tmp_path / "cold" / exp.name).iterdir()) == sorted(name for name, _, _ in runs[1])


def test_a_repeated_request_copies_nothing_twice_and_never_clobbers_a_running_trial(serve):
    client = serve("pbt")
    replica = serve.process("pbt")  # a second replica on the same volume
    exp = pbt(name="repeated")
    trials = drive(client, exp, generations=2)
    first = client.suggest(exp, trials, count=5)
    children = [item for item in first.parameter_assignments if PARENT in item.labels]
    assert children
    # the trials start: half write into their directories, half are between deleting their old
    # checkpoint and writing the new one (an empty directory, which a second copy could replace)
    for n, item in enumerate(children):
        path = directory(client.data_dir, exp, item.trial_name)
        for file in path.iterdir():
            file.unlink()
        if n % 2:
            (path / "new-file").write_text("written by the running trial")
    stamps = {item.trial_name: os.stat(directory(client.data_dir, exp, item.trial_name)).st_ino for item in children}
    for server in (client, replica, client):
        again = server.suggest(exp, trials, count=5)
        assert again == first, "the same request gets the same reply (names, assignments, labels)"
    for n, item in enumerate(children):
        path = directory(client.data_dir, exp, item.trial_name)
        assert contents(path) == ({"new-file": "written by the running trial"} if n % 2 else {})
        assert os.stat(path).st_ino == stamps[item.trial_name]
    leftovers = [p.name for p in (serve.data_dir / exp.name).iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


# -- failures -------------------------------------------------------------------------------------------


def test_failed_members_are_replaced_never_retried(serve):
    client = serve("pbt")
    exp = pbt(name="failures")
    reply = client.suggest(exp, [], count=5)
    items = list(reply.parameter_assignments)
    trials = [
        run(client.data_dir, exp, items[0], "Failed"),
        run(client.data_dir, exp, items[1], "Killed"),
        run(client.data_dir, exp, items[2], "Succeeded", value="unavailable"),  # a result without a value
        run(client.data_dir, exp, items[3]),
        # items[4] is MetricsUnavailable: Katib leaves such trials out of the request
    ]
    reply = client.suggest(exp, trials, count=4)
    replacements = list(reply.parameter_assignments)
    failed_points = {tuple(sorted(assignment(t).items())) for t in trials}
    for item in replacements:  # new random members of generation 0, in the failed slots
        assert item.labels[GENERATION] == "0" and PARENT not in item.labels
        assert tuple(sorted((a.name, a.value) for a in item.assignments)) not in failed_points
        assert contents(directory(client.data_dir, exp, item.trial_name)) == {}
    assert not {item.trial_name for item in replacements} & {i.trial_name for i in items}
    trials += [run(client.data_dir, exp, item) for item in replacements]
    # generation 1: a failed child is replaced by a child of a top member of generation 0
    reply = client.suggest(exp, trials, count=5)
    children = list(reply.parameter_assignments)
    assert all(item.labels[GENERATION] == "1" for item in children)
    failed = run(client.data_dir, exp, children[0], "Failed")
    trials += [failed] + [run(client.data_dir, exp, item) for item in children[1:]]
    good = sorted((t for t in trials if labels(t)[GENERATION] == "0" and t.status.condition == 2 and t.status.observation.metrics and t.status.observation.metrics[0].value != "unavailable"), key=lambda t: -value(t))
    reply = client.suggest(exp, trials, count=1)
    (replacement,) = reply.parameter_assignments
    assert replacement.labels[GENERATION] == "1" and replacement.labels[PARENT] == good[0].name  # the top member (q n = 1)
    assert replacement.trial_name != failed.name and points(reply)[0] not in {tuple(sorted(assignment(t).items())) for t in trials}


def test_foreign_and_crafted_trials_are_ignored(serve):
    client = serve("pbt")
    exp = pbt(name="foreign")
    crafted = [
        trial_pb("other-1", {"lr": "0.01", "batch": "64"}, "Succeeded", {"accuracy": 0.99}, {GENERATION: "0"}),
        trial_pb("foreign-g0m0-abcdef", {"lr": "0.02", "batch": "64"}, "Succeeded", {"accuracy": 0.98}, {GENERATION: "1"}),
        trial_pb("foreign-g1m0-abcdef", {"lr": "0.03", "batch": "64"}, "Succeeded", {"accuracy": 0.97}, {GENERATION: "1", PARENT: "other-1"}),
        trial_pb("foreign-g7m0-abcdef", {"lr": "0.04", "batch": "64"}, "Succeeded", {"accuracy": 0.96}, {GENERATION: "7", PARENT: "nobody"}),
        trial_pb("foreign-g0m3-0000zz", {"lr": "0.05", "batch": "64"}, "Succeeded", {"accuracy": 0.95}, {GENERATION: "0"}),
        trial_pb("foreign-g0m1-abcdef", {"lr": "7", "batch": "64"}, "Succeeded", {"accuracy": 0.95}, {GENERATION: "0"}),  # outside the space
    ]
    reply = client.suggest(exp, crafted, count=5)
    assert [item.labels[GENERATION] for item in reply.parameter_assignments] == ["0"] * 5, "no member: generation 0"
    assert not {PARENT} & {k for item in reply.parameter_assignments for k in item.labels}
    assert not set(points(reply)) & {tuple(sorted(assignment(t).items())) for t in crafted}


def claims(n):
    """A chain of n crafted trials, each claiming the next generation with the previous one as parent."""
    return [
        trial_pb(f"claims-g{i}m0-abcdef", {"lr": str(0.0001 + i * 1e-6), "batch": "64"}, "Succeeded", {"accuracy": 0.5}, {GENERATION: str(i), **({PARENT: f"claims-g{i - 1}m0-abcdef"} if i else {})})
        for i in range(n)
    ]


def test_labels_claiming_many_generations_cost_linear_time(serve):
    """Ten times the chain costs about ten times the work (a quadratic replay: a hundred times),
    counted as the lines of pbt.py executed, deterministically, on the core in this process."""
    exp = pbt(name="claims")
    reply = serve("pbt").suggest(exp, claims(5000), count=5)
    assert len(set(points(reply))) == 5
    assert [item.labels[GENERATION] for item in reply.parameter_assignments] == ["0", "0", "0", "0", "5000"]  # one chain, replayed
    algorithm, parsed = registry.get("pbt"), convert.experiment(exp)
    settings = algorithm.schema.parse("pbt", parsed.settings, Problems())
    source = sys.modules[type(algorithm).__module__].__file__
    lines = {}
    for n in (500, 5000):
        history = History(parsed, [parse_trial(parsed, *convert.trial_fields(t)) for t in claims(n)])
        count = 0

        def trace(frame, event, arg):
            nonlocal count
            if frame.f_code.co_filename != source:
                return None
            if event == "line":
                count += 1
            return trace

        sys.settrace(trace)
        try:
            algorithm.suggest(Request(parsed, settings, history, 5, n + 5))
        finally:
            sys.settrace(None)
        lines[n] = count
    assert lines[5000] < 20 * lines[500], lines


# -- path safety ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "/abs", "..", "a/b", "Upper", "under_score", "x" * 254])
def test_an_experiment_name_that_is_no_directory_name_is_refused(serve, tmp_path, name):
    client = serve("pbt")
    exp = pbt(name=name)
    for call in (lambda: client.validate(exp), lambda: client.suggest(exp, count=2)):
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("metadata.name:"), details
    assert not serve.data_dir.exists() or not any(serve.data_dir.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written anywhere"


@pytest.mark.parametrize("name", ["../../escape", "/etc", "..", ".", "", "a/../../b", "nul\0byte"])
def test_a_trial_name_that_could_leave_the_data_directory_is_refused(serve, tmp_path, name):
    client = serve("pbt")
    exp = pbt(name="paths")
    trial = trial_pb(name, {"lr": "0.01", "batch": "64"}, "Succeeded", {"accuracy": 0.5}, {GENERATION: "0"})
    code, details = status_of(lambda: client.suggest(exp, [trial], count=2))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("trials:"), details
    assert not serve.data_dir.exists()


def test_a_planted_link_cannot_lead_outside(serve, tmp_path):
    """The volume holds a link where the experiment's directory should be: nothing is written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    serve.data_dir.mkdir()
    (serve.data_dir / "linked").symlink_to(outside)
    client = serve("pbt")
    code, details = status_of(lambda: client.suggest(pbt(name="linked"), count=2))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "leads outside the data directory" in details
    assert list(outside.iterdir()) == []


def test_a_parent_directory_linked_outside_is_not_copied(serve, tmp_path):
    client = serve("pbt")
    exp, trials = generation_zero(client, "parent-link")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    for t in trials:  # every member's directory replaced by a link to the secret
        path = directory(client.data_dir, exp, t.name)
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
        path.symlink_to(secret)
    code, details = status_of(lambda: client.suggest(exp, trials, count=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "leads outside the data directory" in details
    assert len(list((serve.data_dir / exp.name).iterdir())) == 5


def test_links_in_a_checkpoint_are_copied_as_links_and_pipes_skipped(serve, tmp_path):
    client = serve("pbt")
    exp, trials = generation_zero(client, "specials")
    for t in trials:
        path = directory(client.data_dir, exp, t.name)
        (path / "outside").symlink_to(tmp_path)
        os.mkfifo(path / "pipe")
    child = next(item for item in client.suggest(exp, trials, count=5).parameter_assignments)
    path = directory(client.data_dir, exp, child.trial_name)
    assert (path / "outside").is_symlink() and os.readlink(path / "outside") == str(tmp_path)
    assert not (path / "pipe").exists()


def test_copies_are_writable_by_trials_running_as_another_user(serve):
    client = serve("pbt")
    exp, trials = generation_zero(client, "modes")
    for t in trials:  # the parent's files private to the user who wrote them
        path = directory(client.data_dir, exp, t.name)
        (path / "sub").mkdir(mode=0o700)
        (path / "sub" / "weights").write_text("w")
        for f in (path / "state.json", path / "sub" / "weights"):
            f.chmod(0o600)
    child = next(item for item in client.suggest(exp, trials, count=5).parameter_assignments if PARENT in item.labels)
    path = directory(client.data_dir, exp, child.trial_name)
    for d in (path, path / "sub"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777, d
    for f in (path / "state.json", path / "sub" / "weights"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o666 == 0o666, f


def test_an_unusable_data_directory_is_unavailable(serve, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    client = serve("pbt", data_dir=blocked)
    code, details = status_of(lambda: client.suggest(pbt(), count=2))
    assert code == grpc.StatusCode.UNAVAILABLE and "--data-dir" in details


# -- validation, with Katib's cases ---------------------------------------------------------------------

VALIDATION = [
    ({}, None),
    ({"resample_probability": "0.5"}, None),
    ({"resample_probability": "0"}, None),
    ({"resample_probability": "1"}, None),
    ({"truncation_threshold": "0"}, None),
    ({"truncation_threshold": "1"}, None),
    ({"resample_probability": "1.5"}, '["resample_probability"]: 1.5 is out of range'),
    ({"resample_probability": "-0.1"}, '["resample_probability"]: -0.1 is out of range'),
    ({"resample_probability": "abc"}, '["resample_probability"]: "abc" is not a finite decimal number'),  # Katib #2684: UNKNOWN
    ({"n_population": "4"}, '["n_population"]: 4 is out of range'),
    ({"n_population": "10000000"}, '["n_population"]: 10000000 is out of range'),
    ({"n_population": "5.5"}, '["n_population"]: "5.5" is not an integer'),
    ({"truncation_threshold": "1.01"}, '["truncation_threshold"]: 1.01 is out of range'),
    ({"truncation_threshold": "-1"}, '["truncation_threshold"]: -1 is out of range'),
    ({"suggestion_trial_dir": None}, '"suggestion_trial_dir" is required by algorithm pbt'),
    ({"n_population": None}, '"n_population" is required by algorithm pbt'),
    ({"truncation_threshold": None}, '"truncation_threshold" is required by algorithm pbt'),
    ({"suggestion_trial_dir": ""}, '["suggestion_trial_dir"]: is empty'),
    ({"seed": "1"}, 'unknown setting "seed" for algorithm pbt'),
]


@pytest.mark.parametrize("changes,message", VALIDATION)
def test_validation(serve, changes, message):
    client = serve("pbt")
    settings = {k: v for k, v in {**SETTINGS, **changes}.items() if v is not None}
    exp = experiment(SPACE, name="valid", algorithm="pbt", settings=settings)
    if message is None:
        client.validate(exp)
        assert len(client.suggest(exp, count=3).parameter_assignments) == 3
        return
    for call in (lambda: client.validate(exp), lambda: client.suggest(exp, count=3)):
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
