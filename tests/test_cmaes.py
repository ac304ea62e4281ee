"""cmaes over real gRPC: exact counts, no repeats, replay from labels, restarts, validation, quality."""

import importlib.util
import re
import statistics
import sys
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from katib_services.services.client import ServerProcess, trial_pb

from .conftest import MIXED, Client, categorical, discrete, double, experiment, integer, points

ROOT = Path(__file__).resolve().parent.parent
TWO = [double("a", "0", "1"), double("b", "0", "1")]
CONDITIONS = ["Created", "Running", "Succeeded", "Killed", "Failed", "MetricsUnavailable", "EarlyStopped"]
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def cmaes(parameters, name="exp", **settings):
    return experiment(parameters, name=name, algorithm="cmaes", settings=settings, objective="minimize", metric="loss")


def key(assignment: dict) -> tuple:
    return tuple(sorted(assignment.items()))


def trial_key(trial) -> tuple:
    return key({a.name: a.value for a in trial.spec.parameter_assignments.assignments})


def proposals(reply) -> list[tuple[dict, dict]]:
    """(assignment, labels) of each proposal; every label must be a valid Kubernetes label value."""
    out = []
    for item in reply.parameter_assignments:
        labels = dict(item.labels)
        for value in labels.values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"invalid label value {value!r}"
        out.append(({a.name: a.value for a in item.assignments}, labels))
    return out


def ask(client, exp, trials, count) -> list[tuple[dict, dict]]:
    """One request; checks the count and that nothing repeats a trial or another proposal."""
    got = proposals(client.suggest(exp, trials, count=count))
    assert len(got) == count
    keys = [key(a) for a, _ in got]
    assert len(set(keys)) == count, "a batch repeats itself"
    assert not set(keys) & {trial_key(t) for t in trials}, "re-proposed an existing trial"
    return got


def as_trial(index, assignment, labels, condition="Succeeded", value=None):
    metrics = {} if value is None else {"loss": value}
    return trial_pb(f"t{index:04d}", assignment, condition, metrics, labels)


def member_labels(run, generation, member):
    return {"cmaes-run": str(run), "cmaes-generation": str(generation), "cmaes-member": str(member)}


def sphere(assignment, centre=0.3):
    return sum((float(v) - centre) ** 2 for k, v in sorted(assignment.items()) if k in ("a", "b", "c", "d"))


def drive(client, exp, rounds, batch, objective=sphere, trials=(), pending_every=0):
    """Requests `rounds` batches, feeding each proposal back as a trial (every `pending_every`-th
    one stays Running forever, the others succeed with the objective's value)."""
    trials = list(trials)
    for _ in range(rounds):
        for assignment, labels in ask(client, exp, trials, batch):
            i = len(trials)
            if pending_every and i % pending_every == pending_every - 1:
                trials.append(as_trial(i, assignment, labels, "Running"))
            else:
                trials.append(as_trial(i, assignment, labels, "Succeeded", objective(assignment)))
    return trials


def labels_of(trials) -> list[tuple[str, str, str]]:
    return [tuple(t.spec.labels[k] for k in ("cmaes-run", "cmaes-generation", "cmaes-member")) for t in trials]


# -- counts, distinctness, determinism, restarts -------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_exact_counts_and_no_repeats_with_pending_trials(serve, batch):
    client = serve("cmaes")
    trials = drive(client, cmaes(MIXED), rounds=6, batch=batch, objective=lambda a: float(a["dropout"]), pending_every=3)
    assert len(trials) == 6 * batch
    assert len({trial_key(t) for t in trials}) == len(trials)
    assert {t.spec.labels["cmaes-member"] for t in trials} != {"random"}, "proposals come from CMA-ES"


def test_never_repeats_a_trial_in_any_condition_until_the_space_is_full(serve):
    client = serve("cmaes")
    exp = cmaes([integer("a", 1, 5), integer("b", 1, 5)])  # 25 points
    trials = []
    while len(trials) < 25:
        for assignment, labels in ask(client, exp, trials, min(3, 25 - len(trials))):
            condition = CONDITIONS[len(trials) % len(CONDITIONS)]
            value = len(trials) % 5 if condition in ("Succeeded", "EarlyStopped") else None
            trials.append(as_trial(len(trials), assignment, labels, condition, value))
    assert len({trial_key(t) for t in trials}) == 25
    # The space is full: the reply still has the exact count, marked as drawn outside CMA-ES.
    reply = proposals(client.suggest(exp, trials, count=2))
    assert len(reply) == 2 and all(labels["cmaes-member"] == "random" for _, labels in reply)


def test_tiny_space_fills_before_repeating(serve):
    client = serve("cmaes")
    exp = cmaes([integer("a", 1, 2), integer("b", 1, 2)])  # 4 points
    reply = proposals(client.suggest(exp, count=4))
    assert len({key(a) for a, _ in reply}) == 4, "every point is used before any repeats"
    trials = [trial_pb(f"t{i}", a, "Succeeded", {"loss": 1.0}, labels) for i, (a, labels) in enumerate(reply)]
    again = proposals(client.suggest(exp, trials, count=2))
    assert len({key(a) for a, _ in again}) == 2, "a full space repeats old points, never within a batch"


def test_same_request_same_reply_and_replicas_agree(serve):
    client = serve("cmaes")
    exp = cmaes(MIXED, random_state=7)
    trials = drive(client, exp, rounds=4, batch=3, objective=lambda a: float(a["dropout"]), pending_every=4)
    first = client.suggest(exp, trials, count=3)
    assert first == client.suggest(exp, trials, count=3)
    assert first == serve("cmaes").suggest(exp, trials, count=3)
    other_seed = serve("cmaes").suggest(cmaes(MIXED, random_state=8), trials, count=3)
    assert points(other_seed) != points(first)


def test_restarted_pod_continues_exactly_as_the_old_one_would():
    """A new process (empty memory) answers every later request exactly like the long-running one."""
    exp = cmaes(TWO + [integer("c", 0, 20)], restart_strategy="ipop", popsize=4)
    with ServerProcess(["katib_services.services.suggestion", "--algorithm", "cmaes"]) as old:
        old_client = Client(old.address)
        trials = drive(old_client, exp, rounds=8, batch=3, pending_every=5)
        with ServerProcess(["katib_services.services.suggestion", "--algorithm", "cmaes"]) as new:
            new_client = Client(new.address)
            for _ in range(6):
                expected = old_client.suggest(exp, trials, count=3)
                assert new_client.suggest(exp, trials, count=3) == expected
                trials = drive(new_client, exp, rounds=1, batch=3, trials=trials, pending_every=5)
    assert len({trial_key(t) for t in trials}) == len(trials) == 42
    generations = {(r, g) for r, g, m in labels_of(trials) if m != "random"}
    assert len(generations) >= 6, "the replay moved through generations"


# -- replay semantics -------------------------------------------------------------------------------


def test_failed_members_count_as_the_worst_and_complete_a_generation(serve):
    client = serve("cmaes")
    exp = cmaes(TWO, popsize=4)
    first = ask(client, exp, [], 4)
    assert [labels["cmaes-member"] for _, labels in first] == ["0", "1", "2", "3"]

    def outcome(conditions):
        trials = [as_trial(i, a, lab, c, v) for i, ((a, lab), (c, v)) in enumerate(zip(first, conditions))]
        return ask(client, exp, trials, 1)[0][1]

    mixed = [("Failed", None), ("MetricsUnavailable", None), ("Killed", None), ("EarlyStopped", 0.5)]
    assert outcome(mixed)["cmaes-generation"] == "1"
    assert outcome([("Failed", None)] * 4)["cmaes-generation"] == "1"  # no value at all: a finite penalty
    assert outcome([("Succeeded", "nan"), ("Succeeded", "unavailable"), ("Succeeded", 1), ("Succeeded", 2)])[
        "cmaes-generation"
    ] == "1"
    waiting = outcome([("Running", None), ("Succeeded", 1), ("Succeeded", 2), ("Succeeded", 3)])
    assert (waiting["cmaes-generation"], waiting["cmaes-member"]) == ("0", "4"), "asks beyond popsize while one runs"


def test_a_late_finisher_does_not_change_a_generation_already_told(serve):
    client = serve("cmaes")
    exp = cmaes(TWO, popsize=4)
    gen0 = ask(client, exp, [], 6)
    good = [as_trial(i, a, lab, "Succeeded", sphere(a)) for i, (a, lab) in enumerate(gen0)]
    running = [as_trial(i, a, lab, "Running") for i, (a, lab) in enumerate(gen0)]
    # Member 0 still runs when members 1-4 finish: generation 0 is told without it.
    trials = running[:1] + good[1:5] + running[5:]
    (assignment, labels), = ask(client, exp, trials, 1)
    assert labels == {"cmaes-run": "0", "cmaes-generation": "1", "cmaes-member": "0", "cmaes-late": "0"}
    trials.append(as_trial(6, assignment, labels, "Running"))
    before = ask(client, exp, trials, 1)
    after = ask(client, exp, [good[0]] + trials[1:], 1)  # member 0 of generation 0 has finished since
    assert after == before and before[0][1]["cmaes-member"] == "1"
    # Without the label, the late value would be told and the distribution would differ.
    unlabelled = trials[:-1] + [as_trial(6, assignment, member_labels(0, 1, 0), "Running")]
    assert ask(client, exp, [good[0]] + unlabelled[1:], 1) != before


def test_a_member_that_shows_up_after_its_generation_was_told_changes_nothing(serve):
    """Katib may list a trial late; the vectors of later generations must not move because of it."""
    client = serve("cmaes")
    exp = cmaes(TWO, popsize=4)
    gen0 = ask(client, exp, [], 5)
    trials = [as_trial(i, a, lab, "Succeeded", sphere(a)) for i, (a, lab) in enumerate(gen0[:4])]
    (assignment, labels), = ask(client, exp, trials, 1)
    assert (labels["cmaes-generation"], labels["cmaes-member"]) == ("1", "0")
    trials.append(as_trial(4, assignment, labels, "Running"))
    expected = ask(client, exp, trials, 2)
    straggler = as_trial(5, *gen0[4], "Succeeded", 0.0)  # member 4 of generation 0, issued before the tell
    assert ask(client, exp, trials + [straggler], 2) == expected


def test_foreign_nan_and_garbage_trials_do_not_crash_or_disturb_the_replay(serve):
    client = serve("cmaes")
    exp = cmaes(TWO + [categorical("opt", "x", "y")], random_state=3)
    own = drive(client, exp, rounds=4, batch=3)
    last = own[-1].spec.labels
    run, generation, member = last["cmaes-run"], last["cmaes-generation"], int(last["cmaes-member"])
    # Members of the current generation whose metric is NaN or missing: they count as failed.
    own += [
        as_trial(90, {"a": "0.9", "b": "0.9", "opt": "x"}, member_labels(run, generation, member + 1), "Succeeded", "nan"),
        as_trial(91, {"a": "0.8", "b": "0.9", "opt": "x"}, member_labels(run, generation, member + 2), "Succeeded"),
    ]
    garbage_labels = [
        {},
        {"cmaes-run": "zero", "cmaes-generation": "0", "cmaes-member": "0"},
        {"cmaes-run": "0", "cmaes-generation": "0", "cmaes-member": "-1"},
        {"cmaes-run": "0", "cmaes-generation": "", "cmaes-member": "2"},
        member_labels(0, 0, 999999999),
        member_labels(0, 0, 12345678901234567890),
        {"cmaes-run": "\u0663", "cmaes-generation": "0", "cmaes-member": "0"},  # a non-ASCII digit
    ]
    foreign = [
        as_trial(100 + i, {"a": str(0.01 * (i + 1)), "b": "0.99", "opt": "y"}, labels, "Succeeded", 0.0)
        for i, labels in enumerate(garbage_labels)
    ]
    foreign += [
        trial_pb("other-exp-1", {"unrelated": "7"}, "Succeeded", {"loss": "0.1"}, member_labels(0, 0, 0)),
        trial_pb("other-exp-2", {"a": "2.5", "b": "0.5", "opt": "x"}, "Failed", {"loss": "unavailable"}),
        trial_pb("other-exp-3", {"a": "0.5", "b": "0.5", "opt": "z"}, "Succeeded", {"accuracy": "1"}),
    ]
    plain = ask(client, exp, own, 4)
    assert ask(client, exp, own + foreign, 4) == plain, "trials without valid labels are ignored by the replay"
    assert ask(client, exp, foreign, 2)  # only foreign trials: a fresh start, no crash


def test_distributions_and_steps_stay_in_bounds_and_on_the_grid(serve):
    client = serve("cmaes")
    space = [
        double("u", "-1", "1"),
        double("lu", "0.001", "10", distribution="logUniform"),
        double("n", "-3", "5", distribution="normal"),
        double("ln", "0.01", "100", distribution="logNormal"),
        integer("i", 1, 6),
        integer("li", 1, 1000, distribution="logUniform"),
        integer("si", 0, 100, step=5),
        double("sd", "0", "1", step="0.05"),
        double("snd", "0", "2", step="0.25", distribution="normal"),
        discrete("k", 16, 32, 64),
        categorical("c", "p", "q", "r"),
    ]
    trials = drive(client, cmaes(space, random_state=1), rounds=8, batch=5, objective=lambda a: float(a["u"]) ** 2)
    seen = {}
    for t in trials:
        for a in t.spec.parameter_assignments.assignments:
            seen.setdefault(a.name, set()).add(a.value)
    for p in space:
        fs, values = p["feasibleSpace"], seen[p["name"]]
        assert len(values) > 1, f"{p['name']} never moves"
        if "list" in fs:
            assert values <= set(fs["list"])
            continue
        lo, hi = Decimal(fs["min"]), Decimal(fs["max"])
        for text in values:
            value = Decimal(text)
            assert lo <= value <= hi, (p["name"], text)
            if p["parameterType"] == "int":
                assert re.fullmatch(r"-?\d+", text), text
            if "step" in fs:
                assert (value - lo) % Decimal(fs["step"]) == 0, (p["name"], text)
                assert len(text) <= 5, text  # exact decimals: "0.35", never "0.35000000000000003"


# -- restarts -----------------------------------------------------------------------------------------


def run_until(client, exp, batch, stop, limit):
    trials = []
    for _ in range(limit):
        trials = drive(client, exp, rounds=1, batch=batch, objective=lambda a: 1.0, trials=trials)  # flat
        if stop(labels_of(trials)):
            break
    return labels_of(trials)


def test_ipop_restarts_with_a_doubled_population(serve):
    client = serve("cmaes")
    exp = cmaes(TWO, restart_strategy="ipop", popsize=2)
    labels = run_until(client, exp, 2, lambda ls: ("1", "1", "0") in ls, limit=60)
    assert ("1", "1", "0") in labels, "CMA-ES converged on a flat objective, so a restart must happen"
    run1_gen0 = sorted(int(m) for r, g, m in labels if (r, g) == ("1", "0"))
    assert run1_gen0 == [0, 1, 2, 3], "the second run has popsize 4"
    assert max(int(g) for r, g, m in labels if r == "0") >= 40
    none = cmaes(TWO, restart_strategy="none", popsize=2)
    assert {r for r, _, _ in run_until(client, none, 2, lambda ls: False, limit=len(labels) // 2 + 2)} == {"0"}


def test_bipop_first_restart_is_a_small_run(serve):
    client = serve("cmaes")
    exp = cmaes(TWO, restart_strategy="bipop", popsize=4)
    labels = run_until(client, exp, 1, lambda ls: ("1", "1", "0") in ls, limit=140)
    assert ("1", "1", "0") in labels
    run1_gen0 = [int(m) for r, g, m in labels if (r, g) == ("1", "0")]
    assert len(run1_gen0) < 4, "a small run has a smaller population than the first"


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space,settings,expected",
    [
        (
            [double("x", "0", "1"), categorical("c", "a", "b"), discrete("d", 1, 2)],
            {},
            "spec.parameters: cmaes needs at least two int or double parameters and this experiment has 1",
        ),
        (TWO, {"sigma": "-10"}, 'spec.algorithm.algorithmSettings["sigma"]: -10 is out of range; it must be in [0, 1,000]'),
        (TWO, {"restart_strategy": "sometimes"}, '["restart_strategy"]: "sometimes" is not one of none, ipop, bipop'),
        (TWO, {"popsize": "1"}, '["popsize"]: 1 is out of range; it must be in [2, 1,000]'),
        (TWO, {"random_state": "-20"}, '["random_state"]: -20 is out of range'),
        (TWO, {"sigma0": "0.1"}, 'unknown setting "sigma0" for algorithm cmaes'),
    ],
)
def test_invalid_settings_are_invalid_argument_naming_the_field(serve, space, settings, expected):
    client = serve("cmaes")
    exp = cmaes(space, **settings)
    for call in (client.validate, client.suggest):
        with pytest.raises(grpc.RpcError) as caught:
            call(exp)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in caught.value.details()


@pytest.mark.parametrize(
    "settings",
    [
        {"restart_strategy": "ipop", "sigma": "0.1", "random_state": "10"},  # Katib's own test settings
        {"restart_strategy": "None", "sigma": "0"},  # Katib accepts both
        {"restart_strategy": "bipop", "sigma": "1000", "popsize": "2"},  # extreme, but must not crash
    ],
)
def test_katib_and_extreme_settings_are_accepted(serve, settings):
    client = serve("cmaes")
    exp = cmaes([integer("p1", 1, 5), categorical("p2", "a", "b"), discrete("p3", 3, 2, 6), double("p4", "1", "5")], **settings)
    client.validate(exp)
    drive(client, exp, rounds=3, batch=4, objective=lambda a: float(a["p4"]))


# -- search quality -------------------------------------------------------------------------------------


def shifted_sphere(assignment):
    return sum((float(assignment[f"x{i}"]) - c) ** 2 for i, c in enumerate((1.3, -2.1, 0.7, 2.9)))


def bench_objective(name):
    """An objective of bench/objectives.py (imported from its path: bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_objectives", ROOT / "bench" / "objectives.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module.OBJECTIVES[name]


@pytest.mark.parametrize("objective", ["sphere4", "hartmann6"])
def test_beats_random_at_equal_budget(serve, objective):
    """60 trials, one at a time, seeds 0-3: the median best regret must be well below random's."""
    if objective == "sphere4":
        parameters, function, optimum, bar = [double(f"x{i}", "-5", "5") for i in range(4)], shifted_sphere, 0.0, 0.25
    else:
        hartmann = bench_objective("hartmann6")
        parameters, function, optimum, bar = hartmann.parameters, hartmann.function, hartmann.optimum, 0.7
    regret = {}
    for algorithm in ("cmaes", "random"):
        client = serve(algorithm)
        regret[algorithm] = []
        for seed in range(4):
            exp = experiment(
                parameters, name="q", algorithm=algorithm, settings={"random_state": seed}, objective="minimize", metric="loss"
            )
            trials = drive(client, exp, rounds=60, batch=1, objective=function)
            regret[algorithm].append(min(float(t.status.observation.metrics[0].value) for t in trials) - optimum)
    assert statistics.median(regret["cmaes"]) < bar * statistics.median(regret["random"]), regret
