"""Neural architecture search: `spec.nasConfig` as the core sees it, validated like `spec.parameters`.

A NAS experiment declares `nasConfig` instead of `parameters`:

    graphConfig:  numLayers (1 to MAX_LAYERS), inputSizes, outputSizes (positive, at most MAX_SIZES each)
    operations:   each an operationType and parameters, declared and validated exactly like
                  spec.parameters (same messages, under spec.nasConfig.operations[i].parameters)

Every parameter of an operation must have finitely many values (an INT, a DOUBLE with a step, a
DISCRETE or CATEGORICAL list): every combination of an operation's parameter values is one
choice of operation, numbered in declaration order, the last parameter varying fastest (as
Katib's enas numbers them). At most MAX_CHOICES choices in all, so the work of a call is bounded.

A NAS experiment is a search space too: each NAS algorithm gives the service (through
`Algorithm.space`) a `NasSpace`, whose points are whole architectures and whose `format` writes a
point as the assignments Katib's trial programs parse. The service parses trials and verifies
every reply against it as it does for any space: a reply holds exactly the requested number of
points, all different, each one's assignments exactly what `format` gives for it.

Katib's trials read those assignments as JSON in which every `"` was replaced by `'`
(`text.replace("'", '"')`, then `json.loads`). `katib_json` writes that form; a `'` inside a
string is written as `\\u0027`, so that the trial's replacement cannot break it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from katib_services.numbers import quote

from .errors import Problems
from .limits import Limits
from .space import ParamType, RawParameter, SearchSpace

FIELD = "spec.nasConfig"
MAX_LAYERS = 32
MAX_SIZES = 16  # entries of inputSizes and of outputSizes
MAX_CHOICES = 1_000  # operation choices in all (every combination of an operation's parameter values)


class RawOperation(NamedTuple):
    """An operation as written in the Experiment."""

    type: str
    parameters: Sequence[RawParameter] = ()


class RawNasConfig(NamedTuple):
    """`spec.nasConfig` as written in the Experiment (graphConfig's fields and the operations)."""

    num_layers: int
    input_sizes: Sequence[int] = ()
    output_sizes: Sequence[int] = ()
    operations: Sequence[RawOperation] = ()


@dataclass(frozen=True)
class Operation:
    type: str
    space: SearchSpace  # its parameters, every one finite

    @property
    def size(self) -> int:
        return self.space.size  # type: ignore[return-value]

    def choice(self, index: int) -> dict[str, Any]:
        """The parameter values of the index-th combination, as JSON values: INT and DISCRETE
        values are numbers, DOUBLE values floats, CATEGORICAL values strings."""
        return {p.name: _json_value(p, key) for p, key in zip(self.space.parameters, self.space.point(index))}


def _json_value(parameter, key: int) -> Any:
    if parameter.type is ParamType.CATEGORICAL:
        return parameter.format(key)
    number = parameter.exact(key)
    if parameter.type is ParamType.INT or (parameter.type is ParamType.DISCRETE and number == number.to_integral_value()):
        return int(number)
    return float(number)


@dataclass(frozen=True)
class NasConfig:
    layers: int
    input_sizes: tuple[int, ...]
    output_sizes: tuple[int, ...]
    operations: tuple[Operation, ...]

    @classmethod
    def parse(cls, raw: RawNasConfig, problems: Problems, limits: Limits) -> NasConfig:
        """Validates a raw nasConfig, recording every problem with the field's YAML path."""
        graph = f"{FIELD}.graphConfig"
        if not 1 <= raw.num_layers <= MAX_LAYERS:
            problems.add(f"{graph}.numLayers", f"({raw.num_layers}) must be from 1 to {MAX_LAYERS}")
        for name, sizes in (("inputSizes", raw.input_sizes), ("outputSizes", raw.output_sizes)):
            if len(sizes) > MAX_SIZES:
                problems.add(f"{graph}.{name}", f"has {len(sizes)} entries; at most {MAX_SIZES} are accepted")
            for i, value in enumerate(list(sizes)[:MAX_SIZES]):
                if value < 1:
                    problems.add(f"{graph}.{name}[{i}]", f"({value}) must be a positive size")
        if not raw.operations:
            problems.add(f"{FIELD}.operations", "is empty; declare at least one operation")
        operations = []
        for i, op in enumerate(raw.operations[:MAX_CHOICES]):
            where = f"{FIELD}.operations[{i}]"
            if not op.type:
                problems.add(f"{where}.operationType", "is empty; name the operation")
            space = SearchSpace([])
            if op.parameters:
                count = len(problems.messages)
                space = SearchSpace.parse(
                    op.parameters, problems, max_parameters=limits.parameters, max_values=limits.list_values, field=f"{where}.parameters"
                )
                for j, p in enumerate(space.parameters):
                    if not p.finite:
                        problems.add(
                            f"{where}.parameters[{j}] ({quote(p.name)}).feasibleSpace.step",
                            "is missing; every value of an operation's parameter makes another operation, so a double needs a step",
                        )
                if len(problems.messages) > count:
                    continue
            operations.append(Operation(op.type, space))
        total = sum(op.size for op in operations) + len(raw.operations) - len(operations)
        if total > MAX_CHOICES:
            problems.add(
                f"{FIELD}.operations",
                f"give {total:,} operation choices (every combination of an operation's parameter values is one); "
                f"this service accepts at most {MAX_CHOICES:,}: use fewer values",
            )
        return cls(raw.num_layers, tuple(raw.input_sizes), tuple(raw.output_sizes), tuple(operations))


class NasSpace(SearchSpace):
    """A search space whose points are whole architectures, written as assignments named `names`.

    Subclasses give `format` (a point as the assignments a trial program parses) and `decode` (the
    point an assignment claims to be, or None); a trial's assignments are a point of the space only
    when they are exactly what `format` writes for that point.
    """

    def __init__(self, names: tuple[str, ...], count: int):
        super().__init__([])
        self.names = names
        self.count = count
        self.size = None  # no grid ranks

    def __len__(self) -> int:
        return len(self.names)

    def format(self, point: Sequence) -> dict[str, str]:
        raise NotImplementedError

    def decode(self, assignment: Mapping[str, str]) -> tuple | None:
        raise NotImplementedError

    def key_of(self, assignment: Mapping[str, str]) -> tuple | None:
        point = self.decode(assignment)
        return point if point is not None and self.format(point) == dict(assignment) else None

    def encode(self, point: Sequence) -> tuple[float, ...]:
        return ()  # NAS algorithms model architectures themselves


def katib_json(value: Any) -> str:
    """JSON with every `"` replaced by `'`, the form Katib's NAS trials parse back."""
    return json.dumps(value).replace("'", "\\u0027").replace('"', "'")


MAX_ASSIGNMENT_TEXT = 1 << 20


def parse_katib_json(text: str) -> Any:
    """What a Katib NAS trial reads from an assignment (None when it is not JSON)."""
    if len(text) > MAX_ASSIGNMENT_TEXT:
        return None
    try:
        return json.loads(text.replace("'", '"'))
    except (ValueError, RecursionError):
        return None
