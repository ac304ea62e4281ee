"""The search space: parameter types, bounds, steps and distributions.

Every algorithm sees parameters through this one model, so `distribution` and `step` mean the
same thing everywhere:

* A parameter is either *continuous* (a DOUBLE without `step`) or *finite*: an INT, a DOUBLE with
  `step`, a DISCRETE or a CATEGORICAL list. A point of a finite parameter is identified by its
  index; the value of index `k` is `min + k * step` computed in exact decimal arithmetic, or the
  `k`-th list entry.
* `from_unit` maps a number in [0, 1] to a value by the inverse CDF of the distribution, so a
  uniform draw becomes a draw from the distribution, and `to_unit` maps back. Model-based
  algorithms work in that unit cube.

Distributions (an unspecified distribution is UNIFORM):

* UNIFORM: uniform on [min, max]; on a finite parameter every point is equally likely.
* LOG_UNIFORM: uniform in log(x) on [min, max]; needs min > 0.
* NORMAL: normal with mean (min + max) / 2 and sigma (max - min) / 6, truncated to [min, max]
  (so the bounds sit at three sigma).
* LOG_NORMAL: the same in log space: log(x) is normal with mean (log min + log max) / 2 and sigma
  (log max - log min) / 6, truncated to [min, max]; needs min > 0.

On INT and stepped DOUBLE parameters a non-uniform draw is rounded to the nearest point. DISCRETE
and CATEGORICAL lists are always sampled uniformly (their `distribution` is ignored); a DISCRETE
list is ordered by numeric value in the unit encoding.

String forms: INT gives "3"; a continuous DOUBLE gives Python's shortest round-trip form; a
stepped DOUBLE gives its exact decimal without trailing zeros ("0.3", "0.1", "2.0"); list values
are returned exactly as listed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from statistics import NormalDist
from typing import NamedTuple, Union

from .errors import Problems

# Numbers are shared with the wire enums, so conversion is a plain int().


class ParamType(enum.IntEnum):
    UNKNOWN = 0
    DOUBLE = 1
    INT = 2
    DISCRETE = 3
    CATEGORICAL = 4


class Distribution(enum.IntEnum):
    UNSPECIFIED = 0
    UNIFORM = 1
    LOG_UNIFORM = 2
    NORMAL = 3
    LOG_NORMAL = 4


# A point of one parameter: an index for finite parameters, the float itself for continuous ones.
Key = Union[int, float]

_STD = NormalDist()
_TAIL = _STD.cdf(-3.0)  # mass below the lower truncation point (three sigma)
_MASS = 1.0 - 2.0 * _TAIL


class RawParameter(NamedTuple):
    """A parameter as written in the Experiment: every bound is still a string."""

    name: str
    type: int
    min: str = ""
    max: str = ""
    list: Sequence[str] = ()
    step: str = ""
    distribution: int = 0


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True, eq=False)
class Parameter:
    name: str
    type: ParamType
    distribution: Distribution = Distribution.UNIFORM
    low: float = 0.0
    high: float = 0.0
    dmin: Decimal = Decimal(0)
    dstep: Decimal | None = None
    choices: tuple[str, ...] = ()
    size: int | None = None  # number of points; None for a continuous parameter
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def finite(self) -> bool:
        return self.size is not None

    # -- values -------------------------------------------------------------------------------

    def format(self, key: Key) -> str:
        """The string Katib passes to the trial for this point."""
        if self.size is None:
            return repr(float(key))
        if self.choices:
            return self.choices[key]
        exact = self.dmin + self.dstep * key
        if self.type is ParamType.INT:
            return str(int(exact))
        text = format(exact.normalize(), "f")  # "0.1" for 0.10, like the user writes it
        return text if "." in text else text + ".0"  # a double keeps its point, as repr() does

    def parse(self, text: str) -> Key | None:
        """The key of a value string, or None when it is not a point of this parameter."""
        if self.choices:
            return self._index.get(text)
        if self.size is None:
            try:
                value = float(text)
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None
        value = _decimal(text)
        if value is None:
            return None
        k, rest = divmod(value - self.dmin, self.dstep)
        if rest or not 0 <= k < self.size:
            return None
        return int(k)

    def value(self, key: Key) -> float:
        """The numeric value of a point (its list position for CATEGORICAL)."""
        if self.size is None:
            return float(key)
        if self.type is ParamType.CATEGORICAL:
            return float(key)
        if self.choices:
            return float(self.choices[key])
        return float(self.dmin + self.dstep * key)

    # -- unit-cube encoding ---------------------------------------------------------------------

    def from_unit(self, u: float) -> Key:
        """The point at quantile `u` in [0, 1] of this parameter's distribution."""
        u = min(max(u, 0.0), 1.0)
        if self.size is not None and (self.choices or self.distribution is Distribution.UNIFORM):
            return min(int(u * self.size), self.size - 1)
        x = self._inverse_cdf(u)
        if self.size is None:
            return min(max(x, self.low), self.high)
        k = round((x - self.low) / float(self.dstep))
        return min(max(k, 0), self.size - 1)

    def to_unit(self, key: Key) -> float:
        """The quantile in [0, 1] of a point; the inverse of `from_unit`."""
        if self.size is not None and (self.choices or self.distribution is Distribution.UNIFORM):
            return (key + 0.5) / self.size
        x = min(max(self.value(key), self.low), self.high)
        dist = self.distribution
        if dist in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL):
            x, lo, hi = math.log(x), math.log(self.low), math.log(self.high)
        else:
            lo, hi = self.low, self.high
        if dist in (Distribution.NORMAL, Distribution.LOG_NORMAL):
            z = (x - (lo + hi) / 2) / ((hi - lo) / 6)
            return min(max((_STD.cdf(z) - _TAIL) / _MASS, 0.0), 1.0)
        return (x - lo) / (hi - lo)

    def _inverse_cdf(self, u: float) -> float:
        dist = self.distribution
        if dist in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL):
            lo, hi = math.log(self.low), math.log(self.high)
        else:
            lo, hi = self.low, self.high
        if dist in (Distribution.NORMAL, Distribution.LOG_NORMAL):
            q = min(max(_TAIL + u * _MASS, 1e-12), 1 - 1e-12)
            x = (lo + hi) / 2 + (hi - lo) / 6 * _STD.inv_cdf(q)
        else:
            x = lo + u * (hi - lo)
        return math.exp(x) if dist in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL) else x


class SearchSpace:
    """The ordered parameters of an experiment. A point of the space is a tuple of keys."""

    def __init__(self, parameters: Sequence[Parameter]):
        self.parameters = tuple(parameters)
        self.names = tuple(p.name for p in self.parameters)
        sizes = [p.size for p in self.parameters]
        self.size: int | None = math.prod(sizes) if None not in sizes else None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.parameters)

    def key_of(self, assignment: Mapping[str, str]) -> tuple | None:
        """The point of an assignment, or None when it does not belong to this space."""
        keys = []
        for p in self.parameters:
            text = assignment.get(p.name)
            key = None if text is None else p.parse(text)
            if key is None:
                return None
            keys.append(key)
        return tuple(keys)

    def format(self, point: Sequence[Key]) -> dict[str, str]:
        return {p.name: p.format(k) for p, k in zip(self.parameters, point)}

    def from_unit(self, unit: Iterable[float]) -> tuple:
        return tuple(p.from_unit(u) for p, u in zip(self.parameters, unit))

    # Mixed-radix numbering of the points of a finite space, the last parameter varying fastest.

    def point(self, rank: int) -> tuple:
        keys = []
        for p in reversed(self.parameters):
            rank, k = divmod(rank, p.size)
            keys.append(k)
        return tuple(reversed(keys))

    def rank(self, point: Sequence[int]) -> int:
        rank = 0
        for p, k in zip(self.parameters, point):
            rank = rank * p.size + k
        return rank

    # -- parsing and validation -----------------------------------------------------------------

    @classmethod
    def parse(cls, raw: Sequence[RawParameter], problems: Problems) -> SearchSpace:
        """Validates raw parameters, recording every problem; returns the valid ones."""
        if not raw:
            problems.add("spec.parameters", "is empty; declare at least one parameter")
        seen: dict[str, int] = {}
        parameters = []
        for i, spec in enumerate(raw):
            where = f'spec.parameters[{i}] ("{spec.name}")' if spec.name else f"spec.parameters[{i}]"
            if not spec.name:
                problems.add(f"{where}.name", "is empty; give every parameter a name")
            elif spec.name in seen:
                problems.add(
                    f"{where}.name",
                    f'"{spec.name}" is also the name of spec.parameters[{seen[spec.name]}]; '
                    "parameter names must be unique",
                )
            else:
                seen[spec.name] = i
            parameter = _parse_parameter(spec, where, problems)
            if parameter is not None:
                parameters.append(parameter)
        return cls(parameters)


_TYPE_NAMES = "double, int, discrete or categorical"


def _parse_parameter(spec: RawParameter, where: str, problems: Problems) -> Parameter | None:
    fs = f"{where}.feasibleSpace"
    try:
        ptype = ParamType(spec.type)
    except ValueError:
        ptype = ParamType.UNKNOWN
    if ptype is ParamType.UNKNOWN:
        problems.add(f"{where}.parameterType", f"is unknown ({spec.type}); use {_TYPE_NAMES}")
        return None
    try:
        dist = Distribution(spec.distribution)
    except ValueError:
        problems.add(
            f"{fs}.distribution",
            f"is unknown ({spec.distribution}); use uniform, logUniform, normal or logNormal",
        )
        return None
    if dist is Distribution.UNSPECIFIED:
        dist = Distribution.UNIFORM
    if ptype in (ParamType.DISCRETE, ParamType.CATEGORICAL):
        return _parse_list(spec, ptype, fs, problems)
    return _parse_range(spec, ptype, dist, fs, problems)


def _parse_list(spec: RawParameter, ptype: ParamType, fs: str, problems: Problems) -> Parameter | None:
    kind = ptype.name.lower()
    count = len(problems.messages)
    for attr in ("min", "max", "step"):
        if getattr(spec, attr):
            problems.add(f"{fs}.{attr}", f"is not used by {kind} parameters; list the values in feasibleSpace.list")
    values = list(spec.list)
    if not values:
        problems.add(f"{fs}.list", f"is empty; list at least one value for a {kind} parameter")
    seen: dict = {}
    for j, text in enumerate(values):
        token: object = text
        if ptype is ParamType.DISCRETE:
            token = _decimal(text)
            if token is None:
                problems.add(f"{fs}.list[{j}]", f'"{text}" is not a number; discrete values must be numeric')
                continue
        if token in seen:
            problems.add(f"{fs}.list[{j}]", f'"{text}" repeats list[{seen[token]}]; list each value once')
        seen.setdefault(token, j)
    if len(problems.messages) > count:
        return None
    if ptype is ParamType.DISCRETE:
        values.sort(key=Decimal)
    choices = tuple(values)
    return Parameter(
        spec.name, ptype, choices=choices, size=len(choices), _index={v: k for k, v in enumerate(choices)}
    )


def _parse_range(
    spec: RawParameter, ptype: ParamType, dist: Distribution, fs: str, problems: Problems
) -> Parameter | None:
    kind = ptype.name.lower()
    count = len(problems.messages)
    if list(spec.list):
        problems.add(f"{fs}.list", f"is not used by {kind} parameters; set feasibleSpace.min and max instead")
    bounds = {}
    for attr in ("min", "max"):
        text = getattr(spec, attr)
        value = _decimal(text)
        if not text:
            problems.add(f"{fs}.{attr}", f"is missing; a {kind} parameter needs min and max")
        elif value is None:
            problems.add(f"{fs}.{attr}", f'"{text}" is not a number')
        elif ptype is ParamType.INT and value != value.to_integral_value():
            problems.add(f"{fs}.{attr}", f'"{text}" is not an integer')
        else:
            bounds[attr] = value
    step = None
    if spec.step:
        step = _decimal(spec.step)
        if step is None:
            problems.add(f"{fs}.step", f'"{spec.step}" is not a number')
        elif step <= 0:
            problems.add(f"{fs}.step", f'"{spec.step}" must be greater than 0')
        elif ptype is ParamType.INT and step != step.to_integral_value():
            problems.add(f"{fs}.step", f'"{spec.step}" is not an integer; int parameters need an integer step')
    if len(bounds) == 2:
        if bounds["min"] >= bounds["max"]:
            problems.add(
                f"{fs}.min", f"({spec.min}) must be less than feasibleSpace.max ({spec.max})"
            )
        elif dist in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL) and bounds["min"] <= 0:
            problems.add(
                f"{fs}.min",
                f"({spec.min}) must be greater than 0 for the {_dist_name(dist)} distribution; "
                "raise min or use uniform",
            )
    if len(problems.messages) > count:
        return None
    dmin, dmax = bounds["min"], bounds["max"]
    if ptype is ParamType.INT and step is None:
        step = Decimal(1)
    size = None if step is None else int((dmax - dmin) // step) + 1
    return Parameter(
        spec.name, ptype, dist, low=float(dmin), high=float(dmax), dmin=dmin, dstep=step, size=size
    )


def _dist_name(dist: Distribution) -> str:
    return {Distribution.LOG_UNIFORM: "logUniform", Distribution.LOG_NORMAL: "logNormal"}[dist]
