"""hyperband and asha over real gRPC: the schedule at any parallelism, restarts, failures, labels
as input, validation, the sampler, and a bar at equal resource. The shared contract and hostile
suites (tests/test_contract.py, tests/test_hostile.py, tests/test_fuzz.py) cover them too."""

import json
import math
import random
import statistics
from pathlib import Path

import grpc
import pytest
import yaml

from katib_services.runner import cli, spec
from katib_services.services.client import experiment_pb, trial_pb

from .conftest import categorical, double, experiment, integer

# Hyperband with r_l = 9, eta = 3: s_max = 2. Per bracket s, the configurations of each rung and
# their resource, from Li et al.'s formulas worked by hand: n = ceil(3 / (s + 1) * 3^s).
SIZES = {2: [9, 3, 1], 1: [5, 1], 0: [3]}
RESOURCES = {2: ["1", "3", "9"], 1: ["3", "9"], 0: ["9"]}
PER_ROUND = sum(map(sum, SIZES.values()))  # 22 trials
HB = ("hyperband-round", "hyperband-bracket", "hyperband-rung", "hyperband-config")
ASHA = ("asha-bracket", "asha-rung", "asha-config")
SPACE = [double("x", "0", "1"), double("y", "-1", "1"), categorical("opt", "sgd", "adam"), integer("epochs", 1, 1)]


def exp_for(algorithm, name="mf", parameters=SPACE, **settings):
    defaults = {"hyperband": {"r_l": 9}, "asha": {"max_resource": 9}}[algorithm]
    merged = {"resource_name": "epochs", "random_state": 7, **defaults, **settings}
    return experiment(parameters, name=name, algorithm=algorithm, settings=merged, objective="minimize", metric="loss")


def loss(assignment):
    """Lower is better; a longer run scores better, and the ranking of configurations holds at every resource."""
    a = {"x": "0.3", "y": "-0.2", "opt": "adam", **assignment}
    true = (float(a["x"]) - 0.3) ** 2 + (float(a["y"]) + 0.2) ** 2 + (a["opt"] == "sgd") * 0.05
    return true + 1.0 / float(a.get("epochs") or a["fraction"])


def assignment_of(trial):
    return {a.name: a.value for a in trial.spec.parameter_assignments.assignments}


def config_of(trial):
    return tuple(sorted((k, v) for k, v in assignment_of(trial).items() if k != "epochs"))


def labels_of(trial, keys=HB):
    return tuple(int(trial.spec.labels[k]) for k in keys)


class Run:
    """Drives an experiment as Katib's controller does: up to `parallelism` trials run; when one
    finishes (a seeded random one: trials end in any order), the free slots are asked for. Every
    reply must hold exactly the number asked for."""

    def __init__(self, client_for_call, exp, parallelism, seed=0, outcome=None):
        self.client_for_call = client_for_call
        self.exp = exp
        self.parallelism = parallelism
        self.rng = random.Random(seed)
        self.outcome = outcome or (lambda trial, a: ("Succeeded", {"loss": loss(a)}))
        self.trials = []
        self.running = []
        self.replies = []
        self.finished_at = {}  # trial name -> the number of trials proposed when it finished

    def step(self):
        count = self.parallelism - len(self.running)
        reply = self.client_for_call().suggest(self.exp, self.trials, count=count)
        assert count > 0 and len(reply.parameter_assignments) == count, "never a short or empty reply"
        for item in reply.parameter_assignments:
            a = {x.name: x.value for x in item.assignments}
            self.trials.append(trial_pb(f"t{len(self.trials):04d}", a, "Running", {}, dict(item.labels)))
            self.running.append(len(self.trials) - 1)
            self.replies.append((tuple(sorted(a.items())), tuple(sorted(item.labels.items()))))
        index = self.running.pop(self.rng.randrange(len(self.running)))
        trial = self.trials[index]
        condition, metrics = self.outcome(trial, assignment_of(trial))
        self.trials[index] = trial_pb(trial.name, assignment_of(trial), condition, metrics, dict(trial.spec.labels))
        self.finished_at[trial.name] = len(self.trials)

    def until(self, done, limit=400):
        for _ in range(limit):
            if done(self):
                return self
            self.step()
        raise AssertionError("the run did not get there")


def rounds_finished(count, per_round=PER_ROUND):
    def done(run):
        finished = [t for t in run.trials if t.status.condition != 1 and int(t.spec.labels[HB[0]]) < count]
        return len(finished) == count * per_round

    return done


def value(trial):
    return float(trial.status.observation.metrics[0].value)


# -- hyperband: the schedule -------------------------------------------------------------------


@pytest.mark.parametrize("parallelism", [1, 2, 3, 9])
def test_hyperband_follows_the_schedule_at_any_parallelism(serve, parallelism):
    client = serve("hyperband")
    run = Run(lambda: client, exp_for("hyperband"), parallelism, seed=parallelism).until(rounds_finished(3))
    rungs = {}
    position = {trial.name: n for n, trial in enumerate(run.trials)}
    for trial in run.trials:
        round_, s, i, c = labels_of(trial)
        rungs.setdefault((round_, s, i), []).append(trial)
    for round_ in range(3):
        for s, sizes in SIZES.items():
            for i, size in enumerate(sizes):
                members = rungs[(round_, s, i)]
                assert len(members) == size, (round_, s, i)
                assert {assignment_of(t)["epochs"] for t in members} == {RESOURCES[s][i]}
                if i:
                    below = sorted(rungs[(round_, s, i - 1)], key=value)
                    assert {config_of(t) for t in members} == {config_of(t) for t in below[:size]}, "the best of the rung below"
                    first = min(position[t.name] for t in members)
                    assert all(run.finished_at[t.name] <= first for t in below), "promoted only once its rung finished"
        configs = [config_of(t) for t in run.trials if int(t.spec.labels[HB[0]]) == round_ and t.spec.labels[HB[2]] == "0"]
        assert len(set(configs)) == len(configs) == 17, "each bracket starts fresh configurations"
    if parallelism == 9:
        first = run.trials[:9]
        assert [labels_of(t)[1:3] for t in first] == [(2, 0)] * 9 and {assignment_of(t)["epochs"] for t in first} == {"1"}


def test_hyperband_one_at_a_time_is_sequential_hyperband(serve):
    client = serve("hyperband")
    run = Run(lambda: client, exp_for("hyperband"), 1).until(rounds_finished(2))
    order = [labels_of(t)[:3] for t in run.trials[: 2 * PER_ROUND]]
    expected = [(r, s, i) for r in range(2) for s in (2, 1, 0) for i, n in enumerate(SIZES[s]) for _ in range(n)]
    assert order == expected


@pytest.mark.parametrize(
    "algorithm, parallelism", [("hyperband", 1), ("hyperband", 2), ("hyperband", 3), ("hyperband", 9), ("asha", 1), ("asha", 3)]
)
def test_a_restart_at_every_call_gives_the_same_proposals(serve, algorithm, parallelism):
    """hyperband's run to three finished rounds (asha's to 70 trials), once on one server and once
    on a new server for every call: the same replies."""
    exp = exp_for(algorithm, sampler="tpe")  # the model too is rebuilt from the request alone
    enough = rounds_finished(3) if algorithm == "hyperband" else (lambda run: len(run.trials) >= 70)

    def fresh():
        for server in serve.servers:
            server.shutdown(grace=0)
        serve.servers.clear()
        return serve(algorithm)

    client = serve(algorithm)
    steady = Run(lambda: client, exp, parallelism, seed=5).until(enough)
    restarted = Run(fresh, exp, parallelism, seed=5).until(enough)
    assert restarted.replies == steady.replies
    pod = serve.process(algorithm)  # a new process shares not even the algorithm's instance
    assert pod.suggest(exp, steady.trials, count=3) == fresh().suggest(exp, steady.trials, count=3)
    assert len({labels for _, labels in steady.replies}) == len(steady.replies)


def test_a_fractional_eta_takes_every_bracket_to_r_l(serve):
    """Rung i of a bracket holds floor(n * eta^-i) configurations, as in Li et al.: with r_l = 9 and
    eta = 2.5, bracket 2 has 7, 2 and 1 (flooring 2 / 2.5 again would end it below r_l)."""
    client = serve("hyperband")
    run = Run(lambda: client, exp_for("hyperband", eta="2.5"), 2).until(rounds_finished(1, per_round=18))
    rungs = {}
    for trial in run.trials:
        round_, s, i, _ = labels_of(trial)
        if round_ == 0:
            rungs.setdefault((s, i), []).append(assignment_of(trial)["epochs"])
    assert {key: len(resources) for key, resources in rungs.items()} == {(2, 0): 7, (2, 1): 2, (2, 2): 1, (1, 0): 4, (1, 1): 1, (0, 0): 3}
    assert {s: set(rungs[(s, s)]) for s in range(3)} == {s: {"9"} for s in range(3)}, "every bracket's last rung is at r_l"


def test_r_l_below_eta_is_plain_random_search_at_r_l(serve):
    client = serve("hyperband")
    run = Run(lambda: client, exp_for("hyperband", r_l=2, eta=3), 2).until(lambda run: len(run.trials) >= 12)
    assert {assignment_of(t)["epochs"] for t in run.trials} == {"2"}
    assert {labels_of(t)[1:3] for t in run.trials} == {(0, 0)}
    assert len({config_of(t) for t in run.trials}) == len(run.trials)


def test_a_double_resource_takes_plain_decimals(serve):
    client = serve("hyperband")
    space = [double("x", "0", "1"), double("fraction", "0.5", "0.5")]
    run = Run(lambda: client, exp_for("hyperband", parameters=space, resource_name="fraction", r_l="0.9", eta=2), 2)
    run.until(lambda run: len(run.trials) >= 4)
    assert {assignment_of(t)["fraction"] for t in run.trials} == {"0.9"}
    run = Run(lambda: client, exp_for("hyperband", parameters=space, resource_name="fraction", r_l="1e-5"), 1)
    assert assignment_of(run.until(lambda run: run.trials).trials[0])["fraction"] == "0.00001"
    run = Run(lambda: client, exp_for("hyperband", parameters=space, resource_name="fraction", r_l=10), 1)
    resources = {assignment_of(t)["fraction"] for t in run.until(lambda run: len(run.trials) >= 40).trials}
    assert resources == {"1.1111111111111112", "3.3333333333333335", "10.0"}
    run = Run(lambda: serve("asha"), exp_for("asha", parameters=space, resource_name="fraction", min_resource="1e-150", max_resource=1, eta=1000), 1)
    assert assignment_of(run.until(lambda run: run.trials).trials[0])["fraction"] == "1E-150", "not 152 characters"


# -- failures, missing trials, labels ----------------------------------------------------------------


def finish(trials, outcomes):
    """The trials with the given (condition, value) outcomes, in order."""
    out = []
    for trial, (condition, metric) in zip(trials, outcomes):
        metrics = {} if metric is None else {"loss": metric}
        out.append(trial_pb(trial.name, assignment_of(trial), condition, metrics, dict(trial.spec.labels)))
    return out


def proposed(reply, start):
    return [trial_pb(f"t{start + i:04d}", {a.name: a.value for a in item.assignments}, "Running", {}, dict(item.labels)) for i, item in enumerate(reply.parameter_assignments)]


def test_failed_killed_and_stopped_trials_are_the_worst_of_their_rung(serve):
    client = serve("hyperband")
    exp = exp_for("hyperband")
    base = proposed(client.suggest(exp, [], count=9), 0)
    outcomes = [
        ("Failed", None), ("Succeeded", "0.5"), ("EarlyStopped", "0.01"), ("Killed", None), ("Succeeded", "0.3"),
        ("Succeeded", "nan"), ("Succeeded", "0.9"), ("Failed", "0.0"), ("Succeeded", "0.4"),
    ]
    done = finish(base, outcomes)
    reply = client.suggest(exp, done, count=5)
    labels = [labels_of(t) for t in proposed(reply, 9)]
    assert [l[:3] for l in labels] == [(0, 2, 1)] * 3 + [(0, 1, 0)] * 2, "three promotions, then the next bracket"
    assert [l[3] for l in labels[:3]] == [4, 8, 1], "the best three that succeeded with a value, best first"
    promoted = proposed(reply, 9)[:3]
    for trial, c in zip(promoted, [4, 8, 1]):
        assert config_of(trial) == config_of(base[c]) and assignment_of(trial)["epochs"] == "3"
    # A rung that fails entirely ends its bracket: nothing is promoted from it, and nothing hangs.
    rung1 = finish(promoted, [("Failed", None)] * 3)
    rest = finish(proposed(reply, 9)[3:], [("Succeeded", "1")] * 2)
    after = proposed(client.suggest(exp, done + rung1 + rest, count=4), 14)
    assert [labels_of(t)[:3] for t in after] == [(0, 1, 0)] * 3 + [(0, 0, 0)]


def test_a_trial_missing_from_the_request_is_proposed_again(serve):
    """Katib leaves MetricsUnavailable trials out of the request: their place looks free."""
    client = serve("hyperband")
    exp = exp_for("hyperband")
    base = finish(proposed(client.suggest(exp, [], count=9), 0), [("Succeeded", str(i)) for i in range(9)])
    reply = proposed(client.suggest(exp, base[:4] + base[5:], count=2), 9)
    assert [labels_of(t) for t in reply] == [(0, 2, 0, 4), (0, 1, 0, 0)]
    assert config_of(reply[0]) != config_of(base[4]), "a new configuration in the free place"


def test_trials_missing_from_the_request_leave_the_later_ones_in_the_schedule(serve):
    """The trials Katib leaves out do not make the ones after them foreign. asha: with the first
    three of six base trials missing, the best of the other three (configuration 4) is promoted.
    hyperband with r_l < eta (every trial its own round): with rounds 0 and 1 missing, rounds 2
    and 3 keep their places, so a third new trial goes to round 4."""
    client = serve("asha")
    exp = exp_for("asha")
    base = finish(proposed(client.suggest(exp, [], count=6), 0), [("Succeeded", v) for v in ("0.5", "0.4", "0.3", "0.2", "0.1", "0.6")])
    for missing in (2, 3):
        reply = proposed(client.suggest(exp, base[missing:], count=1), 6)
        assert labels_of(reply[0], ASHA) == (0, 1, 4) and config_of(reply[0]) == config_of(base[4])
    client = serve("hyperband")
    exp = exp_for("hyperband", r_l=2)
    rounds = finish(proposed(client.suggest(exp, [], count=4), 0), [("Succeeded", str(i)) for i in range(4)])
    reply = proposed(client.suggest(exp, rounds[2:], count=3), 4)
    assert [labels_of(t)[0] for t in reply] == [0, 1, 4]


def test_asha_failures_count_in_the_rung_and_are_never_promoted(serve):
    client = serve("asha")
    exp = exp_for("asha")
    base = proposed(client.suggest(exp, [], count=6), 0)
    assert [labels_of(t, ASHA) for t in base] == [(0, 0, c) for c in range(6)]
    done = finish(base, [("Failed", None), ("Succeeded", "0.2"), ("EarlyStopped", "0.0"), ("Killed", None), ("Succeeded", "0.1"), ("Succeeded", "nan")])
    # Six finished: the top two (floor(6/3)) are configurations 4 and 1; the stopped one is never promoted.
    reply = proposed(client.suggest(exp, done, count=3), 6)
    assert [labels_of(t, ASHA) for t in reply] == [(0, 1, 4), (0, 1, 1), (0, 0, 6)]
    assert [config_of(t) for t in reply[:2]] == [config_of(base[4]), config_of(base[1])]
    all_failed = finish(base[:3], [("Failed", None)] * 3)
    assert [labels_of(t, ASHA) for t in proposed(client.suggest(exp, all_failed, count=1), 3)] == [(0, 0, 3)]


def reference_asha(trials, eta, top):
    """The next action of ASHA (Li et al., Algorithm 2) for one bracket, written from the paper:
    ("promote", config, rung) for the best unpromoted configuration in the top 1/eta of the
    highest possible rung, else ("new",)."""
    rungs = {}
    for t in trials:
        _, k, c = labels_of(t, ASHA)
        rungs.setdefault(k, {})[c] = t
    for k in range(top - 1, -1, -1):
        done = [(value(t) if t.status.condition == 2 else math.inf, c) for c, t in rungs.get(k, {}).items() if t.status.condition != 1]
        for _, c in sorted(done)[: len(done) // eta]:
            if c not in rungs.get(k + 1, {}) and _ != math.inf:
                return ("promote", c, k + 1)
    return ("new",)


@pytest.mark.parametrize("parallelism", [1, 4])
def test_asha_promotes_as_the_paper_says_and_never_waits(serve, parallelism):
    client = serve("asha")
    exp = exp_for("asha", max_resource=27)
    flaky = lambda trial, a: ("Failed", {}) if int(trial.name[1:]) % 7 == 3 else ("Succeeded", {"loss": loss(a)})  # noqa: E731
    run = Run(lambda: client, exp, parallelism, seed=3, outcome=flaky)
    run.until(lambda run: len(run.trials) >= parallelism)
    checked = 0
    while len(run.trials) < 150:
        before = list(run.trials)
        expected = reference_asha(before, 3, 3) if len(run.running) == parallelism - 1 else None
        run.step()
        if expected is not None:  # exactly one slot was free: the reply is the paper's next action
            got = labels_of(run.trials[len(before)], ASHA)
            assert (("promote", got[2], got[1]) if got[1] else ("new",)) == expected
            checked += 1
    assert checked > 50
    tops = [t for t in run.trials if t.spec.labels[ASHA[1]] == "3"]
    assert tops and {assignment_of(t)["epochs"] for t in tops} == {"27"}


def test_asha_brackets_share_the_resource(serve):
    client = serve("asha")
    run = Run(lambda: client, exp_for("asha", max_resource=27, brackets=3), 4).until(lambda run: len(run.trials) >= 120)
    spent = {}
    for t in run.trials:
        b = labels_of(t, ASHA)[0]
        spent[b] = spent.get(b, 0) + int(assignment_of(t)["epochs"])
        assert int(t.spec.labels[ASHA[1]]) >= b and assignment_of(t)["epochs"] == ["1", "3", "9", "27"][int(t.spec.labels[ASHA[1]])]
    assert set(spent) == {0, 1, 2} and max(spent.values()) - min(spent.values()) <= 27 + 9


@pytest.mark.parametrize("algorithm,keys", [("hyperband", HB), ("asha", ASHA)])
def test_labels_that_do_not_fit_make_their_trials_foreign(serve, algorithm, keys):
    client = serve(algorithm)
    exp = exp_for(algorithm)
    run = Run(lambda: client, exp, 3, seed=1).until(lambda run: len(run.trials) >= 30)
    trials = [t for t in run.trials if t.status.condition != 1]
    template = trials[0]
    crafted = []
    bad_labels = [
        dict(zip(keys, ["99999999"] * 4)), dict(zip(keys, ["0", "0", "7", "3"])), dict(zip(keys, ["0", "2", "0", "999"])),
        dict(zip(keys, ["-1", "0", "0", "0"])), dict(zip(keys, ["٣", "0", "0", "0"])), dict(zip(keys, ["1e3", "0", "0", "0"])),
        {**dict(template.spec.labels), keys[-1]: "0"},  # a second claim to a place: the first trial by name keeps it
        dict(template.spec.labels),  # the right place with another resource
    ]
    for i, labels in enumerate(bad_labels):
        a = {**assignment_of(template), "x": str(0.001 * (i + 1))}
        if i == len(bad_labels) - 1:
            a = {**assignment_of(template), "epochs": "3"}
        crafted.append(trial_pb(f"zz{i}", a, "Succeeded", {"loss": "-100"}, labels))
    crafted.append(trial_pb("t0000-twin", assignment_of(template), "Succeeded", {"loss": "-100"}, dict(template.spec.labels)))
    clean = client.suggest(exp, trials, count=4)
    poisoned = client.suggest(exp, trials + crafted, count=4)
    assert [dict(p.labels) for p in poisoned.parameter_assignments] == [dict(p.labels) for p in clean.parameter_assignments]


@pytest.mark.parametrize("algorithm,keys,size", [("hyperband", HB, 9), ("asha", ASHA, 6)])
def test_a_promotion_with_another_configuration_is_foreign(serve, algorithm, keys, size):
    """A trial in a promotion's place (its labels and resource) with a configuration its base trial
    does not have does not take the place: the promotion is still proposed."""
    client = serve(algorithm)
    exp = exp_for(algorithm)
    base = finish(proposed(client.suggest(exp, [], count=size), 0), [("Succeeded", str(i)) for i in range(size)])
    (promotion,) = client.suggest(exp, base, count=1).parameter_assignments
    assert promotion.labels[keys[-2]] == "1" and {x.name: x.value for x in promotion.assignments}["epochs"] == "3"
    impostor = {**{x.name: x.value for x in promotion.assignments}, "x": "0.999"}
    crafted = trial_pb("zz-impostor", impostor, "Succeeded", {"loss": "-100"}, dict(promotion.labels))
    assert list(client.suggest(exp, [*base, crafted], count=1).parameter_assignments) == [promotion]


def test_asha_numbers_every_new_configuration_so_that_it_reads_back(serve):
    """A base trial holding configuration 999999999 (nine digits, the most a label number has):
    new configurations take the lowest free numbers, so every one reads back as a member and no
    place is proposed twice."""
    client = serve("asha")
    exp = exp_for("asha")
    first = proposed(client.suggest(exp, [], count=1), 0)[0]
    high = trial_pb("a-high", assignment_of(first), "Succeeded", {"loss": "0.5"}, {ASHA[0]: "0", ASHA[1]: "0", ASHA[2]: "999999999"})
    run = Run(lambda: client, exp, 3, seed=2)
    run.trials.append(high)
    run.until(lambda run: len(run.trials) >= 40)
    places = [labels_of(t, ASHA) for t in run.trials[1:]]
    assert len(set(places)) == len(places) and all(c < 40 or c == 999999999 for _, _, c in places), places


@pytest.mark.parametrize("algorithm", ["hyperband", "asha"])
def test_a_configuration_space_smaller_than_the_batch_still_gets_exact_counts(serve, algorithm):
    client = serve(algorithm)
    exp = exp_for(algorithm, parameters=[categorical("opt", "sgd", "adam"), integer("epochs", 1, 1)])
    run = Run(lambda: client, exp, 5).until(lambda run: len(run.trials) >= 40)
    extras = [t for t in run.trials if t.spec.labels.get(f"{algorithm}-config") == "extra"]
    assert extras, "more slots than configurations: the rest are extras outside the schedule"
    code = None
    try:
        client.suggest(exp, run.trials, count=7)
    except grpc.RpcError as error:
        code = error.code()
    assert code == grpc.StatusCode.FAILED_PRECONDITION, "2 configurations x 3 resources: a batch of 7 cannot differ"


# -- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm,parameters,settings,field,text",
    [
        ("hyperband", SPACE, {"r_l": None}, '"r_l" is required', ""),
        ("hyperband", SPACE, {"resource_name": None}, '"resource_name" is required', ""),
        ("hyperband", SPACE, {"resource_name": "epoch"}, 'algorithmSettings["resource_name"]', "is not in spec.parameters"),
        ("hyperband", SPACE, {"resource_name": "opt"}, 'algorithmSettings["resource_name"]', "categorical parameter"),
        ("hyperband", [double("x", 0, 1), {"name": "e", "parameterType": "discrete", "feasibleSpace": {"list": ["1", "3"]}}], {"resource_name": "e"}, 'algorithmSettings["resource_name"]', "discrete parameter"),
        ("hyperband", SPACE, {"eta": 1}, 'algorithmSettings["eta"]', "out of range"),
        ("hyperband", SPACE, {"eta": "0.5"}, 'algorithmSettings["eta"]', "out of range"),
        ("hyperband", SPACE, {"r_l": 0}, 'algorithmSettings["r_l"]', "out of range"),
        ("hyperband", SPACE, {"r_l": -3}, 'algorithmSettings["r_l"]', "out of range"),
        ("hyperband", SPACE, {"r_l": "1e10"}, 'algorithmSettings["r_l"]', "out of range"),
        ("hyperband", SPACE, {"r_l": 2, "eta": "1.1"}, 'algorithmSettings["eta"]', "round to the same value (1)"),
        ("hyperband", SPACE, {"r_l": "1e9", "eta": "1.001"}, 'algorithmSettings["eta"]', "more than 64 rungs"),
        ("hyperband", [integer("epochs", 1, 1)], {}, "spec.parameters", "only the resource"),
        ("hyperband", SPACE, {"sampler": "bohb"}, 'algorithmSettings["sampler"]', "one of random, tpe"),
        ("asha", SPACE, {"max_resource": None}, '"max_resource" is required', ""),
        ("asha", SPACE, {"min_resource": 10}, 'algorithmSettings["max_resource"]', "must not be less than min_resource"),
        ("asha", SPACE, {"brackets": 4}, 'algorithmSettings["brackets"]', "more than the 3 rung(s)"),
        ("asha", SPACE, {"brackets": 0}, 'algorithmSettings["brackets"]', "out of range"),
        ("asha", SPACE, {"resource_name": "x", "max_resource": 3, "min_resource": "1e-300", "eta": 2}, 'algorithmSettings["eta"]', "more than 64 rungs"),
    ],
)
def test_invalid_settings_are_invalid_argument_naming_the_field(serve, algorithm, parameters, settings, field, text):
    client = serve(algorithm)
    exp = exp_for(algorithm, parameters=parameters, **settings)
    for s in list(exp.spec.algorithm.algorithm_settings):
        if s.value == "None":
            exp.spec.algorithm.algorithm_settings.remove(s)
    for call in (lambda: client.validate(exp), lambda: client.suggest(exp)):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in caught.value.details() and text in caught.value.details(), caught.value.details()


@pytest.mark.parametrize(
    "algorithm,settings",
    [
        ("hyperband", {"r_l": 2, "eta": 2}),  # Katib's example
        ("hyperband", {"r_l": 1}),
        ("hyperband", {"r_l": "1e9", "eta": 1000}),
        ("asha", {"max_resource": 1}),
        ("asha", {"min_resource": "0.5", "max_resource": 100, "eta": 2, "brackets": 3}),
    ],
)
def test_edge_settings_are_accepted_and_run(serve, algorithm, settings):
    client = serve(algorithm)
    exp = exp_for(algorithm, **settings)
    client.validate(exp)
    Run(lambda: client, exp, 4).until(lambda run: len(run.trials) >= 20)


# -- the model and the bar ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["hyperband", "asha"])
def test_tpe_sampler_draws_where_the_top_results_are(serve, algorithm):
    """30 finished configurations at the lowest rung, all better near x = 0.2: with sampler tpe
    new configurations come from the model, with random they do not."""
    space = [double("x", "0", "1"), integer("epochs", 1, 1)]
    trials = []
    for i in range(30):
        x = (i + 0.5) / 30
        labels = {"hyperband": {HB[0]: "5", HB[1]: "2", HB[2]: "0", HB[3]: str(i)}, "asha": {ASHA[0]: "0", ASHA[1]: "0", ASHA[2]: str(i)}}[algorithm]
        trials.append(trial_pb(f"t{i:02d}", {"x": repr(x), "epochs": "1"}, "Running", {}, labels))
    for i in range(30):
        x = float(assignment_of(trials[i])["x"])
        trials[i] = trial_pb(trials[i].name, {"x": repr(x), "epochs": "1"}, "Succeeded", {"loss": abs(x - 0.2)}, dict(trials[i].spec.labels))
    distances = {}
    for sampler in ("tpe", "random"):
        client = serve(algorithm)
        reply = client.suggest(exp_for(algorithm, parameters=space, sampler=sampler), trials, count=40)
        rung = HB[2] if algorithm == "hyperband" else ASHA[1]
        new = [float(assignment_of(t)["x"]) for t in proposed(reply, 30) if t.spec.labels[rung] == "0"]
        assert len(new) >= 25
        distances[sampler] = statistics.median(abs(x - 0.2) for x in new)
    assert distances["tpe"] < 0.15 < distances["random"], distances


def test_the_tpe_sampler_fits_the_highest_rung_with_enough_results(serve):
    """BOHB's rule: the model is fitted at the highest rung with more results than configuration
    parameters. Rung 0 (30 results) is best near x = 0.2, rung 1 near x = 0.8: new configurations
    follow rung 1 while it has 30 results, and rung 0 when rung 1 has only one."""
    space = [double("x", "0", "1"), integer("epochs", 1, 1)]
    exp = exp_for("asha", parameters=space, sampler="tpe")

    def trial(name, i, rung):
        x = (i + 0.5) / 30
        loss = abs(x - (0.2 if rung == 0 else 0.8))
        labels = {ASHA[0]: "0", ASHA[1]: str(rung), ASHA[2]: str(i)}
        return trial_pb(name, {"x": repr(x), "epochs": ["1", "3"][rung]}, "Succeeded", {"loss": loss}, labels)

    rung0 = [trial(f"a{i:02d}", i, 0) for i in range(30)]
    medians = []
    for promoted in (range(30), [27]):
        rung1 = [trial(f"b{i:02d}", i, 1) for i in promoted]
        reply = serve("asha").suggest(exp, rung0 + rung1, count=40)
        new = [float(assignment_of(t)["x"]) for t in proposed(reply, 60) if t.spec.labels[ASHA[1]] == "0"]
        assert len(new) >= 20
        medians.append(statistics.median(new))
    assert medians[0] > 0.6 and medians[1] < 0.4, medians


def fidelity_loss(assignment):
    """A true loss, seen through a resource-dependent distortion that keeps most of the ranking."""
    x, y = float(assignment["x"]), float(assignment["y"])
    true = (x - 0.3) ** 2 + (y + 0.2) ** 2
    fidelity = float(assignment["epochs"]) / 9
    return true + (1 - fidelity) * (0.3 + 0.2 * math.sin(17 * x) * math.cos(11 * y))


def incumbent_regret(trials):
    """The true loss of the configuration a user would pick: the best observed one at the highest resource run."""
    finished = [t for t in trials if t.status.condition == 2]
    top = max(float(assignment_of(t)["epochs"]) for t in finished)
    best = min((t for t in finished if float(assignment_of(t)["epochs"]) == top), key=value)
    a = assignment_of(best)
    return (float(a["x"]) - 0.3) ** 2 + (float(a["y"]) + 0.2) ** 2


@pytest.mark.parametrize("algorithm", ["hyperband", "asha"])
def test_beats_random_at_equal_resource(serve, algorithm):
    """Median over 3 seeds of the incumbent's true loss after 15 full-resource trials' worth of epochs."""
    space = [double("x", "0", "1"), double("y", "-1", "1"), integer("epochs", 1, 1)]
    budget = 15 * 9
    outcome = lambda trial, a: ("Succeeded", {"loss": fidelity_loss(a)})  # noqa: E731
    results = {}
    for name in (algorithm, "random"):
        client = serve(name)
        regrets = []
        for seed in range(3):
            if name == "random":
                exp = experiment([*space[:2], integer("epochs", 9, 9)], name=f"b{seed}", algorithm="random", settings={"random_state": seed}, objective="minimize", metric="loss")
            else:
                exp = exp_for(algorithm, name=f"b{seed}", parameters=space, random_state=seed)

            def spent(run):
                return sum(int(assignment_of(t)["epochs"]) for t in run.trials if t.status.condition != 1) >= budget

            run = Run(lambda: client, exp, 2, seed=seed, outcome=outcome).until(spent, limit=1000)
            regrets.append(incumbent_regret(run.trials))
        results[name] = statistics.median(regrets)
    assert results[algorithm] < results["random"], results


# -- Katib's example under katib-local ----------------------------------------------------------------

DATA = Path(__file__).resolve().parent / "data"


def test_katib_hyperband_example_validates_and_runs_under_katib_local(serve, tmp_path):
    text = (DATA / "katib-hyperband.yaml").read_text()
    katib = tmp_path / "katib.yaml"
    katib.write_text(text.replace("TRIAL_SCRIPT", "/opt/mxnet-mnist/mnist.py"))  # Katib's file as published
    config = spec.load(katib)
    serve("hyperband").validate(experiment_pb(config.name, config.spec))

    def run_local(document, name):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        workdir = tmp_path / name
        with pytest.raises(SystemExit) as exited:
            cli.main(["run", str(path), "--workdir", str(workdir)])
        data = json.loads((workdir / "experiment.json").read_text())
        assert exited.value.code == 0 and data["status"]["reason"] == "MaxTrialsReached", data["status"]
        return data["trials"]

    document = yaml.safe_load(text.replace("TRIAL_SCRIPT", str(DATA / "mxnet_like.py")))  # the stand-in trainer
    trials = run_local(document, "as-published")
    assert len(trials) == 2 and all(t["condition"] == "Succeeded" for t in trials)
    assert [t["assignment"]["num-epochs"] for t in trials] == ["1", "1"]
    assert [t["labels"]["hyperband-bracket"] + t["labels"]["hyperband-rung"] for t in trials] == ["10", "10"]

    document["spec"]["maxTrialCount"] = 6  # long enough for bracket 1 to promote its best to 2 epochs
    trials = run_local(document, "longer")
    first = [t for t in trials if t["labels"]["hyperband-round"] == "0"]
    base = [t for t in first if t["labels"]["hyperband-bracket"] == "1" and t["labels"]["hyperband-rung"] == "0"]
    best = max(base, key=lambda t: float(t["observation"]["Validation-accuracy"]))
    promoted = [t for t in first if t["labels"]["hyperband-rung"] == "1"]
    assert len(base) == 2 and len(promoted) == 1
    assert promoted[0]["assignment"] == {**best["assignment"], "num-epochs": "2"}
    assert promoted[0]["labels"]["hyperband-config"] == best["labels"]["hyperband-config"]
    assert {t["assignment"]["num-epochs"] for t in first if t["labels"]["hyperband-bracket"] == "0"} == {"2"}


@pytest.mark.parametrize("name", ["asha.yaml", "random.yaml"])
def test_the_example_manifests_are_valid(serve, name):
    config = spec.load(Path(__file__).resolve().parent.parent / "examples" / "hyperband" / name)
    client = serve(config.spec["algorithm"]["algorithmName"])
    client.validate(experiment_pb(config.name, config.spec))
    assert (config.base_dir / config.container.command[1]).is_file(), "the trainer of examples/anomaly"
