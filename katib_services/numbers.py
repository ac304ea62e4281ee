"""Numbers and user strings as they arrive on the wire: strict parsing and safe echoing.

Every number a request carries is text (bounds, steps, settings, metric values, ports). Python's
own parsers are too lenient for that: `int("٣")` is 3, `float("1_0")` is 10.0, `Decimal("NaN")`
is a number. These parsers accept only plain ASCII decimal notation, of bounded length, so that a
value either means what a reader of the YAML would think or is refused.

`quote` is how user strings appear in messages: cut to a short prefix and ASCII-escaped, so that
no message grows with the input or carries control characters.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

MAX_NUMBER_TEXT = 100  # characters: longer text is not a number here
MAX_INTEGER_TEXT = 1000  # an integer this long is parsed (and then found out of range)

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_decimal(text: str) -> Decimal | None:
    """The exact decimal value of plain ASCII notation ("0.1", "-3", "1e-5"), else None.

    NaN, infinities, hexadecimal, underscores, non-ASCII digits and text longer than
    MAX_NUMBER_TEXT are refused. Surrounding whitespace is ignored.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) > MAX_NUMBER_TEXT or not _DECIMAL.fullmatch(text):
        return None
    return Decimal(text)


def parse_float(text: str) -> float | None:
    """A finite float of plain ASCII notation, else None ("1e400", "nan", "٣" and "0x10" give None)."""
    value = parse_decimal(text)
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def parse_int(text: str) -> int | None:
    """An integer in plain ASCII digits with an optional sign, else None ("1.0", "1e3", "٣" give None)."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if len(text) > MAX_INTEGER_TEXT or not _INTEGER.fullmatch(text):
        return None
    return int(text)


# A Kubernetes object name (Experiment, Trial): a DNS-1123 subdomain of at most 253 characters.
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
OBJECT_NAME_MAX = 253


def is_object_name(text: object) -> bool:
    """Whether `text` is a Kubernetes object name: lowercase ASCII letters, digits, '-' and '.', in
    dot-separated labels that start and end with a letter or digit, at most 253 characters."""
    return isinstance(text, str) and len(text) <= OBJECT_NAME_MAX and _OBJECT_NAME.fullmatch(text) is not None


def shorten(text: object, limit: int = 48) -> str:
    """`text` for a message: at most `limit` characters, ASCII-escaped, with its length when cut."""
    text = str(text)
    shown = text[:limit]
    if not (shown.isascii() and shown.isprintable()):
        shown = shown.encode("ascii", "backslashreplace").decode("ascii")
        shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    return shown + (f"... ({len(text)} characters)" if len(text) > limit else "")


def quote(text: object, limit: int = 48) -> str:
    """`text` in double quotes for a message (see `shorten`)."""
    return f'"{shorten(text, limit)}"'
