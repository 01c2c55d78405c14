"""Frames: a 4-byte unsigned big-endian length N, then N bytes.

This is how a command processor and the platform talk over stdin and stdout
(see docs/processors.md, "The stdio protocol").
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

__all__ = ["MAX_FRAME_SIZE", "FrameError", "max_frame_size", "read_frame", "write_frame"]

_HEADER = struct.Struct(">I")

#: The largest frame read_frame() accepts unless told otherwise: 256 MiB (the
#: platform's own limit, so both ends agree), or the
#: IMAGELAKE_MAX_FRAME_BYTES environment variable. It guards against reading
#: something that is not a frame (four bytes of text make a length of about 1.7
#: GB) and allocating whatever it claims.
MAX_FRAME_SIZE = 256 * 1024 * 1024

#: What a length header can express.
_LARGEST_ENCODABLE = 0xFFFFFFFF


class FrameError(Exception):
    """The stream does not hold a valid frame: cut short, or over the size limit."""


def max_frame_size() -> int:
    """The frame size limit in force: IMAGELAKE_MAX_FRAME_BYTES if set, else MAX_FRAME_SIZE."""
    raw = os.environ.get("IMAGELAKE_MAX_FRAME_BYTES", "").strip()
    if not raw:
        return MAX_FRAME_SIZE
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"IMAGELAKE_MAX_FRAME_BYTES must be a whole number of bytes, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"IMAGELAKE_MAX_FRAME_BYTES must be positive, not {value}")
    return value


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Up to n bytes: fewer only at end of stream. Loops, since raw streams and
    pipes may return short reads."""
    if n == 0:
        return b""
    first = stream.read(n)
    if not first or len(first) == n:
        return first or b""
    chunks = [first]
    got = len(first)
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO, max_size: int | None = None) -> bytes | None:
    """Reads one frame and returns its payload.

    Returns None at a clean end of stream (no byte of a new frame was read).
    Raises FrameError when the stream ends inside a frame, or when the frame
    announces more than max_size bytes (default: max_frame_size()); in that
    case nothing of the payload is read.
    """
    limit = max_frame_size() if max_size is None else max_size
    header = _read_exact(stream, _HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise FrameError(f"stream ended inside a frame header ({len(header)} of {_HEADER.size} bytes)")
    (length,) = _HEADER.unpack(header)
    if length > limit:
        raise FrameError(f"frame of {length} bytes is over the limit of {limit} bytes")
    payload = _read_exact(stream, length)
    if len(payload) < length:
        raise FrameError(f"stream ended inside a frame ({len(payload)} of {length} bytes)")
    return payload


def write_frame(stream: BinaryIO, payload: bytes | bytearray | memoryview) -> None:
    """Writes one frame (does not flush: callers flush after a whole message)."""
    length = memoryview(payload).nbytes
    if length > _LARGEST_ENCODABLE:
        raise FrameError(f"frame of {length} bytes does not fit a 4-byte length")
    _write_all(stream, _HEADER.pack(length))
    if length:
        _write_all(stream, payload)


def _write_all(stream: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Buffered streams write everything; raw ones may write less and say so."""
    view = memoryview(data).cast("B")
    while view:
        written = stream.write(view)
        if written is None or written >= len(view):
            return
        view = view[written:]
