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

Validation owns every number (`SearchSpace.parse`): bounds, steps and discrete values are plain
ASCII decimals, finite as doubles; a log distribution needs a positive min whose double is not
0; a stepped parameter (INT, or DOUBLE with `step`) must have all its points exact within
`PRECISION` significant digits, so that every point formats and parses back to itself. `min ==
max` is a constant parameter (one point). A trial value that is not a point (unparseable, out of
range, off the step grid) makes its trial foreign; it never raises.

Counting points: a finite parameter has `size` points; a continuous one has as many points as
there are doubles in [min, max] (`count`), which matters only for tiny ranges, where a batch
could otherwise repeat a value. `SearchSpace.count` is the number of distinct assignments.
"""

from __future__ import annotations

import enum
import math
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from statistics import NormalDist
from typing import NamedTuple, Union

from katib_services.numbers import MAX_NUMBER_TEXT, parse_decimal, parse_float, quote, shorten

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


LOG = frozenset({Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL})

# A point of one parameter: an index for finite parameters, the float itself for continuous ones.
Key = Union[int, float]

PRECISION = 34  # significant digits of the exact-decimal core (as IEEE decimal128)
_PLAIN_DIGITS = 40  # longer stepped doubles are formatted in scientific notation
# Arithmetic on points: never rounds (Inexact traps), so a result is exact or an error.
_EXACT = Context(prec=PRECISION + 6, Emax=999_999, Emin=-999_999, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

# Normalizing what the user wrote ("0.10" -> "0.1"): wide enough never to round a parsed number.
_WIDE = Context(prec=2 * MAX_NUMBER_TEXT, Emax=999_999_999, Emin=-999_999_999)

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


def _ordinal(x: float) -> int:
    """Doubles numbered in order: consecutive doubles have consecutive ordinals (0.0 and -0.0 are 0)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def _from_ordinal(n: int) -> float:
    if n < 0:
        return -_from_ordinal(-n)
    return struct.unpack("<d", struct.pack("<q", n))[0]


def plain_double(exact: Decimal) -> str:
    """A double's exact value as Katib's trials read it: plain decimals ("0.1" for 0.10, like the
    user writes it; "3.0" for 3, as repr() does), or exact scientific notation ("5.5E+307") rather
    than more than _PLAIN_DIGITS characters."""
    exact = exact.normalize(_EXACT)
    text = format(exact, "f")
    if len(text) > _PLAIN_DIGITS:
        return str(exact)
    return text if "." in text else text + ".0"


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

    @classmethod
    def listed(cls, name: str, ptype: ParamType, choices: tuple[str, ...]) -> Parameter:
        """A DISCRETE or CATEGORICAL parameter of the values `choices` (in the order given)."""
        return cls(name, ptype, choices=choices, size=len(choices), _index={v: k for k, v in enumerate(choices)})

    @property
    def finite(self) -> bool:
        return self.size is not None

    @property
    def count(self) -> int:
        """Distinct values: the points of a finite parameter, the doubles of a continuous range."""
        if self.size is not None:
            return self.size
        return _ordinal(self.high) - _ordinal(self.low) + 1

    def key_at(self, index: int) -> Key:
        """The `index`-th distinct value, 0 <= index < count, in increasing order."""
        return index if self.size is not None else _from_ordinal(_ordinal(self.low) + index)

    # -- values -------------------------------------------------------------------------------

    def format(self, key: Key) -> str:
        """The string Katib passes to the trial for this point."""
        if self.size is None:
            return repr(float(key))
        if self.choices:
            return self.choices[key]
        exact = self.exact(key)
        if self.type is ParamType.INT:
            return str(int(exact))
        return plain_double(exact)

    def parse(self, text: str) -> Key | None:
        """The key of a value string, or None when it is not a point of this parameter."""
        if self.choices:
            return self._index.get(text)
        if self.size is None:
            value = parse_float(text)
            return value if value is not None and self.low <= value <= self.high else None
        value = parse_decimal(text)
        if value is None or value < self.dmin:
            return None
        try:
            k, rest = _EXACT.divmod(_EXACT.subtract(value, self.dmin), self.dstep)
        except ArithmeticError:  # not exact within the core's precision: not one of our points
            return None
        if rest or not 0 <= k < self.size:
            return None
        return int(k)

    def value(self, key: Key) -> float:
        """The numeric value of a point (its list position for CATEGORICAL)."""
        if self.size is None or self.type is ParamType.CATEGORICAL:
            return float(key)
        return float(self.exact(key))

    def exact(self, key: int) -> Decimal:
        """The exact value of a point of an INT, stepped DOUBLE or DISCRETE parameter."""
        if self.choices:
            return Decimal(self.choices[key])  # a plain decimal, as validated
        return _EXACT.add(self.dmin, _EXACT.multiply(self.dstep, Decimal(key)))

    # -- unit-cube encoding ---------------------------------------------------------------------
    # Every difference below is taken between halves (x/2 - lo/2), so ranges as wide as
    # [-1e308, 1e308] never overflow; halving is exact, so results equal the plain formulas.

    def from_unit(self, u: float) -> Key:
        """The point at quantile `u` in [0, 1] of this parameter's distribution."""
        u = min(u, 1.0) if u >= 0.0 else 0.0  # NaN gives 0
        if self.size is not None and (self.choices or self.distribution is Distribution.UNIFORM):
            return min(int(u * self.size), self.size - 1)
        x = self._inverse_cdf(u)
        if self.size is None:
            return min(max(x, self.low), self.high)
        k = round((x / 2 - self.low / 2) / (float(self.dstep) / 2))
        return min(max(k, 0), self.size - 1)

    def to_unit(self, key: Key) -> float:
        """The quantile in [0, 1] of a point; the inverse of `from_unit`."""
        if self.size is not None and (self.choices or self.distribution is Distribution.UNIFORM):
            return (key + 0.5) / self.size
        x = min(max(self.value(key), self.low), self.high)
        lo, hi = self._range()
        if self.distribution in LOG:
            x = math.log(x)
        if hi == lo:
            return 0.5
        if self.distribution in (Distribution.NORMAL, Distribution.LOG_NORMAL):
            half_mean = lo / 4 + hi / 4
            z = (x / 2 - half_mean) / (hi / 12 - lo / 12)
            return min(max((_STD.cdf(z) - _TAIL) / _MASS, 0.0), 1.0)
        return min(max((x / 2 - lo / 2) / (hi / 2 - lo / 2), 0.0), 1.0)

    def _range(self) -> tuple[float, float]:
        if self.distribution in LOG:
            return math.log(self.low), math.log(self.high)
        return self.low, self.high

    def _inverse_cdf(self, u: float) -> float:
        lo, hi = self._range()
        if self.distribution in (Distribution.NORMAL, Distribution.LOG_NORMAL):
            q = min(max(_TAIL + u * _MASS, 1e-12), 1 - 1e-12)
            x = 2 * (lo / 4 + hi / 4 + (hi / 12 - lo / 12) * _STD.inv_cdf(q))
        else:
            x = 2 * (lo / 2 + u * (hi / 2 - lo / 2))
        if self.distribution in LOG:
            x = math.exp(x)
        return min(max(x, self.low), self.high)


class SearchSpace:
    """The ordered parameters of an experiment. A point of the space is a tuple of keys."""

    def __init__(self, parameters: Sequence[Parameter]):
        self.parameters = tuple(parameters)
        self.names = tuple(p.name for p in self.parameters)
        sizes = [p.size for p in self.parameters]
        self.size: int | None = math.prod(sizes) if None not in sizes else None  # type: ignore[arg-type]
        self.count = math.prod(p.count for p in self.parameters)  # distinct assignments

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

    def random_point(self, rng: random.Random) -> tuple:
        """A random point: each parameter drawn from its distribution."""
        return self.from_unit([rng.random() for _ in range(len(self))])

    def encode(self, point: Sequence[Key]) -> tuple[float, ...]:
        """The model encoding of a point: quantiles of numeric parameters, indices of categorical ones."""
        return tuple(float(k) if p.type is ParamType.CATEGORICAL else p.to_unit(k) for p, k in zip(self.parameters, point))

    # Mixed-radix numbering of the distinct points, the last parameter varying fastest. On a finite
    # space the number of a point is its grid rank.

    def point(self, rank: int) -> tuple:
        keys = []
        for p in reversed(self.parameters):
            rank, index = divmod(rank, p.count)
            keys.append(p.key_at(index))
        return tuple(reversed(keys))

    def rank(self, point: Sequence[int]) -> int:
        """The number of a point of a finite space."""
        rank = 0
        for p, k in zip(self.parameters, point):
            rank = rank * p.size + k
        return rank

    # -- parsing and validation -----------------------------------------------------------------

    @classmethod
    def parse(
        cls, raw: Sequence[RawParameter], problems: Problems, *, max_parameters: int, max_values: int, field: str = "spec.parameters"
    ) -> SearchSpace:
        """Validates raw parameters, recording every problem under `field` (the parameters of a
        NAS operation have their own); returns the valid ones.

        `max_parameters` bounds the number of parameters and `max_values` the values listed by one
        DISCRETE or CATEGORICAL parameter.
        """
        if not raw:
            problems.add(field, "is empty; declare at least one parameter")
        if len(raw) > max_parameters:
            problems.add(
                field,
                f"has {len(raw)} parameters; this service accepts at most {max_parameters} (--max-parameters)",
            )
            return cls([])
        seen: dict[str, int] = {}
        parameters = []
        for i, spec in enumerate(raw):
            where = f"{field}[{i}] ({quote(spec.name)})" if spec.name else f"{field}[{i}]"
            if not spec.name:
                problems.add(f"{where}.name", "is empty; give every parameter a name")
            elif spec.name in seen:
                problems.add(
                    f"{where}.name",
                    f"{quote(spec.name)} is also the name of {field}[{seen[spec.name]}]; "
                    "parameter names must be unique",
                )
            else:
                seen[spec.name] = i
            parameter = _parse_parameter(spec, where, problems, max_values)
            if parameter is not None:
                parameters.append(parameter)
        return cls(parameters)


_TYPE_NAMES = "double, int, discrete or categorical"


def _parse_parameter(spec: RawParameter, where: str, problems: Problems, max_values: int) -> Parameter | None:
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
        return _parse_list(spec, ptype, fs, problems, max_values)
    return _parse_range(spec, ptype, dist, fs, problems)


def _parse_list(spec: RawParameter, ptype: ParamType, fs: str, problems: Problems, max_values: int) -> Parameter | None:
    kind = ptype.name.lower()
    count = len(problems.messages)
    for attr in ("min", "max", "step"):
        if getattr(spec, attr):
            problems.add(f"{fs}.{attr}", f"is not used by {kind} parameters; list the values in feasibleSpace.list")
    values = list(spec.list)
    if not values:
        problems.add(f"{fs}.list", f"is empty; list at least one value for a {kind} parameter")
    if len(values) > max_values:
        problems.add(f"{fs}.list", f"has {len(values)} values; this service accepts at most {max_values} (--max-list-values)")
        return None
    seen: dict = {}
    numbers: dict[str, Decimal] = {}
    for j, text in enumerate(values):
        token: object = text
        if ptype is ParamType.DISCRETE:
            token = parse_decimal(text)
            if token is None:
                problems.add(f"{fs}.list[{j}]", f"{quote(text)} is not a number; discrete values must be numeric")
                continue
            if not _is_double(token):
                problems.add(f"{fs}.list[{j}]", f"{quote(text)} {_BEYOND_DOUBLE}")
                continue
            numbers[text] = token
        if token in seen:
            problems.add(f"{fs}.list[{j}]", f"{quote(text)} repeats list[{seen[token]}]; list each value once")
        seen.setdefault(token, j)
    if len(problems.messages) > count:
        return None
    if ptype is ParamType.DISCRETE:
        values.sort(key=numbers.__getitem__)
    return Parameter.listed(spec.name, ptype, tuple(values))


def _number(text: str, where: str, problems: Problems, *, integer: bool, positive: bool = False) -> Decimal | None:
    """A bound or step as the exact-decimal core keeps it (normalized), or None with the problem recorded."""
    value = parse_decimal(text)
    if value is None:
        problems.add(where, f"{quote(text)} is not a number")
    elif positive and value <= 0:
        problems.add(where, f"{quote(text)} must be greater than 0")
    elif not _is_double(value):
        problems.add(where, f"{quote(text)} {_BEYOND_DOUBLE}")
    elif integer and value != value.to_integral_value(context=_WIDE):
        problems.add(where, f"{quote(text)} is not an integer" + ("; int parameters need an integer step" if positive else ""))
    else:
        return value.normalize(_WIDE)
    return None


_BEYOND_DOUBLE = "is beyond the range of a double (about 1e-323 to 1.8e308 in magnitude)"


def _is_double(value: Decimal) -> bool:
    """Whether a decimal has a double: finite, and not so small that it rounds to 0."""
    number = float(value)
    return math.isfinite(number) and (number != 0 or value == 0)


def _parse_range(
    spec: RawParameter, ptype: ParamType, dist: Distribution, fs: str, problems: Problems
) -> Parameter | None:
    kind = ptype.name.lower()
    count = len(problems.messages)
    if list(spec.list):
        problems.add(f"{fs}.list", f"is not used by {kind} parameters; set feasibleSpace.min and max instead")
    bounds = []
    for attr in ("min", "max"):
        text = getattr(spec, attr)
        if not text:
            problems.add(f"{fs}.{attr}", f"is missing; a {kind} parameter needs min and max")
        bounds.append(_number(text, f"{fs}.{attr}", problems, integer=ptype is ParamType.INT) if text else None)
    dmin, dmax = bounds
    step = _number(spec.step, f"{fs}.step", problems, integer=ptype is ParamType.INT, positive=True) if spec.step else None
    if dmin is not None and dmax is not None:
        if dmin > dmax:
            problems.add(f"{fs}.min", f"({shorten(spec.min)}) must not be greater than feasibleSpace.max ({shorten(spec.max)})")
        elif dist in LOG and dmin <= 0:
            problems.add(
                f"{fs}.min",
                f"({shorten(spec.min)}) must be greater than 0 for the {_dist_name(dist)} distribution; raise min or use uniform",
            )
    if len(problems.messages) > count:
        return None
    if ptype is ParamType.INT and step is None:
        step = Decimal(1)
    size = None
    if step is not None:
        digits = _digits_needed(dmin, dmax, step)
        if digits > PRECISION:
            problems.add(
                f"{fs}.step" if spec.step else f"{fs}.max",
                f"the points from min {quote(spec.min)} to max {quote(spec.max)} in steps of {quote(step)} need "
                f"{digits} significant digits, and this service computes points exactly to {PRECISION}; "
                "narrow the range or use a coarser step",
            )
            return None
        size = int(_EXACT.divide_int(_EXACT.subtract(dmax, dmin), step)) + 1
    return Parameter(
        spec.name, ptype, dist, low=float(dmin), high=float(dmax), dmin=dmin, dstep=step, size=size
    )


def _digits_needed(low: Decimal, high: Decimal, step: Decimal) -> int:
    """Significant digits that hold every point low + k * step up to high exactly."""
    finest = min(low.as_tuple().exponent, step.as_tuple().exponent)  # type: ignore[type-var]
    largest = max(abs(low), abs(high), step)
    top = largest.adjusted() if largest else finest
    return max(top, finest) - finest + 1


def _dist_name(dist: Distribution) -> str:
    return {Distribution.LOG_UNIFORM: "logUniform", Distribution.LOG_NORMAL: "logNormal"}[dist]
