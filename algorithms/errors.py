"""Errors that algorithms raise, each with a meaning the service maps to one status code."""

MAX_MESSAGE_BYTES = 4096  # a status message must fit gRPC's metadata limit (16 KiB) with room to spare
_MAX_PROBLEM_CHARS = 600


class InvalidSpec(ValueError):
    """The experiment spec or the algorithm settings are invalid (INVALID_ARGUMENT).

    The message names the offending field, in the form the user wrote it in the Experiment YAML,
    and says how to fix it.
    """


class Exhausted(RuntimeError):
    """The search cannot produce the requested number of new assignments (FAILED_PRECONDITION)."""


class TooLarge(ValueError):
    """The request asks for more work than a configured limit allows (RESOURCE_EXHAUSTED)."""


class Cancelled(RuntimeError):
    """The caller is gone (deadline passed or call cancelled): the work is abandoned."""


class Problems:
    """Collects every problem found while validating, so one reply can list them all."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, field: str, message: str) -> None:
        text = f"{field}: {message}"
        if len(text) > _MAX_PROBLEM_CHARS:
            text = text[: _MAX_PROBLEM_CHARS - 3] + "..."
        self.messages.append(text)

    def raise_if_any(self) -> None:
        if self.messages:
            raise InvalidSpec(summarize(self.messages))


def summarize(messages: list[str], limit: int = MAX_MESSAGE_BYTES) -> str:
    """The messages joined by "; ", the first ones in full, then "and N more", within `limit` bytes."""
    out: list[str] = []
    size = 0
    for i, message in enumerate(messages):
        rest = len(messages) - i
        tail = len(f"; and {rest} more problem(s)")
        cost = len(message.encode()) + (2 if out else 0)
        if size + cost + (tail if rest > 1 else 0) > limit:
            return "; ".join(out) + f"; and {rest} more problem(s)" if out else fit(message, limit)
        out.append(message)
        size += cost
    return "; ".join(out)


def fit(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."
