"""pbt: population-based training (Jaderberg et al. 2017), rebuilt from the request on every call.

Settings (Katib's names): `suggestion_trial_dir` (where the trial container finds its checkpoint
directory; only Katib and katib-local use it), `n_population` (N), `truncation_threshold` (q),
`resample_probability` (p, optional) and `random_state`.

Population. Each generation has N *slots*. Generation 0 fills its slots with random points. Slot k
of generation g + 1 follows slot k of generation g, once member k of generation g has finished
with a value:

* it continues unless it is in the bottom: slot k of the next generation is its child, starting
  from its checkpoint with its hyperparameters explored;
* a member in the bottom is replaced (exploit): slot k of the next generation is a child of a top
  member of generation g drawn at random, starting from that member's checkpoint (the better
  member's, not the loser's as in Katib's service) with its hyperparameters explored.

The bottom is judged against the population as it stands (the asynchronous truncation selection
of the PBT paper): generation g's results together with the newest result of every slot (an older
one for a slot that is behind, a newer one for a slot that is ahead), ranked best first (ties by
name); of those n, the worst floor(q n) (never all) are the bottom.
The top of generation g is its best min(ceil(q m), m - floor(q m)) of its m members with a value,
leaving out those in the bottom; while every one of them is in the bottom, it is the best of them
alone (there is no better member of g to copy yet). When whole generations finish together, both
are simply generation g's ranking. When a
generation is not complete, the free slots of the next one are built from its finished part:
the decision is made when the successor is proposed, from the results known then, and is final
(the child carries it in its labels). New trials go to the earliest slots first (by generation,
then slot). Only when every slot that can be filled is taken (more trials running
than N, which happens when parallelTrialCount exceeds n_population) does a proposal become an
*extra*: a child of a top member of the newest generation that has a finished member (a random
point while no member has finished), placed in a slot numbered from N up. Extras are ranked with
their generation but start no lineage.

Explore. Each parameter of a child is drawn afresh from its distribution with probability p (never
when p is unset); otherwise it is perturbed: a numeric value is multiplied by 0.8 or 1.2 (one of
the two at random), then kept within [min, max]; on an INT or stepped DOUBLE it is rounded (not
truncated) to the nearest point of the grid, and when rounding gives the same point back it moves
to the neighbouring point in that direction. A DISCRETE value moves to its neighbour in numeric
order (in the factor's direction), a CATEGORICAL one to its neighbour in list order (cyclically).
(Katib's service, with p set, keeps a value that is not resampled; here a child always differs.)

Distinct points. A child is a new trial: its point differs from every trial of the request (its
parent's included) and from the rest of the batch, unless the space is too small. Exploration is
drawn again until it gives an unused point; after 32 tries the child gets a random unused point
(its parent and checkpoint stay). When every point of the space is used, a child may repeat an
earlier trial's point, never one of its batch.

Failures. A slot whose trials all ended without a value (FAILED, KILLED, MetricsUnavailable, or a
result without a numeric objective) gets a new trial: a child of a top member of the previous
generation, or a new random point in generation 0. The failed trial is never retried as it was.
CREATED, RUNNING and conditions unknown to this service keep their slot busy.

Bookkeeping, all in the request. Every proposal is named by the service, `<experiment>-g<g>m<k>-
<token>` (the experiment name with '.' as '-', cut so that the name has at most 63 characters;
the token is six hex digits of a hash of the request's seed, the slot, the parent and the point,
so the same request gives the same names, and different requests different ones), and labelled
`pbt.suggestion.katib.kubeflow.org/generation: g` and, after generation 0,
`pbt.suggestion.katib.kubeflow.org/parent: <trial whose checkpoint it starts from>`. A trial is a
member only when its name is one this experiment's pbt gives, its generation label matches the
name, its point is in the space, and its parent label names a member of the previous generation
(generation 0 has none); any other trial is foreign: never a parent, never ranked, but its point
is not proposed again. Replay is one pass over the trials, generation by generation.

Checkpoints. Each proposal carries a `Checkpoint`: an empty directory for a random member, a copy
of the parent's directory for a child. The service creates it before the reply is sent
(services/checkpoints.py). The experiment name must be a Kubernetes object name (it names the
trials and a directory), and a request holding a trial whose name is empty, `.`, `..` or contains
`/` or NUL is refused: such a name cannot name a trial's directory (base.check_path_component).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from katib_services.numbers import is_object_name, quote

from .base import Algorithm, Checkpoint, Proposal, Reply, Request, check_path_component, derive_seed
from .errors import Problems
from .experiment import Experiment
from .history import PENDING, Condition, Trial
from .limits import Limits
from .model import Taken, draw_new
from .settings import RANDOM_STATE, Schema, Setting
from .space import Key, Parameter, ParamType, SearchSpace

GENERATION = "pbt.suggestion.katib.kubeflow.org/generation"
PARENT = "pbt.suggestion.katib.kubeflow.org/parent"

_UP, _DOWN = Fraction(6, 5), Fraction(4, 5)  # the perturbation factors, exact
_TRIES = 32  # explorations of one child before it gets a random unused point
_NAME_MAX = 63  # a trial name is a label value of its children: at most 63 characters
_SUFFIX = re.compile(r"-g([0-9]{1,9})m([0-9]{1,9})-([0-9a-f]{6})\Z", re.ASCII)
_BUSY = PENDING | {Condition.UNKNOWN}

Slot = tuple[int, int]  # (generation, slot number)


class Pbt(Algorithm):
    name = "pbt"
    summary = (
        "Population-based training: generations of n_population members; the worst are replaced by children of "
        "the best, which start from the better member's checkpoint; state rebuilt from trial names and labels."
    )
    schema = Schema(
        Setting(
            "suggestion_trial_dir",
            str,
            None,
            "Where the trial container finds its checkpoint directory: Katib mounts EXPERIMENT/TRIAL of the "
            "data volume there (katib-local substitutes the path in the trial's command, args and env).",
            required=True,
        ),
        Setting("n_population", int, None, "Members (slots) of each generation.", low=5, high=10_000, required=True),
        Setting(
            "truncation_threshold",
            float,
            None,
            "Share of a generation that is replaced: its worst floor(q*n) members are replaced by children of its "
            "best ceil(q*n), which start from the better member's checkpoint.",
            low=0,
            high=1,
            required=True,
        ),
        Setting(
            "resample_probability",
            float,
            None,
            "Probability that a child's parameter is drawn afresh from its distribution instead of perturbed; "
            "unset means always perturbed (x0.8 or x1.2, or a neighbouring value).",
            low=0,
            high=1,
        ),
        RANDOM_STATE,
    )

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        if not is_object_name(experiment.name):
            problems.add(
                "metadata.name",
                f"{quote(experiment.name)} is not a Kubernetes object name (lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters); pbt names its trials after "
                "the experiment and keeps their checkpoints in <data dir>/<experiment name>/",
            )

    def suggest(self, request: Request) -> Reply:
        for trial in request.history.trials:
            check_path_component(trial.name, "trials")
        settings = request.settings
        experiment = request.experiment
        population = _Population(experiment.name, request.history.trials, settings["n_population"])
        ranking = _Ranking(population, settings["truncation_threshold"])
        rng = random.Random(request.seed)
        taken = request.history.taken()
        names = {t.name for t in request.history.trials}
        ready = iter(population.ready())
        proposals = []
        for _ in range(request.count):
            request.check()
            generation, slot = next(ready, None) or population.extra()
            population.claim(generation, slot)
            parent = ranking.parent(generation, slot, rng)
            if parent is None:
                point = draw_new(experiment.space, rng, taken)
            else:
                point = _explore(experiment.space, parent.point, rng, taken, settings["resample_probability"])
            taken.add(point)
            assignment = experiment.space.format(point)
            parent_name = parent.name if parent else ""
            name = _new_name(experiment.name, generation, slot, (request.seed, parent_name, sorted(assignment.items())), names)
            names.add(name)
            labels = {GENERATION: str(generation)}
            if parent is not None:
                labels[PARENT] = parent_name
            proposals.append(Proposal(assignment, trial_name=name, labels=labels, checkpoint=Checkpoint(parent_name)))
        return Reply(proposals)


def _name(experiment: str, generation: int, slot: int, token: str) -> str:
    suffix = f"-g{generation}m{slot}-{token}"
    return experiment.replace(".", "-")[: _NAME_MAX - len(suffix)].rstrip("-") + suffix


def _new_name(experiment: str, generation: int, slot: int, content: tuple, taken: set[str]) -> str:
    """A name for a new trial, different from every name of the request and the batch."""
    salt = 0
    while True:
        token = f"{derive_seed(generation, slot, content, salt) % 16**6:06x}"
        name = _name(experiment, generation, slot, token)
        if name not in taken:
            return name
        salt += 1


def _slot_of(experiment: str, trial: Trial) -> Slot | None:
    """(generation, slot) when the trial's name is one this experiment's pbt gives and its
    generation label agrees; None for a foreign trial."""
    match = _SUFFIX.search(trial.name)
    if match is None or trial.point is None:
        return None
    generation, slot = int(match[1]), int(match[2])
    if _name(experiment, generation, slot, match[3]) != trial.name or trial.labels.get(GENERATION) != str(generation):
        return None
    return generation, slot


class _Population:
    """The members among the request's trials, by (generation, slot), and the slots to fill next."""

    def __init__(self, experiment: str, trials: Sequence[Trial], size: int):
        self.size = size
        self.attempts: dict[Slot, list[Trial]] = {}  # the trials of each slot, in canonical order
        claimed: dict[int, list[tuple[Trial, int]]] = {}
        for trial in trials:
            where = _slot_of(experiment, trial)
            if where is not None:
                claimed.setdefault(where[0], []).append((trial, where[1]))
        previous: set[str] = set()
        generation = 0
        while generation in claimed:  # a member's parent is a member of the previous generation
            members = set()
            for trial, slot in claimed[generation]:
                parent = trial.labels.get(PARENT)
                if parent is None if generation == 0 else parent in previous:
                    self.attempts.setdefault((generation, slot), []).append(trial)
                    members.add(trial.name)
            previous = members
            generation += 1
        self.good = {where: next((t for t in tried if t.observed), None) for where, tried in self.attempts.items()}
        self.used = set(self.attempts)

    def open(self, where: Slot) -> bool:
        """No trial of the slot has a value or is still busy: it needs a (new) trial."""
        return self.good.get(where) is None and not any(t.condition in _BUSY for t in self.attempts.get(where, ()))

    def ready(self) -> list[Slot]:
        """Slots that can be filled now, earliest first: generation 0's open slots, and each open
        slot whose predecessor (the same slot one generation before) has finished with a value."""
        slots = [(0, k) for k in range(self.size) if self.open((0, k))]
        for (generation, slot), trial in self.good.items():
            if trial is not None and slot < self.size and self.open((generation + 1, slot)):
                slots.append((generation + 1, slot))
        return sorted(slots)

    def extra(self) -> Slot:
        """A slot numbered from N up, in the generation after the newest one with a finished member."""
        finished = [generation for (generation, _), trial in self.good.items() if trial is not None]
        generation = max(finished) + 1 if finished else 0
        slot = self.size
        while (generation, slot) in self.used:
            slot += 1
        return generation, slot

    def claim(self, generation: int, slot: int) -> None:
        self.used.add((generation, slot))


class _Ranking:
    """Who continues and who is replaced, and the parent of every new trial."""

    def __init__(self, population: _Population, threshold: float):
        self.population = population
        self.threshold = threshold
        self.best: dict[int, list[Trial]] = {}  # each generation's members with a value, best first
        self.newest: dict[int, Trial] = {}  # main slot -> its newest member with a value
        for (generation, slot), trial in population.good.items():  # in rising generation order
            if trial is None:
                continue
            self.best.setdefault(generation, []).append(trial)
            if slot < population.size:
                self.newest[slot] = trial
        for members in self.best.values():
            members.sort(key=_rank_key)
        self.bottoms: dict[int, set[str]] = {}

    def _bottom(self, generation: int) -> set[str]:
        """The members of `generation` in the bottom of the population as it stands: the
        generation's results together with the newest result of every slot; of those n, the
        worst floor(q n)."""
        if generation not in self.bottoms:
            own = self.best.get(generation, [])
            names = {t.name for t in own}
            standing = sorted(own + [t for t in self.newest.values() if t.name not in names], key=_rank_key)
            count = self._bottom_count(len(standing))
            self.bottoms[generation] = {t.name for t in standing[len(standing) - count :]} & names
        return self.bottoms[generation]

    def _bottom_count(self, n: int) -> int:
        """floor(q n), never all n."""
        return min(math.floor(self.threshold * n + 1e-9), n - 1)

    def parent(self, generation: int, slot: int, rng: random.Random) -> Trial | None:
        """The member whose checkpoint (and explored hyperparameters) the new trial starts from;
        None for a random point of generation 0."""
        if generation == 0:
            return None
        previous = generation - 1
        population = self.population
        predecessor = population.good.get((previous, slot)) if slot < population.size else None
        first = not population.attempts.get((generation, slot))
        if predecessor is not None and first and predecessor.name not in self._bottom(previous):
            return predecessor  # it continues from its own checkpoint
        # exploit, a failed slot's replacement, or an extra: one of the best of the previous generation,
        # never one in the bottom (they are its worst members) while it has another
        members = self.best[previous]
        m = len(members)
        top = max(1, min(math.ceil(self.threshold * m - 1e-9), m - self._bottom_count(m), m - len(self._bottom(previous))))
        return members[rng.randrange(top)]


def _rank_key(trial: Trial) -> tuple:
    return trial.value, trial.name  # best (lowest oriented value) first


def _explore(space: SearchSpace, point: tuple, rng: random.Random, taken: Taken, resample: float | None) -> tuple:
    """A child's point: the parent's, each parameter perturbed or resampled, not yet used."""
    avoid = taken.avoid(space.count)
    for _ in range(_TRIES):
        child = tuple(_mutate(p, key, rng, resample) for p, key in zip(space.parameters, point))
        if child not in avoid:
            return child
    return draw_new(space, rng, taken)


def _mutate(p: Parameter, key: Key, rng: random.Random, resample: float | None) -> Key:
    if resample is not None and rng.random() < resample:
        return p.from_unit(rng.random())
    up = rng.random() < 0.5
    if p.type is ParamType.CATEGORICAL:
        return (key + (1 if up else -1)) % p.size
    if not p.finite:
        return min(max(key * (1.2 if up else 0.8), p.low), p.high)
    value = Fraction(p.exact(int(key)))
    target = value * (_UP if up else _DOWN)
    direction = 1 if target > value else -1 if target < value else (1 if up else -1)
    moved = key + direction
    if p.type is not ParamType.DISCRETE:  # INT or stepped DOUBLE: rounded to the grid
        nearest = round((target - Fraction(p.dmin)) / Fraction(p.dstep))
        moved = moved if nearest == key else nearest
    return min(max(moved, 0), p.size - 1)
