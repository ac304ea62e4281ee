"""Just enough of the protobuf wire format to lift repeated sub-messages out of a request.

GetSuggestions requests carry every trial of the experiment, and nearly all of them are the same
from one request to the next. Slicing each trial's bytes straight out of the request lets the
server look trials up in its cache without building a Python object for each one.
"""

from __future__ import annotations


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def split_field(data: bytes, number: int) -> tuple[bytes, list[bytes]]:
    """(the message without field `number`, the bytes of each occurrence of that field).

    The field must be length-delimited (a message, string or bytes field).
    """
    items: list[bytes] = []
    rest = bytearray()
    wanted = number << 3 | 2  # the tag of the wanted field, as a varint
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        tag = data[pos]
        if tag < 0x80:  # one-byte tag: field numbers up to 15, decoded inline
            pos += 1
        else:
            tag, pos = _varint(data, pos)
        kind = tag & 7
        if kind == 2:
            length = data[pos] if pos < end else 0x80
            if length < 0x80:  # lengths below 128 and below 16384, the common cases, decoded inline
                pos += 1
            elif pos + 1 < end and data[pos + 1] < 0x80:
                length = (length & 0x7F) | data[pos + 1] << 7
                pos += 2
            else:
                length, pos = _varint(data, pos)
            stop = pos + length
        elif kind == 0:
            _, stop = _varint(data, pos)
        elif kind == 1:
            stop = pos + 8
        elif kind == 5:
            stop = pos + 4
        else:
            raise WireError(f"unsupported wire type {kind}")
        if stop > end:
            raise WireError("field runs past the end of the message")
        if tag == wanted:
            items.append(data[pos:stop])
        else:
            rest += data[start:stop]
        pos = stop
    return bytes(rest), items
