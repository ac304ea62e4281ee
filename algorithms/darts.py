"""darts: DARTS (Liu et al. 2019) searches the architecture inside one trial, by gradient descent on
a continuous relaxation of the choice of operation; the service hands every trial the search
space and the training settings.

Every proposal has the three assignments Katib's DARTS trial (run_trial.py) reads:

    algorithm-settings  the settings below, every one with its value (the default when not set),
                        as JSON with " replaced by ' (katib_json)
    search-space        the primitives, in the order of the operations: skip_connection, or one
                        per value of the operation's one parameter, its filter size k, as
                        TYPE_kxk (separable_convolution_3x3, dilated_convolution_5x5,
                        avg_pooling_3x3, max_pooling_3x3, ...), as JSON with " replaced by '
    num-layers          graphConfig.numLayers

The search space has one point, so every trial gets the same assignments: trials run one at a
time (parallelTrialCount 1, as in Katib's examples), or once (maxTrialCount 1); validation refuses
more at once, where Katib's service would create identical trials side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from katib_services.numbers import quote

from .base import Algorithm, Proposal, Reply, Request
from .errors import Problems
from .experiment import Experiment
from .limits import Limits
from .nas import FIELD, NasSpace, katib_json
from .settings import Schema, Setting

OPERATIONS = ("separable_convolution", "dilated_convolution", "avg_pooling", "max_pooling", "skip_connection")
SKIP = "skip_connection"
NAMES = ("algorithm-settings", "search-space", "num-layers")
MAX_FILTER_SIZE = 1_000


def _learning_rate(name: str, default: float, meaning: str) -> Setting:
    return Setting(name, float, default, meaning, low=0, high=100)


class Darts(Algorithm):
    name = "darts"
    summary = (
        "DARTS: each trial searches the architecture itself (Katib's DARTS trial); every trial gets "
        "the search space (its primitives), the number of layers and these training settings."
    )
    architecture_search = True
    schema = Schema(
        Setting("num_epochs", int, 50, "Epochs of the search.", low=1, high=100_000),
        _learning_rate("w_lr", 0.025, "Initial learning rate of the network weights (SGD, cosine annealed)."),
        _learning_rate("w_lr_min", 0.001, "Final learning rate of the network weights."),
        Setting("w_momentum", float, 0.9, "Momentum of the weights' SGD.", low=0, high=1),
        Setting("w_weight_decay", float, 3e-4, "Weight decay of the network weights.", low=0, high=100),
        Setting("w_grad_clip", float, 5.0, "Gradient norm clipping of the network weights.", low=0, high=1_000_000),
        _learning_rate("alpha_lr", 3e-4, "Learning rate of the architecture weights (Adam)."),
        Setting("alpha_weight_decay", float, 1e-3, "Weight decay of the architecture weights.", low=0, high=100),
        Setting("batch_size", int, 128, "Mini-batch size; None lets the trial decide.", low=1, high=1_000_000, none=True),
        Setting("num_workers", int, 4, "Data-loading worker processes of the trial.", low=0, high=1_024),
        Setting("init_channels", int, 16, "Channels of the first cell.", low=1, high=100_000),
        Setting("print_step", int, 50, "Training steps between progress lines of the trial.", low=1, high=1_000_000_000),
        Setting("num_nodes", int, 4, "Intermediate nodes of a cell.", low=1, high=1_000),
        Setting("stem_multiplier", int, 3, "Channel multiplier of the stem convolution.", low=1, high=1_000),
    )

    def check(self, experiment: Experiment, settings: dict[str, Any], problems: Problems, limits: Limits) -> None:
        assert experiment.nas is not None  # validation requires it
        seen: dict[str, int] = {}
        for i, op in enumerate(experiment.nas.operations):
            where = f"{FIELD}.operations[{i}]"
            if op.type not in OPERATIONS:
                problems.add(f"{where}.operationType", f"{quote(op.type)} is not a DARTS operation; use one of {', '.join(OPERATIONS)}")
                continue
            for primitive in _primitives(op, where, problems):
                if primitive in seen:
                    problems.add(where, f"{primitive} is also a primitive of {FIELD}.operations[{seen[primitive]}]; list each primitive once")
                seen.setdefault(primitive, i)
        parallel, most = experiment.parallel_trial_count, experiment.max_trial_count
        if parallel > 1 and most != 1:
            problems.add(
                "spec.parallelTrialCount",
                f"({parallel}) must be 1 for darts (or maxTrialCount 1): every DARTS trial gets the same assignments "
                "and searches the architecture itself, so trials run one at a time",
            )

    def space(self, experiment: Experiment, settings: dict[str, Any]) -> NasSpace:
        return DartsSpace(experiment, settings)

    def suggest(self, request: Request) -> Reply:
        space = request.experiment.space
        return Reply([Proposal(space.format(())) for _ in range(request.count)])


def _primitives(op, where: str, problems: Problems) -> list[str]:
    """The primitives of one operation: skip_connection, or TYPE_kxk for each filter size k."""
    if op.type == SKIP:
        return [SKIP]  # its parameters, if any, are not used (as in Katib)
    parameters = op.space.parameters
    if len(parameters) != 1:
        problems.add(
            f"{where}.parameters",
            f"has {len(parameters)} parameters; a DARTS operation has one, its filter size (e.g. filter_size: [\"3\", \"5\"])",
        )
        return []
    parameter = parameters[0]
    out = []
    for key in range(parameter.size):  # type: ignore[arg-type]
        size = parameter.format(key)
        if not (size.isascii() and size.isdigit() and 0 < int(size) <= MAX_FILTER_SIZE):
            problems.add(
                f"{where}.parameters[0] ({quote(parameter.name)})",
                f"{quote(size)} is not a filter size; use whole numbers from 1 to {MAX_FILTER_SIZE:,}",
            )
            return []
        out.append(f"{op.type}_{size}x{size}")
    return out


class DartsSpace(NasSpace):
    """One point, `()`: the assignments every DARTS trial gets."""

    def __init__(self, experiment: Experiment, settings: Mapping[str, Any]):
        super().__init__(NAMES, 1)
        nas = experiment.nas
        assert nas is not None  # the service checks that a NAS algorithm has a nasConfig
        primitives = [p for op in nas.operations for p in _primitives(op, "", Problems())]
        values = {name: settings[name] for name in Darts.schema.settings}
        self.assignment = {
            "algorithm-settings": katib_json(values),
            "search-space": katib_json(primitives),
            "num-layers": str(nas.layers),
        }

    def format(self, point: Sequence) -> dict[str, str]:
        return dict(self.assignment)

    def decode(self, assignment: Mapping[str, str]) -> tuple | None:
        return ()
