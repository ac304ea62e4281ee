"""Metric-line parsing of Katib's v1beta1 StdOut and File metrics collectors, for `katib-local run`.

The rules below were checked against kubeflow/katib; paths are in that repository.

Collector config (`spec.metricsCollectorSpec`, read by `collector_config`)
  - `collector.kind` is StdOut, File, TensorFlowEvent, PrometheusMetric, Custom or None
    (pkg/apis/controller/common/v1beta1/common_types.go). With no `collector`, the kind is StdOut
    (pkg/apis/controller/experiments/v1beta1/experiment_defaults.go). A `collector` without a kind
    is rejected, as Katib's validator does (pkg/webhook/v1beta1/experiment/validator/validator.go).
  - StdOut reads the trial's stdout and stderr together (Katib runs it with `1>file 2>&1`) and always
    as TEXT (pkg/webhook/v1beta1/pod/utils.go and inject_webhook.go).
  - File reads `source.fileSystemPath.path`. `fileSystemPath.kind` must be File and `format` is TEXT
    or JSON, TEXT when unset. With JSON, `source.filter` must be absent (validator.go). Katib puts
    the file at /var/log/katib/metrics.log when no path is given. Locally the path is required.
  - `source.filter.metricsFormat` is a list of regexes. No list or an empty list means
    DEFAULT_FILTER (pkg/metricscollector/v1beta1/common/const.go; GetFilterRegexpList in
    pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go).
  - TensorFlowEvent, PrometheusMetric and Custom have no local collector. None means no collection.

TEXT lines (parseLogsInTextFormat in file-metricscollector.go)
  - Katib skips a line that contains no metric name as a substring. This is only a shortcut.
  - Timestamp: the line is split at its first space (" " only, not tabs). If the part before it
    parses as Go's time.RFC3339Nano, that is the line's timestamp, e.g.
    `2026-11-28T08:00:00.5+02:00`. An offset (Z or +hh:mm) is required. Otherwise the line has
    no timestamp.
  - Every filter is run over the whole line (timestamp included) in order, and every
    non-overlapping match counts. Submatch group 1, trimmed, is the name and group 2, trimmed, is
    the value. Groups are counted by their "(" in order, so nested groups count too. A match whose
    name is one of the metric names gives a metric.
  - DEFAULT_FILTER matches `name=value` with optional spaces around "=". The name is made of
    ASCII letters, digits, "_", "|" and "-". The value looks like `-1.5e-3`, `.4`, `1E0` or `+2`.
  - Files are split on "\\n" only. A "\\r" (tqdm progress) does not end a line.

JSON lines (parseLogsInJsonFormat in file-metricscollector.go)
  - Each non-empty line is one JSON object. The metrics are read in metric-name order from keys
    equal to the names, and only values that are JSON strings count: `"0.9"` is read, `0.9` is
    not.
  - The timestamp is the key "timestamp" (TimeStampJsonKey in const.go). It is either an
    RFC3339Nano string, as in TEXT, or a number of seconds since the Unix epoch
    (`time.time()`, which cloudml-hypertune writes).

Where this module differs from Katib, on purpose:
  - Regexes run on Python's `re` with re.ASCII, not Go's RE2, so `\\w`, `\\d` and `\\s` are ASCII as in
    Go. Syntax that Python rejects is rejected when the parser is built. A filter needs at least 2
    capturing groups, and `;` is refused: Katib passes the filters to its collector joined by ";"
    and splits them there, so such a filter never runs on Katib as written.
  - Values must be finite decimal numbers as `katib_services.numbers.parse_float` reads them
    (at most 100 characters, exponents of at most 6 digits), or they are dropped. Katib would
    store "" for `accuracy=` or `accuracy=abc` and fail later.
  - Bad input never raises. Malformed JSON lines are skipped. Katib fails the whole collection.
  - Timestamps are normalized to RFC 3339 UTC (`...Z`, fraction kept up to nanoseconds, trailing
    zeros dropped), with the DB manager's parser (`runner.obslog`, which clamps instants outside
    1677-2262). A metric with no usable timestamp gets the time its line was read (`now`).
    Katib keeps the text as written and uses 0001-01-01T00:00:00Z when there is none.
  - Epoch seconds keep their fraction: 1638422847.28721 becomes ...27.28721Z. Katib reads the
    digits after the point as nanoseconds and gives ...27.000028721Z.
  - Filling in the objective as "unavailable" when it was never reported is left to the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

from katib_services.numbers import parse_float
from katib_services.obslog import format_ns, time_ns

TEXT, JSON = "TEXT", "JSON"
STDOUT, FILE, NONE = "StdOut", "File", "None"
UNSUPPORTED_KINDS = ("TensorFlowEvent", "PrometheusMetric", "Custom")
DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
TIMESTAMP_JSON_KEY = "timestamp"

_SPEC = "spec.metricsCollectorSpec"
_FILTERS_FIELD = f"{_SPEC}.source.filter.metricsFormat"
_FORMAT_FIELD = f"{_SPEC}.source.fileSystemPath.format"
_NAME_RUN = re.compile(r"[\w|-]+", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class MetricLog:
    """One reported metric, as Katib sends it to the DB manager: RFC 3339 UTC time, name, value."""

    time_stamp: str
    name: str
    value: str


class CollectorConfig(NamedTuple):
    """How to collect: kind StdOut (path None), File, or None (no collection; the rest None)."""

    kind: str
    path: str | None
    format: str | None
    filters: list[str] | None  # None: DEFAULT_FILTER


class MetricParser:
    """Turns lines of trial output into MetricLogs, as Katib's collector would (see module doc)."""

    def __init__(
        self,
        metric_names: Sequence[str],
        filters: Sequence[str] | None = None,
        format: str | None = TEXT,
        now: Callable[[], datetime] | None = None,
    ):
        names = [metric_names] if isinstance(metric_names, str) else list(metric_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(
                "spec.objective.objectiveMetricName: metric names must be non-empty strings, objective first; "
                f"got {metric_names!r}"
            )
        format = format or TEXT  # Katib's default for an unset format
        if format not in (TEXT, JSON):
            raise ValueError(f"{_FORMAT_FIELD}: must be {TEXT} or {JSON}, got {format!r}")
        if format == JSON and filters:
            raise ValueError(f"{_SPEC}.source.filter: must be omitted when the format is JSON")
        self.metric_names = tuple(dict.fromkeys(names))
        self.format = format
        self._filters = _compile_filters(filters)
        self._now = now or (lambda: datetime.now(timezone.utc))

    def parse_line(self, line: str) -> list[MetricLog]:
        """The metrics in one line (a trailing "\\n" is ignored). Never raises on bad input."""
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("utf-8", "replace")
        if not isinstance(line, str):
            return []
        if line.endswith("\n"):
            line = line[:-1]
        stamp, pairs = self._json(line) if self.format == JSON else self._text(line)
        if not pairs:
            return []
        stamp = stamp or _utc(self._now())
        return [MetricLog(stamp, name, value) for name, value in pairs]

    def parse_text(self, text: str) -> list[MetricLog]:
        """The metrics in a whole file or output chunk, split into lines on "\\n" as Katib does."""
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        if not isinstance(text, str):
            return []
        return [log for line in text.split("\n") for log in self.parse_line(line)]

    def _text(self, line: str) -> tuple[str | None, list[tuple[str, str]]]:
        if not any(name in line for name in self.metric_names):
            return None, []
        head, space, _ = line.partition(" ")
        stamp = _parse_rfc3339(head) if space else None
        pairs = []
        for pattern in self._filters:
            for match in _find_all(pattern, line):
                name, value = (match.group(1) or "").strip(), (match.group(2) or "").strip()
                if name in self.metric_names and _is_number(value):
                    pairs.append((name, value))
        return stamp, pairs

    def _json(self, line: str) -> tuple[str | None, list[tuple[str, str]]]:
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return None, []
        if not isinstance(obj, dict):
            return None, []
        stamp = obj.get(TIMESTAMP_JSON_KEY)
        if isinstance(stamp, str):
            stamp = _parse_rfc3339(stamp)
        elif isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            stamp = _epoch_seconds(stamp)
        else:
            stamp = None
        values = ((name, obj.get(name)) for name in self.metric_names)
        return stamp, [(n, v.strip()) for n, v in values if isinstance(v, str) and _is_number(v.strip())]


def collector_config(metrics_collector_spec: dict | None) -> CollectorConfig:
    """Reads an Experiment's `metricsCollectorSpec` (YAML shape) with Katib's defaults.

    Raises ValueError naming the field for kinds without a local collector, a File collector
    without a path, a bad format or an invalid filter.
    """
    spec = {} if metrics_collector_spec is None else metrics_collector_spec
    if not isinstance(spec, dict):
        raise ValueError(f"{_SPEC}: must be a mapping, got {type(spec).__name__}")
    collector = _mapping(spec, "collector", _SPEC)
    source = _mapping(spec, "source", _SPEC) or {}
    kind = STDOUT if collector is None else collector.get("kind")
    if kind == NONE:
        return CollectorConfig(NONE, None, None, None)
    if kind in UNSUPPORTED_KINDS:
        raise ValueError(
            f"{_SPEC}.collector.kind: {kind} is not supported by katib-local; use StdOut (the trial prints "
            "name=value lines) or File (the trial writes them to source.fileSystemPath.path)"
        )
    if kind not in (STDOUT, FILE):
        raise ValueError(
            f"{_SPEC}.collector.kind: must be one of StdOut, File, None (or, in a cluster only, "
            f"{', '.join(UNSUPPORTED_KINDS)}); got {kind!r}"
        )
    filter_spec = _mapping(source, "filter", f"{_SPEC}.source")
    metrics_format = filter_spec.get("metricsFormat") if filter_spec else None
    _compile_filters(metrics_format)
    filters = list(metrics_format) if metrics_format else None
    if kind == STDOUT:
        return CollectorConfig(STDOUT, None, TEXT, filters)

    path_spec = _mapping(source, "fileSystemPath", f"{_SPEC}.source") or {}
    path = path_spec.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(
            f"{_SPEC}.source.fileSystemPath.path: is required for collector kind File; "
            "set it to the file the trial writes its metrics to"
        )
    if path_spec.get("kind") not in (None, "", FILE):
        raise ValueError(
            f"{_SPEC}.source.fileSystemPath.kind: must be File for collector kind File, got {path_spec.get('kind')!r}"
        )
    file_format = path_spec.get("format") or TEXT
    if file_format not in (TEXT, JSON):
        raise ValueError(f"{_FORMAT_FIELD}: must be {TEXT} or {JSON}, got {file_format!r}")
    if file_format == JSON and filter_spec is not None:
        raise ValueError(
            f"{_SPEC}.source.filter: must be omitted when {_FORMAT_FIELD} is JSON (JSON metrics are read by key)"
        )
    return CollectorConfig(FILE, path, file_format, filters)


def _compile_filters(filters: Sequence[str] | None) -> list[re.Pattern]:
    if filters is None:
        filters = []
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
        raise ValueError(f"{_FILTERS_FIELD}: must be a list of regular expressions, got {filters!r}")
    compiled = []
    for i, text in enumerate(filters or [DEFAULT_FILTER]):
        field = f"{_FILTERS_FIELD}[{i}]"
        if not isinstance(text, str):
            raise ValueError(f"{field}: must be a string, got {type(text).__name__}")
        if ";" in text:
            raise ValueError(f"{field}: must not contain ';' (Katib splits the filter list on ';'): {text!r}")
        try:
            pattern = re.compile(text, re.ASCII)
        except (re.error, OverflowError, RecursionError, ValueError) as error:
            raise ValueError(f"{field}: invalid regular expression {text!r}: {error}") from None
        if pattern.groups < 2:
            raise ValueError(
                f"{field}: {text!r} has {pattern.groups} capturing group(s); at least 2 are needed, "
                "the first for the metric name and the second for its value"
            )
        compiled.append(pattern)
    return compiled


def _find_all(pattern: re.Pattern, line: str) -> Iterator[re.Match]:
    """pattern.finditer(line), in linear time for DEFAULT_FILTER.

    Python's backtracking would take quadratic time on long runs of name characters. A
    DEFAULT_FILTER match can only start where a run of name characters starts: if it matches from
    inside a run, it also matches from the run's start. So each run is tried once, from its start.
    """
    if pattern.pattern != DEFAULT_FILTER:
        yield from pattern.finditer(line)
        return
    pos = 0
    while run := _NAME_RUN.search(line, pos):
        match = pattern.match(line, run.start())
        if match:
            yield match
        pos = match.end() if match else run.end()


def _is_number(value: str) -> bool:
    return parse_float(value) is not None


def _parse_rfc3339(text: str) -> str | None:
    """The time normalized to RFC 3339 UTC, or None when it is not an RFC 3339 time."""
    try:
        return format_ns(time_ns(text, "time_stamp"))
    except ValueError:
        return None


def _epoch_seconds(seconds: int | float) -> str | None:
    try:
        exact = Decimal(repr(seconds)) if isinstance(seconds, float) else Decimal(seconds)
        return format_ns(int(exact * 1_000_000_000))
    except (ArithmeticError, OverflowError, ValueError):
        return None


def _utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_ns((moment - _EPOCH) // timedelta(microseconds=1) * 1000)


def _mapping(parent: dict, key: str, where: str) -> dict | None:
    value = parent.get(key)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{where}.{key}: must be a mapping, got {type(value).__name__}")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")
