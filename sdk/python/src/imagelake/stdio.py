"""The stdio protocol: hello, then request frames in and response frames out."""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

from .core import DerivedImage, Outcome, Processor, execute, to_json_bytes
from .framing import FrameError, read_frame, write_frame

__all__ = ["claim_stdin", "claim_stdout", "serve_stdio"]

_claimed_stdout: BinaryIO | None = None
_claimed_stdin: BinaryIO | None = None


def claim_stdout() -> BinaryIO:
    """Takes the process's real stdout for the SDK and points everything else at stderr.

    Returns a binary stream on a duplicate of file descriptor 1. Then fd 1
    itself is made a copy of stderr and sys.stdout is sys.stderr, so print(),
    a C library writing to stdout and a child process inheriting it all end up
    in the log instead of between two frames. Idempotent.
    """
    global _claimed_stdout
    if _claimed_stdout is None:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        real = os.dup(1)
        os.dup2(2, 1)
        _claimed_stdout = os.fdopen(real, "wb")
        sys.stdout = sys.stderr
    return _claimed_stdout


def claim_stdin() -> BinaryIO:
    """Takes the real stdin for frames and leaves /dev/null in its place, so
    input() or a child process cannot swallow part of a request. Idempotent."""
    global _claimed_stdin
    if _claimed_stdin is None:
        real = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _claimed_stdin = os.fdopen(real, "rb")
    return _claimed_stdin


def _log(spec: Processor, message: str) -> None:
    print(f"imagelake: {spec.name}: {message}", file=sys.stderr, flush=True)


def _image_entry(image: DerivedImage) -> dict[str, str]:
    return {"name": image.name, "format": image.format}


def _respond(spec: Processor, header: bytes, image: bytes) -> tuple[bytes, list[bytes]]:
    """The response frame and the derived images' frames for one request."""
    request_id = None
    try:
        info = json.loads(header)
        if not isinstance(info, dict):
            raise ValueError(f"the header must be a JSON object, not {type(info).__name__}")
        request_id = info.get("id")
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        _log(spec, f"invalid request header: {error}")
        outcome = Outcome.failure("INVALID_REQUEST", f"the request header is not a JSON object: {error}")
    else:
        outcome = execute(spec, image, info)
    try:
        body = to_json_bytes({"id": request_id, **outcome.body(_image_entry)})
    except (TypeError, ValueError) as error:  # e.g. labels that JSON cannot carry
        outcome = Outcome.failure(
            "EXCEPTION", f"{type(error).__name__}: the result is not valid JSON: {error}"
        )
        body = to_json_bytes({"id": request_id, **outcome.body(_image_entry)})
    return body, [image.data for image in outcome.images] if outcome.ok else []


def serve_stdio(
    spec: Processor, frames_in: BinaryIO | None = None, frames_out: BinaryIO | None = None
) -> int:
    """Speaks the stdio protocol until stdin ends; returns the exit code.

    Without streams it claims the process's stdin and stdout (see
    claim_stdout); tests pass their own. 0 when stdin ends between requests, 1
    when it ends inside one or carries something that is not a frame.
    """
    if frames_out is None:
        frames_out = claim_stdout()
    if frames_in is None:
        frames_in = claim_stdin()
    write_frame(frames_out, to_json_bytes(spec.hello()))
    frames_out.flush()
    while True:
        try:
            header = read_frame(frames_in)
            if header is None:
                return 0
            image = read_frame(frames_in)
            if image is None:
                raise FrameError("stream ended after a request header, before its image frame")
        except FrameError as error:
            _log(spec, f"protocol error on stdin, exiting: {error}")
            return 1
        body, images = _respond(spec, header, image)
        write_frame(frames_out, body)
        for data in images:
            write_frame(frames_out, data)
        frames_out.flush()
