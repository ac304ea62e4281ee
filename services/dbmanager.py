"""Katib's DBManager service over a SQLite observation-log store, and its CLI.

    katib-dbmanager [--address HOST:PORT] [--db PATH]      (defaults 0.0.0.0:6789 and katib.db)
    python -m katib_services.services.dbmanager ...

Metrics collectors report each trial's metric logs here; early-stopping services read them back
(`GetObservationLog`). Storage, filters and durability are described in `katib_services.obslog`.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3

from katib_services.algorithms.errors import InvalidSpec
from katib_services.numbers import quote
from katib_services.obslog import ObservationStore

from .pb import api_pb2
from .server import Server, add_server_arguments, current_call, serve_until_signal, server_options, start_or_exit

SERVICE = "DBManager"
DEFAULT_ADDRESS = "0.0.0.0:6789"  # the port of Katib's own DB manager
DEFAULT_DB = "katib.db"


@contextlib.contextmanager
def _bad_input_is_invalid_argument():
    """Turns the store's ValueError for bad input into InvalidSpec (INVALID_ARGUMENT)."""
    try:
        yield
    except ValueError as error:
        raise InvalidSpec(str(error)) from None


class DBManagerServicer:
    """Decodes each request and calls the store."""

    def __init__(self, store: ObservationStore):
        self.store = store

    def ReportObservationLog(self, request, context):
        logs = [(m.time_stamp, m.metric.name, m.metric.value) for m in request.observation_log.metric_logs]
        with _bad_input_is_invalid_argument():
            self.store.report(request.trial_name, logs)
        current_call().summary = f"trial {quote(request.trial_name, 253)}: stored {len(logs)} log(s)"
        return api_pb2.ReportObservationLogReply()

    def GetObservationLog(self, request, context):
        with _bad_input_is_invalid_argument():
            logs = self.store.get(request.trial_name, request.metric_name, request.start_time, request.end_time)
        return api_pb2.GetObservationLogReply(
            observation_log=api_pb2.ObservationLog(
                metric_logs=[
                    api_pb2.MetricLog(time_stamp=stamp, metric=api_pb2.Metric(name=name, value=value))
                    for stamp, name, value in logs
                ]
            )
        )

    def DeleteObservationLog(self, request, context):
        with _bad_input_is_invalid_argument():
            count = self.store.delete(request.trial_name)
        current_call().summary = f"trial {quote(request.trial_name, 253)}: deleted {count} log(s)"
        return api_pb2.DeleteObservationLogReply()


def start(db_path: str, address: str = DEFAULT_ADDRESS, **options) -> Server:
    """Starts a DBManager server storing observation logs in the SQLite file `db_path`."""
    servicer = DBManagerServicer(ObservationStore(db_path))
    return Server(address, [(servicer, SERVICE)], **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="katib-dbmanager", description="Serve Katib's DBManager (observation logs) over gRPC.")
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite file of the observation logs (default {DEFAULT_DB})")
    add_server_arguments(parser, DEFAULT_ADDRESS)
    args = parser.parse_args(argv)
    options = server_options(parser, args)
    try:
        server = start_or_exit(parser, lambda: start(args.db, args.address, **options))
    except sqlite3.Error as error:
        parser.error(f"--db {args.db}: {error}")
    serve_until_signal(server, args.grace, f"katib-dbmanager serving {args.db} on {server.address}")


if __name__ == "__main__":
    main()
