"""enas: ENAS's controller (Pham et al. 2018, macro search) in numpy, rebuilt from the request.

Proposals. Each has the two assignments Katib's ENAS trial (RunTrial.py, ModelConstructor.py)
reads, as JSON with " replaced by ' (`nas.katib_json`):

    architecture  numLayers lists; the i-th holds the operation id of layer i followed by i skip
                  bits, e.g. [[2], [0, 1], [3, 0, 1]] (Katib's trial reads bit j of layer i as a
                  connection from the input, j = 0, or from layer j - 1; the controller learns
                  whatever the trial makes of them)
    nn_config     {"num_layers", "input_sizes", "output_sizes", "embedding"}: the embedding maps
                  each operation id the architecture uses to {"opt_id", "opt_type", "opt_params"},
                  the operation with one value per parameter (every combination of an operation's
                  parameter values is one id, numbered as `nas.Operation` says)

and the label `enas-index`, its number in the order of creation.

The controller (`enas_controller`). Its initial weights come from the seed (`random_state`, or
the experiment name). It learns from the trials in the order they were created: a trial's
creation number is its `enas-index` label (the service numbers its proposals from
`total_request_number`, which grows with every request; ties fall back to the canonical trial
order). Trials without a valid label, or whose assignments are not an architecture of this space,
never train it (and are never proposed again when they are one). Each trial with a reward, in that
order, is one learning event:

* its reward is the objective value (negated when minimizing); SUCCEEDED trials and EARLYSTOPPED
  ones (at the value they had when stopped) have one; FAILED, KILLED and MetricsUnavailable trials
  and trials without a numeric objective give no reward: they teach nothing and are never proposed
  again, so a failing trial is never retried;
* the advantage is the reward minus the moving-average baseline of the earlier rewards (weights
  `controller_baseline_decay` ** age, normalized, so the first rewards are averaged rather than
  decayed towards 0), divided by their moving standard deviation, so the objective's units do not
  matter; the first two rewards only set the baseline;
* the controller takes `controller_train_steps` Adam steps on the REINFORCE loss of that
  architecture with that advantage, plus the entropy bonus and the skip penalty.

Then the proposals are drawn from the trained controller with the request's seed; a draw equal to
an existing trial or to an earlier member of the batch is drawn again (at most 8 draws per
proposal; then random architectures, then the next free one in a scan).

Bounded work: a training step costs about one unit per layer plus one per 20,000 controller
parameters (Adam's update); the controller learns from as many of the first rewarded trials as
WORK_BUDGET units allow (`learnable`: 467 with the defaults, 8 layers and 100 operation ids);
later ones are only never proposed again. With at most MAX_LAYERS layers, MAX_CHOICES operation
ids and a hidden size of at most 128 (420,000 parameters, 10 MiB with Adam's moments), a new
server's full replay stays well within Katib's 60 s deadline.

Statelessness. Training is a function of the sequence of (architecture, reward) of the learning
events, so a restarted server replays it and gives the same proposals. A warm server keeps the
trained controller in the state store (`Request.store`), with the sequence it learned from: a
request whose sequence starts with a stored one continues from a copy. Two snapshots are kept:
after the events before the first pending trial (these never change: a later finishing trial has
a later number), and after all events. Work stopped by a cancelled call keeps what it trained.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Algorithm, Proposal, Reply, Request, derive_seed
from .enas_controller import Architecture, Config, Controller, size
from .errors import Problems
from .experiment import Experiment
from .history import PENDING, History, Trial, label_index
from .limits import Limits
from .model import draw_new
from .nas import FIELD, NasConfig, NasSpace, katib_json, parse_katib_json
from .settings import RANDOM_STATE, Schema, Setting

log = logging.getLogger("katib.enas")

INDEX = "enas-index"
NAMES = ("architecture", "nn_config")
WORK_BUDGET = 25_000  # learning work of one request: steps x (layers + parameters / 20,000) (module docstring)
REWARD_LIMIT = 1e100  # rewards are clipped to +-this, so that their squares stay finite
_CHUNK = 32  # architectures sampled at once (the sampler's memory grows with it)
_DRAWS = 8  # draws from the controller per proposal before random architectures are tried


def _positive(name: str, default: float, meaning: str, high: float = 1_000, **options) -> Setting:
    return Setting(name, float, default, meaning, low=0, low_open=True, high=high, **options)


class Enas(Algorithm):
    name = "enas"
    summary = (
        "ENAS: an LSTM controller (numpy) samples each layer's operation and skip connections; trained with "
        "REINFORCE on the trials' rewards in creation order, rebuilt from the request."
    )
    architecture_search = True
    schema = Schema(
        Setting("controller_hidden_size", int, 64, "Hidden units of the controller's LSTM.", low=1, high=128),
        _positive("controller_temperature", 5.0, "Logits are divided by it before the tanh; None: not divided.", none=True),
        _positive("controller_tanh_const", 2.25, "Logits become c * tanh(logits / temperature); None: no tanh.", none=True),
        _positive("controller_entropy_weight", 1e-5, "Weight of the entropy bonus (exploration); None: none.", none=True),
        _positive(
            "controller_baseline_decay",
            0.9,
            "Decay of the moving average of rewards that is the baseline (1: the plain mean). Katib's default, 0.999, "
            "barely moves in the tens of trials of an experiment.",
            high=1,
        ),
        _positive(
            "controller_learning_rate",
            0.01,
            "Adam's learning rate. With Katib's defaults (5e-5, 50 steps, baseline decay 0.999) enas learns far less in 60 trials (README).",
            high=1,
        ),
        Setting(
            "controller_skip_target",
            float,
            0.4,
            "Skip probability the skip penalty pulls towards.",
            low=0,
            low_open=True,
            high=1,
            high_open=True,
        ),
        _positive(
            "controller_skip_weight", 0.8, "Weight of the skip penalty (KL divergence of each skip probability from the target); None: none.", none=True
        ),
        Setting(
            "controller_train_steps",
            int,
            5,
            "Adam steps on each trial's reward; the controller learns from the first rewarded trials that a bounded "
            "work allows (about 2,400 / this, with 8 layers; README). Katib's default is 50 steps per call.",
            low=1,
            high=100,
        ),
        Setting("controller_log_every_steps", int, 10, "Training steps between log lines (at --log-level DEBUG).", low=1, high=1_000_000),
        RANDOM_STATE,
    )

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        nas = experiment.nas
        assert nas is not None  # validation requires it
        for name, sizes in (("inputSizes", nas.input_sizes), ("outputSizes", nas.output_sizes)):
            if not sizes:
                problems.add(f"{FIELD}.graphConfig.{name}", "is empty; enas passes it to the trial in nn_config: declare the sizes")

    def space(self, experiment: Experiment, settings: dict[str, Any]) -> ArchitectureSpace:
        assert experiment.nas is not None  # validation requires it
        return ArchitectureSpace(experiment.nas)

    def suggest(self, request: Request) -> Reply:
        if request.count <= 0:
            return Reply([])
        space: ArchitectureSpace = request.experiment.space  # type: ignore[assignment]
        controller = _Learner(request, space).train()
        points = _draw(controller, space, request)
        first = max(request.total - request.count, 0)
        return Reply([Proposal(space.format(p), labels={INDEX: str(first + i)}) for i, p in enumerate(points)])


# -- the space of architectures ---------------------------------------------------------------------------


class ArchitectureSpace(NasSpace):
    """Points are architectures as flat tuples, Katib's layout: op_0, op_1, skip_10, op_2, skip_20, skip_21, ..."""

    def __init__(self, nas: NasConfig):
        self.nas = nas
        # The first operation id of each operation, then the number of ids. An id's parameter values
        # are computed when a point using it is first formatted (a call uses few of up to MAX_CHOICES ids).
        self.offsets = tuple(itertools.accumulate((op.size for op in nas.operations), initial=0))
        self.operation_ids = self.offsets[-1]
        self._operations: dict[int, dict[str, Any]] = {}
        layers = nas.layers
        self.radices = tuple(r for i in range(layers) for r in (self.operation_ids, *[2] * i))
        super().__init__(NAMES, math.prod(self.radices))

    def rows(self, point: Sequence[int]) -> list[list[int]]:
        out, start = [], 0
        for i in range(self.nas.layers):
            out.append(list(point[start : start + i + 1]))
            start += i + 1
        return out

    def format(self, point: Sequence[int]) -> dict[str, str]:
        rows = self.rows(point)
        embedding = {}
        for row in rows:
            if str(row[0]) not in embedding:
                embedding[str(row[0])] = {"opt_id": row[0], **self._operation(row[0])}
        config = {
            "num_layers": self.nas.layers,
            "input_sizes": list(self.nas.input_sizes),
            "output_sizes": list(self.nas.output_sizes),
            "embedding": embedding,
        }
        return {"architecture": katib_json(rows), "nn_config": katib_json(config)}

    def decode(self, assignment: Mapping[str, str]) -> tuple | None:
        rows = parse_katib_json(assignment.get("architecture", ""))
        if not isinstance(rows, list) or len(rows) != self.nas.layers:
            return None
        point = []
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != i + 1 or not all(type(x) is int for x in row):
                return None
            if not 0 <= row[0] < self.operation_ids or any(b not in (0, 1) for b in row[1:]):
                return None
            point.extend(row)
        return tuple(point)

    def _operation(self, op_id: int) -> dict[str, Any]:
        """The operation of an id, with one value per parameter."""
        if op_id not in self._operations:
            i = bisect.bisect_right(self.offsets, op_id) - 1
            op = self.nas.operations[i]
            self._operations[op_id] = {"opt_type": op.type, "opt_params": op.choice(op_id - self.offsets[i])}
        return self._operations[op_id]

    def random_point(self, rng: random.Random) -> tuple:
        """A uniformly random architecture."""
        return self.point(rng.randrange(self.count))

    def point(self, rank: int) -> tuple:
        digits = []
        for radix in reversed(self.radices):
            rank, digit = divmod(rank, radix)
            digits.append(digit)
        return tuple(reversed(digits))


# -- learning ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Baseline:
    """Moving average and variance of the rewards (weights decay ** age, normalized)."""

    weight: float = 0.0
    mean: float = 0.0
    squares: float = 0.0  # weighted sum of squared deviations
    count: int = 0

    def advantage(self, reward: float) -> float:
        variance = self.squares / self.weight if self.count >= 2 else 0.0
        scale = math.sqrt(variance)
        if scale <= 1e-12 * max(1.0, abs(self.mean)):
            return 0.0
        return (reward - self.mean) / scale

    def add(self, reward: float, decay: float) -> _Baseline:
        weight = decay * self.weight + 1.0
        mean = self.mean + (reward - self.mean) / weight
        squares = decay * self.squares + (reward - self.mean) * (reward - mean)
        return _Baseline(weight, mean, squares, self.count + 1)


@dataclass(frozen=True)
class _Snapshot:
    events: tuple  # the (point, reward) learning events trained on, in order
    controller: Controller
    baseline: _Baseline


class _Learner:
    def __init__(self, request: Request, space: ArchitectureSpace):
        settings = request.settings
        self.request = request
        self.space = space
        self.config = Config(
            layers=space.nas.layers,
            operations=space.operation_ids,
            hidden=settings["controller_hidden_size"],
            temperature=settings["controller_temperature"],
            tanh_const=settings["controller_tanh_const"],
            entropy_weight=settings["controller_entropy_weight"],
            skip_target=settings["controller_skip_target"],
            skip_weight=settings["controller_skip_weight"],
        )
        self.steps = settings["controller_train_steps"]
        self.rate = settings["controller_learning_rate"]
        self.decay = settings["controller_baseline_decay"]
        self.log_every = settings["controller_log_every_steps"]
        self.seed = derive_seed(request.experiment.name, settings.get("random_state"), "enas")
        self.key = (request.experiment.name, self.seed, self.config, self.steps, self.rate, self.decay)

    def train(self) -> Controller:
        events, settled = learning_events(self.request.history, self.space)
        events = events[: learnable(self.config, self.steps)]
        settled = min(settled, len(events))
        stored = [s for s in self.request.store.get(self.key) or () if s.events == tuple(events[: len(s.events)])]
        start = max(stored, key=lambda s: len(s.events), default=None)
        keep = max((s for s in stored if len(s.events) <= settled), key=lambda s: len(s.events), default=None)
        if start is None:
            controller, baseline, done = Controller(self.config, np.random.default_rng(self.seed)), _Baseline(), 0
        else:  # what the store holds never changes: trained on a copy (sampling changes nothing)
            controller, baseline, done = start.controller, start.baseline, len(start.events)
            if done < len(events):
                controller = controller.copy()
        first = done
        try:
            for position in range(first, len(events)):
                self.request.check()
                point, reward = events[position]
                self._learn(controller, baseline.advantage(reward), point, position)
                baseline = baseline.add(reward, self.decay)
                done = position + 1
                if done == settled < len(events):
                    keep = _Snapshot(tuple(events[:done]), controller.copy(), baseline)
        finally:  # a cancelled call keeps what it trained
            if done > first:
                # The trained controller itself is stored: from here on it only samples.
                final = _Snapshot(tuple(events[:done]), controller, baseline)
                self._store([final] if keep is None or done == settled else [keep, final])
        return controller

    def _learn(self, controller: Controller, advantage: float, point: tuple, position: int) -> None:
        arch = Architecture.of([self.space.rows(point)])
        for _ in range(self.steps):
            stats = controller.step(arch, np.array([advantage]), self.rate)
            if controller.steps % self.log_every == 0 and log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "enas: controller step %d (trial %d): loss %.4f, entropy %.4f, skip penalty %.4f, skip rate %.3f",
                    controller.steps, position + 1, stats["loss"], stats["entropy"], stats["skip_penalty"], stats["skip_rate"],
                )

    def _store(self, snapshots: list[_Snapshot]) -> None:
        # an event: its tuple, the reward, and the point's L(L+1)/2 references
        size = sum(s.controller.nbytes + sum(140 + 8 * len(point) for point, _ in s.events) for s in snapshots)
        self.request.store.put(self.key, tuple(snapshots), size)


def learnable(config: Config, steps: int) -> int:
    """How many rewarded trials the controller learns from: a step costs about one unit per layer
    and one per 20,000 parameters (Adam's update), and the work is at most WORK_BUDGET units."""
    return max(1, int(WORK_BUDGET / (steps * (config.layers + size(config) / 20_000))))


def learning_events(history: History, space: ArchitectureSpace) -> tuple[list[tuple[tuple, float]], int]:
    """(point, reward) of the rewarded trials in creation order, and how many of them come before
    the first pending trial (these can no longer change)."""
    numbered = []
    for trial in history.trials:  # canonical order: ties of the index keep it
        index = label_index(trial.labels.get(INDEX))
        if index is not None and trial.point is not None:
            numbered.append((index, trial))
    numbered.sort(key=lambda pair: pair[0])
    events, settled = [], None
    for _, trial in numbered:
        if trial.condition in PENDING and settled is None:
            settled = len(events)
        reward = _reward(trial)
        if reward is not None:
            events.append((trial.point, reward))
    return events, len(events) if settled is None else settled


def _reward(trial: Trial) -> float | None:
    if not trial.observed:
        return None
    return min(max(-trial.value, -REWARD_LIMIT), REWARD_LIMIT)  # values are oriented for minimization


# -- proposing --------------------------------------------------------------------------------------------


def _draw(controller: Controller, space: ArchitectureSpace, request: Request) -> list[tuple]:
    """`request.count` different architectures, none equal to a trial's while any is left: drawn
    from the controller in chunks (at most _DRAWS per proposal), then at random."""
    taken = request.history.taken()
    rng = np.random.default_rng(request.seed)
    out: list[tuple] = []
    for _ in range(0, _DRAWS * request.count, _CHUNK):
        if len(out) == request.count:
            return out
        request.check()
        arch = controller.sample(_CHUNK, rng)
        for b in range(_CHUNK):
            point = tuple(x for row in arch.row(b) for x in row)
            if point not in taken and len(out) < request.count:
                taken.add(point)
                out.append(point)
    fallback = random.Random(request.seed)
    while len(out) < request.count:
        point = draw_new(space, fallback, taken)
        taken.add(point)
        out.append(point)
    return out
