"""Algorithms that exist only for tests: one that blocks until released, one that crashes, one
that sleeps (for servers run as processes: `python -m tests.plugins ARGS` is katib-suggestion with
them registered)."""

import threading
import time
from pathlib import Path

from katib_services.algorithms import registry
from katib_services.algorithms.base import Algorithm, Proposal, Reply
from katib_services.algorithms.settings import Schema, Setting

release = threading.Event()
entered = threading.Event()


class Blocking(Algorithm):
    name = "test-blocking"
    summary = "Waits for tests.plugins.release before answering."

    def suggest(self, request):
        entered.set()
        release.wait(10)
        return Reply([Proposal({"x": repr(i / request.count)}) for i in range(request.count)])


class Crashing(Algorithm):
    name = "test-crashing"
    summary = "Raises an unexpected error."

    def suggest(self, request):
        return 1 / 0


class Sleeping(Algorithm):
    """Sleeps `seconds` before answering (touching the file `entered` first, when set); with
    `stubborn` true it ignores its caller's cancellation, as a computation between two checks."""

    name = "test-sleeping"
    summary = "Sleeps before answering."
    schema = Schema(
        Setting("seconds", float, 1.0, "How long to sleep.", low=0, high=600),
        Setting("stubborn", bool, False, "Never check whether the caller is gone."),
        Setting("entered", str, None, "A file to create when the call starts."),
    )

    def suggest(self, request):
        s = request.settings
        if s["entered"]:
            Path(s["entered"]).touch()
        end = time.monotonic() + s["seconds"]
        while time.monotonic() < end:
            if not s["stubborn"]:
                request.check()
            time.sleep(0.02)
        return Reply([Proposal({"x": repr(i / request.count)}) for i in range(request.count)])


if __name__ == "__main__":
    from katib_services.services import suggestion

    registry.register("test-sleeping", "tests.plugins:Sleeping")
    suggestion.main()
