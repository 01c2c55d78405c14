import io
import os
import re
import struct
from pathlib import Path

import pytest
from imagelake.framing import MAX_FRAME_SIZE, FrameError, max_frame_size, read_frame, write_frame


def frames(*payloads: bytes) -> bytes:
    buffer = io.BytesIO()
    for payload in payloads:
        write_frame(buffer, payload)
    return buffer.getvalue()


def test_round_trip_of_several_frames_including_empty_and_binary():
    binary = bytes(range(256)) * 4096  # 1 MiB with every byte value
    payloads = [b'{"id": "r-1"}', b"", binary, "é✓".encode()]
    stream = io.BytesIO(frames(*payloads))
    assert [read_frame(stream) for _ in payloads] == payloads
    assert read_frame(stream) is None  # clean end
    assert read_frame(stream) is None  # and stays ended


def test_the_length_is_four_bytes_big_endian():
    assert frames(b"abc") == b"\x00\x00\x00\x03abc"
    assert frames(b"x" * 258)[:4] == b"\x00\x00\x01\x02"


def test_empty_stream_is_a_clean_end():
    assert read_frame(io.BytesIO(b"")) is None


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_stream_ending_inside_the_header_is_an_error(cut):
    with pytest.raises(FrameError, match=f"inside a frame header \\({cut} of 4"):
        read_frame(io.BytesIO(frames(b"hello")[:cut]))


def test_stream_ending_inside_the_payload_is_an_error():
    data = frames(b"hello world")
    with pytest.raises(FrameError, match="inside a frame \\(5 of 11 bytes\\)"):
        read_frame(io.BytesIO(data[:9]))
    with pytest.raises(FrameError):
        read_frame(io.BytesIO(data[:4]))


def test_a_frame_over_the_limit_is_refused_before_its_payload_is_read():
    stream = io.BytesIO(frames(b"x" * 100) + frames(b"next"))
    with pytest.raises(FrameError, match="100 bytes is over the limit of 99"):
        read_frame(stream, max_size=99)
    assert stream.tell() == 4
    assert read_frame(io.BytesIO(frames(b"x" * 100)), max_size=100) == b"x" * 100


def test_text_is_not_mistaken_for_a_huge_frame():
    # "hell" read as a length is about 1.7 GB.
    with pytest.raises(FrameError, match="over the limit"):
        read_frame(io.BytesIO(b"hello, I am not a frame\n"))


def test_the_limit_is_the_platforms():
    # Both ends of the pipe must agree: the platform refuses frames over MAX_FRAME (frames.ts).
    frames_ts = Path(__file__).resolve().parents[3] / "src/processing/processors/frames.ts"
    match = re.search(r"export const MAX_FRAME = (\d+) \* 2 \*\* (\d+);", frames_ts.read_text())
    assert match, "MAX_FRAME not found in frames.ts"
    assert MAX_FRAME_SIZE == int(match.group(1)) * 2 ** int(match.group(2)) == 256 * 1024 * 1024


def test_the_limit_comes_from_the_environment(monkeypatch):
    assert max_frame_size() == MAX_FRAME_SIZE
    monkeypatch.setenv("IMAGELAKE_MAX_FRAME_BYTES", "10")
    assert max_frame_size() == 10
    with pytest.raises(FrameError):
        read_frame(io.BytesIO(frames(b"x" * 11)))
    monkeypatch.setenv("IMAGELAKE_MAX_FRAME_BYTES", "ten")
    with pytest.raises(ValueError, match="whole number"):
        max_frame_size()


class Trickle(io.RawIOBase):
    """A raw stream that reads and writes at most 3 bytes per call, like a pipe may."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.written = bytearray()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(3, len(buffer), len(self.data))
        buffer[:n] = self.data[:n]
        del self.data[:n]
        return n

    def write(self, data) -> int:
        chunk = bytes(data[:3])
        self.written += chunk
        return len(chunk)


def test_short_reads_and_writes_are_completed():
    raw = Trickle()
    write_frame(raw, b"0123456789")
    assert bytes(raw.written) == struct.pack(">I", 10) + b"0123456789"
    reader = Trickle(bytes(raw.written) + struct.pack(">I", 2))
    assert reader.read(100) == struct.pack(">I", 10)[:3]  # the stream really is short-reading
    reader = Trickle(bytes(raw.written))
    assert read_frame(reader) == b"0123456789"
    assert read_frame(reader) is None


def test_over_a_real_pipe():
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer:
        write_frame(writer, b"through a pipe")
    with os.fdopen(read_end, "rb") as reader:
        assert read_frame(reader) == b"through a pipe"
        assert read_frame(reader) is None
