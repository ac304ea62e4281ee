"""asha: asynchronous successive halving (Li et al., MLSys 2020), kept in trial labels.

Rungs. The resources are the levels of the ladder in `algorithms.multifidelity`:
`max_resource / eta^(K - k)` for k = 0..K, where K is the largest with `max_resource / eta^K >=
min_resource`; so the top rung is `max_resource` and the lowest is at least `min_resource` (the
paper's `min_resource * eta^k` when `max_resource / min_resource` is a power of eta). Bracket b
(`brackets` of them, Li et al.'s minimum early-stopping rate) starts its configurations at rung b.

Slots. For each free slot: the best configuration of some rung k < K that is among the best
`floor(n_k / eta)` of the n_k finished trials of its rung and not yet promoted is promoted to rung
k + 1 (a new trial, same parameters, eta times the resource), trying the highest rung first and
the lowest bracket first; when there is none, a new configuration starts at the base rung of the
bracket that has used the least resource so far (running trials included; the lowest on ties).
It never waits, so every call returns exactly the number asked for.

Failures. A FAILED, KILLED, METRICSUNAVAILABLE or EARLYSTOPPED trial, or one without a value, counts
among the n_k finished trials of its rung as its worst result and is never promoted.

Labels. Each proposal carries `asha-bracket`, `asha-rung` and `asha-config` (the configuration's
number, kept by its promotions; a new configuration gets the lowest number no base trial holds).
A trial belongs to the schedule only when its labels are plain numbers that fit (at most nine
digits, bracket below `brackets`, rung from the bracket up to K), its resource
is its rung's, and above the base rung its configuration held the rung below in the same bracket
with the same parameters; when two trials claim one place the first by name wins. Any other trial
is foreign: never proposed again, never in a rung. Replay is linear in the trials.
"""

from __future__ import annotations

from typing import Any

from katib_services.numbers import shorten

from .base import Reply, Request
from .errors import Problems
from .experiment import Experiment
from .history import LABEL_DIGITS, Trial
from .limits import Limits
from .multifidelity import ETA, MAX_LEVELS, RESOURCE_NAME, SAMPLER, Batch, Fidelity, Ladder, MultiFidelity, place_labels
from .multifidelity import free_numbers, placed, ranked, resource_parameter, whole
from .settings import FIELD, RANDOM_STATE, Schema, Setting
from .space import ParamType

BRACKET, RUNG, CONFIG = LABELS = "asha-bracket", "asha-rung", "asha-config"


class Asha(MultiFidelity):
    name = "asha"
    summary = (
        "Asynchronous successive halving (Li et al. 2020) with its state in trial labels: promotes whenever a "
        "configuration is in the top 1/eta of its rung, never waits; random or TPE (BOHB-style) configurations."
    )
    schema = Schema(
        RESOURCE_NAME,
        Setting("min_resource", float, 1.0, "Smallest resource of a rung: the base rung has at least this.", low=0, low_open=True, high=1e9),
        Setting("max_resource", float, None, "Resource of the top rung.", low=0, low_open=True, high=1e9, required=True),
        ETA,
        Setting(
            "brackets",
            int,
            1,
            "Brackets (minimum early-stopping rates): bracket b starts configurations at rung b; they share the "
            "resource evenly.",
            low=1,
            high=MAX_LEVELS,
        ),
        RANDOM_STATE,
        SAMPLER,
    )

    def ladder(self, settings: dict[str, Any], kind: ParamType) -> tuple[Ladder, str | None]:
        return Ladder.build(settings["max_resource"], settings["min_resource"], settings["eta"], kind)

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        low, high = settings["min_resource"], settings["max_resource"]
        if low > high:
            problems.add(f'{FIELD}["max_resource"]', f"({shorten(high)}) must not be less than min_resource ({shorten(low)})")
            resource_parameter(experiment, settings, problems)
            return
        ladder = self.checked_ladder(experiment, settings, problems)
        if ladder is not None and settings["brackets"] > len(ladder):
            problems.add(
                f'{FIELD}["brackets"]',
                f"({settings['brackets']}) is more than the {len(ladder)} rung(s) from min_resource to max_resource "
                f"({', '.join(ladder.texts)}); use at most {len(ladder)}",
            )

    def suggest(self, request: Request) -> Reply:
        fidelity = Fidelity(request.experiment.space, request.settings["resource_name"])
        top = fidelity.top
        brackets = request.settings["brackets"]
        eta = request.settings["eta"]
        rungs, base = _replay(request.history.trials, fidelity, brackets)
        ladder = [fidelity.resource.value(k) for k in range(top + 1)]
        spent = [0.0] * brackets
        for (b, k), members in rungs.items():
            spent[b] += ladder[k] * len(members)
        # Candidates for promotion, highest rung first, lowest bracket first: best first in each rung.
        candidates = []
        for k in range(top - 1, -1, -1):
            for b in range(min(k, brackets - 1) + 1):
                members = rungs.get((b, k), {})
                above = rungs.get((b, k + 1), {})
                results = ranked(members)
                best = results[: whole(len(results) / eta)]
                candidates += [(b, k, c) for value, c in best if value is not None and c not in above]
        numbers = free_numbers(base, 10**LABEL_DIGITS)  # every number fits a label (10^9 are never all held)
        batch = Batch(request, fidelity, {CONFIG: "extra"})  # outside the schedule
        queue = iter(candidates)
        while not batch.full:
            promoted = False
            for b, k, c in queue:
                if batch.promote(fidelity.config(base[c][1].point), k + 1, place_labels(LABELS, (b, k + 1, c))):
                    spent[b] += ladder[k + 1]
                    promoted = True
                    break
            if promoted:
                continue
            b = min(range(brackets), key=lambda i: (spent[i], i))
            if batch.new(b, place_labels(LABELS, (b, b, next(numbers)))):  # else an extra: the rest of the batch too
                spent[b] += ladder[b]
        return Reply(batch.proposals)


def _replay(
    trials: list[Trial], fidelity: Fidelity, brackets: int
) -> tuple[dict[tuple[int, int], dict[int, Trial]], dict[int, tuple[int, Trial]]]:
    """The members of each (bracket, rung), and each configuration's bracket and base trial."""
    claims = []
    for t in trials:
        place = placed(t, LABELS)
        if place is None:
            continue
        b, k, c = place
        if b >= brackets or not b <= k <= fidelity.top:
            continue
        if fidelity.level(t.point) == k:
            claims.append((b, k, c, t))
    base: dict[int, tuple[int, Trial]] = {}
    for b, k, c, t in claims:
        if k == b:
            base.setdefault(c, (b, t))
    rungs: dict[tuple[int, int], dict[int, Trial]] = {}
    for c, (b, t) in base.items():
        rungs.setdefault((b, b), {})[c] = t
    claims.sort(key=lambda claim: claim[1])  # rung by rung, so that the rung below is known
    for b, k, c, t in claims:
        if k == b or c not in rungs.get((b, k - 1), {}):  # held the rung below, so its base is bracket b's
            continue
        members = rungs.setdefault((b, k), {})
        if c not in members and fidelity.config(t.point) == fidelity.config(base[c][1].point):
            members[c] = t
    return rungs, base
