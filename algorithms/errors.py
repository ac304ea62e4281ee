"""Errors that algorithms raise, each with a meaning the service maps to one status code."""


class InvalidSpec(ValueError):
    """The experiment spec or the algorithm settings are invalid (INVALID_ARGUMENT).

    The message names the offending field, in the form the user wrote it in the Experiment YAML,
    and says how to fix it.
    """


class Exhausted(RuntimeError):
    """The search cannot produce the requested number of new assignments (FAILED_PRECONDITION)."""


class Problems:
    """Collects every problem found while validating, so one reply can list them all."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.messages.append(f"{field}: {message}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise InvalidSpec("; ".join(self.messages))
