"""Algorithms that exist only for tests: one that blocks until released, one that crashes."""

import threading

from katib_services.algorithms.base import Algorithm, Proposal, Reply

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
