"""Prometheus metrics of a server (prometheus-client), served over HTTP at `--metrics-port`.

Imported only when a server is started with a metrics port, so a server without one pays
nothing. Every metric is listed in `METRICS` (name, type, labels, meaning): the README's table
and the tests come from it. The `algorithm` label only ever holds a registered algorithm or rule
name (empty when the request named none that exists), so hostile requests cannot grow the label
space. The process collector of prometheus-client adds `process_resident_memory_bytes`,
`process_cpu_seconds_total` and the like.
"""

from __future__ import annotations

import weakref

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TRIAL_BUCKETS = (0, 10, 100, 500, 1000, 5000, 10000, 50000)

# name, type, labels, meaning
METRICS = (
    ("katib_rpc_calls_total", "counter", "service, rpc, algorithm, code", "Calls answered, by gRPC status code (OK included)."),
    ("katib_rpc_errors_total", "counter", "service, rpc, algorithm, code", "Calls answered with a status other than OK."),
    ("katib_rpc_duration_seconds", "histogram", "service, rpc, algorithm", "Time from a call's arrival to its answer."),
    ("katib_rpc_in_flight", "gauge", "", "Calls being served now (health and reflection excluded)."),
    ("katib_suggestion_trials", "histogram", "algorithm", "Trials carried by each GetSuggestions request."),
    ("katib_state_store_entries", "gauge", "", "Entries held in the warm-state store (--state-entries bounds them)."),
    ("katib_state_store_bytes", "gauge", "", "Estimated bytes held in the warm-state store (--state-mb bounds them)."),
    ("katib_dbmanager_call_duration_seconds", "histogram", "code", "Early stopping: each GetObservationLog call to the DB manager, by status code."),
)
_HELP = {name: meaning for name, _, _, meaning in METRICS}
_CALL_LABELS = ("service", "rpc", "algorithm", "code")

# prometheus-client adds the _total suffix of a counter itself.
CALLS = Counter("katib_rpc_calls", _HELP["katib_rpc_calls_total"], _CALL_LABELS)
ERRORS = Counter("katib_rpc_errors", _HELP["katib_rpc_errors_total"], _CALL_LABELS)
DURATION = Histogram("katib_rpc_duration_seconds", _HELP["katib_rpc_duration_seconds"], _CALL_LABELS[:3], buckets=_LATENCY_BUCKETS)
TRIALS = Histogram("katib_suggestion_trials", _HELP["katib_suggestion_trials"], ("algorithm",), buckets=_TRIAL_BUCKETS)
DBMANAGER = Histogram(
    "katib_dbmanager_call_duration_seconds", _HELP["katib_dbmanager_call_duration_seconds"], ("code",), buckets=_LATENCY_BUCKETS
)


class _Live:
    """Gauges read at scrape time: calls in flight, and the state stores' size."""

    def __init__(self):
        self.sources = weakref.WeakSet()  # objects with in_flight() and stores() (their StateStores)

    def collect(self):
        in_flight = GaugeMetricFamily("katib_rpc_in_flight", _HELP["katib_rpc_in_flight"])
        entries = GaugeMetricFamily("katib_state_store_entries", _HELP["katib_state_store_entries"])
        size = GaugeMetricFamily("katib_state_store_bytes", _HELP["katib_state_store_bytes"])
        sources = list(self.sources)
        stores = {id(store): store for source in sources for store in source.stores()}  # a store may serve twice
        sizes = [store.stats() for store in stores.values()]
        in_flight.add_metric([], sum(source.in_flight() for source in sources))
        entries.add_metric([], sum(n for n, _ in sizes))
        size.add_metric([], sum(b for _, b in sizes))
        yield from (in_flight, entries, size)


_LIVE = _Live()
REGISTRY.register(_LIVE)


def watch(source) -> None:
    """Adds a server (in_flight(), stores()) to the live gauges."""
    _LIVE.sources.add(source)


def record_call(service: str, rpc: str, algorithm: str, code: str, seconds: float, trials: int | None, db_calls) -> None:
    CALLS.labels(service, rpc, algorithm, code).inc()
    if code != "OK":
        ERRORS.labels(service, rpc, algorithm, code).inc()
    DURATION.labels(service, rpc, algorithm).observe(seconds)
    if trials is not None:
        TRIALS.labels(algorithm).observe(trials)
    for db_code, db_seconds in db_calls:
        DBMANAGER.labels(db_code).observe(db_seconds)


def serve(port: int):
    """Serves /metrics over HTTP on `port` (0: any free port) in a daemon thread; the HTTP server
    (its `server_port` is the port used; `shutdown()` stops it)."""
    http, _thread = start_http_server(port)
    return http
