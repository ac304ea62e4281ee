"""hyperband: Li et al.'s Hyperband, kept in trial labels, at any parallelism, never hanging.

Schedule. `s_max = floor(log_eta(r_l))` (0 when `r_l < eta`). A *round* is one pass over the
brackets `s = s_max, ..., 0`; bracket s starts `n = ceil((s_max + 1) / (s + 1) * eta^s)` new
configurations at resource `r_l * eta^-s` (rung 0), and rung i > 0 holds the best
`n_i = floor(n * eta^-i)` configurations of rung i - 1 at eta times its resource, up to rung s at
`r_l` (for an integer eta, n_i is `floor(n_(i-1) / eta)`; for any eta, every bracket reaches `r_l`).
Resources are the levels of the ladder in `algorithms.multifidelity` (level `s_max - s + i`).
With `r_l < eta` there is one bracket with one rung: plain random (or TPE) search at `r_l`.

Labels. Each proposal carries `hyperband-round`, `hyperband-bracket` (s), `hyperband-rung` (i) and
`hyperband-config` (the configuration's number in its bracket's rung 0, kept by its promotions).
Every request rebuilds the schedule's state from them; nothing else is kept.

Promotions. A rung's promotions are decided once all of its trials are in the request and
finished: the best `n_(i+1)` of rung i by objective, lowest configuration number on ties. A FAILED,
KILLED, METRICSUNAVAILABLE or EARLYSTOPPED trial, or one without a value, is the worst of its rung
and never promoted, so such a rung may promote fewer (none: the bracket ends there).

Slots. Every call returns exactly the number asked for: first the promotions already decided and
not yet proposed (earliest round and bracket first), then new configurations of the first bracket
whose rung 0 is not fully proposed, in schedule order, across rounds. Rounds never run out, so no
slot waits for a rung to finish and the experiment ends by maxTrialCount or its goal.

Labels are input. A trial belongs to the schedule only when its four labels are plain numbers
that fit it (at most nine digits, bracket at most s_max, rung within the bracket, configuration
below rung 0's size), its resource is its rung's, and, above rung 0, its
configuration is one its rung 0 trial has and its lower rung decided to promote; when two trials
claim one place, the first by name wins. Any other trial is foreign: never proposed again, never
in the schedule. So replay is linear in the trials. Katib leaves METRICSUNAVAILABLE trials out of
the request: their place looks free and is proposed again (a new configuration in rung 0, the
same promotion above).
"""

from __future__ import annotations

from typing import Any

from .base import Reply, Request
from .history import Trial
from .multifidelity import ETA, RESOURCE_NAME, SAMPLER, Batch, Fidelity, Ladder, MultiFidelity, finished, place_labels
from .multifidelity import ceiling, free_numbers, placed, ranked, whole
from .settings import RANDOM_STATE, Schema, Setting
from .space import ParamType

ROUND, BRACKET, RUNG, CONFIG = LABELS = "hyperband-round", "hyperband-bracket", "hyperband-rung", "hyperband-config"


class Hyperband(MultiFidelity):
    name = "hyperband"
    summary = (
        "Hyperband (Li et al.) with its state in trial labels: brackets of successive halving over rounds, "
        "exact counts at any parallelism; random or TPE (BOHB-style) configurations."
    )
    schema = Schema(
        Setting(
            "r_l",
            float,
            None,
            "Maximum resource per configuration: the resource of the top rung.",
            low=0,
            low_open=True,
            high=1e9,
            required=True,
        ),
        ETA,
        RESOURCE_NAME,
        RANDOM_STATE,
        SAMPLER,
    )

    def ladder(self, settings: dict[str, Any], kind: ParamType) -> tuple[Ladder, str | None]:
        return Ladder.build(settings["r_l"], 1.0, settings["eta"], kind)

    def suggest(self, request: Request) -> Reply:
        fidelity = Fidelity(request.experiment.space, request.settings["resource_name"])
        schedule = _Schedule(fidelity.top, request.settings["eta"])
        brackets = _replay(request.history.trials, fidelity, schedule)
        batch = Batch(request, fidelity, {CONFIG: "extra"})  # outside the schedule
        for key in sorted(brackets, key=schedule.position):
            bracket = brackets[key]
            for c in bracket.waiting:
                if batch.full:
                    break
                config = fidelity.config(bracket.rungs[0][c].point)
                rung = bracket.next_rung
                batch.promote(config, schedule.level(key[1], rung), place_labels(LABELS, (*key, rung, c)))
        position = 0
        while not batch.full:
            key = schedule.bracket_at(position)
            bracket = brackets.get(key) or _Bracket([{}], [], 0)
            size = schedule.sizes[key[1]][0]
            free = free_numbers(bracket.rungs[0], size)
            while not batch.full:
                c = next(free, None)
                if c is None:
                    break
                batch.new(schedule.level(key[1], 0), place_labels(LABELS, (*key, 0, c)))
            position += 1
        return Reply(batch.proposals)


class _Schedule:
    def __init__(self, s_max: int, eta: float):
        self.s_max = s_max
        self.sizes: list[list[int]] = []  # sizes[s][i]: configurations in rung i of bracket s
        for s in range(s_max + 1):
            n = ceiling((s_max + 1) / (s + 1) * eta**s)
            self.sizes.append([whole(n / eta**i) for i in range(s + 1)])

    def level(self, s: int, rung: int) -> int:
        return self.s_max - s + rung

    def position(self, key: tuple[int, int]) -> int:
        """The order of (round, bracket) in the schedule."""
        return key[0] * (self.s_max + 1) + self.s_max - key[1]

    def bracket_at(self, position: int) -> tuple[int, int]:
        round_, offset = divmod(position, self.s_max + 1)
        return round_, self.s_max - offset


class _Bracket:
    """One bracket of one round: members of each rung reached (configuration -> trial), and the
    promotions decided into rung `next_rung` that no trial holds yet."""

    def __init__(self, rungs: list[dict[int, Trial]], waiting: list[int], next_rung: int):
        self.rungs = rungs
        self.waiting = waiting
        self.next_rung = next_rung


def _replay(trials: list[Trial], fidelity: Fidelity, schedule: _Schedule) -> dict[tuple[int, int], _Bracket]:
    claims: dict[tuple[int, int], list[list[tuple[int, Trial]]]] = {}
    for t in trials:
        place = placed(t, LABELS)
        if place is None:
            continue
        round_, s, rung, c = place
        if s > schedule.s_max:
            continue
        sizes = schedule.sizes[s]
        if rung < len(sizes) and c < sizes[0] and fidelity.level(t.point) == schedule.level(s, rung):
            claims.setdefault((round_, s), [[] for _ in sizes])[rung].append((c, t))
    return {key: _bracket(rungs, fidelity, schedule.sizes[key[1]]) for key, rungs in claims.items()}


def _bracket(claims: list[list[tuple[int, Trial]]], fidelity: Fidelity, sizes: list[int]) -> _Bracket:
    base: dict[int, Trial] = {}
    for c, t in claims[0]:
        base.setdefault(c, t)
    rungs = [base]
    expected = sizes[0]
    for i in range(len(sizes) - 1):
        members = rungs[i]
        if len(members) < expected or not all(finished(t) for t in members.values()):
            break
        decided = [c for value, c in ranked(members) if value is not None][: sizes[i + 1]]
        allowed = set(decided)
        following: dict[int, Trial] = {}
        for c, t in claims[i + 1]:
            if c in allowed and c not in following and fidelity.config(t.point) == fidelity.config(base[c].point):
                following[c] = t
        rungs.append(following)
        waiting = [c for c in decided if c not in following]
        if waiting:
            return _Bracket(rungs, waiting, i + 1)
        expected = len(decided)
    return _Bracket(rungs, [], 0)
