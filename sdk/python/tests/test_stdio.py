"""The stdio protocol, spoken to a real child process frame by frame."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import pytest
from conftest import child_env
from imagelake.core import Processor
from imagelake.framing import read_frame, write_frame
from imagelake.stdio import serve_stdio

PROCESSOR = """
    import os
    import subprocess
    import sys

    from imagelake import DerivedImage, ProcessorError, Result, processor, run

    if os.environ.get("NOISY_IMPORT"):
        print("printed while the script loads")

    @processor(name="demo", version="1.2.0", fields={"size": "integer", "first": "string?"})
    def process(image_bytes: bytes, info: dict):
        action = info["config"].get("action")
        print(f"print() from process, action={action}")
        if action == "error":
            raise ProcessorError("NO_FACES", "No face was found.")
        if action == "raise":
            raise ValueError("bad pixel at 3,4")
        if action == "images":
            return Result(
                metadata={"size": len(image_bytes)},
                labels=["derived"],
                images=[DerivedImage("edges", "png", image_bytes[::-1]), DerivedImage("mask", "webp", b"")],
            )
        if action == "noise":
            sys.stdout.write("sys.stdout.write\\n")
            os.write(1, b"os.write to fd 1\\n")
            subprocess.run(["echo", "a child process's stdout"], check=True)
            sys.__stdout__.write("sys.__stdout__\\n")
            sys.__stdout__.flush()
        if action == "input":
            try:
                input()
            except EOFError:
                return {"size": -1}
        if action == "exit":
            sys.exit(3)
        return {"size": len(image_bytes), "first": image_bytes[:1].decode("latin-1")}

    if __name__ == "__main__":
        run()
"""


class Session:
    """A processor child process and the frames exchanged with it."""

    def __init__(self, args: list[str], **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(**env),
        )
        # A hung child must fail the test, not hang it.
        self.watchdog = threading.Timer(30, self.process.kill)
        self.watchdog.start()
        self.stderr = b""
        self.stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self.stderr_reader.start()

    def _drain_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def read_json(self) -> dict:
        frame = read_frame(self.process.stdout)
        assert frame is not None, "the processor closed stdout"
        return json.loads(frame)

    def request(self, image: bytes, id: str = "r-1", **config) -> tuple[dict, list[bytes]]:
        header = {
            "id": id,
            "image": {"id": "img-1", "customerId": "c-1", "format": "png", "input": "original"},
            "metadata": {"format": "png"},
            "previous": {},
            "config": config,
        }
        write_frame(self.process.stdin, json.dumps(header).encode())
        write_frame(self.process.stdin, image)
        self.process.stdin.flush()
        response = self.read_json()
        images = [read_frame(self.process.stdout) for _ in response.get("images", [])]
        return response, images

    def close(self, timeout: float = 10) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout)
        self.stderr_reader.join(timeout)
        self.watchdog.cancel()
        return code

    def kill(self) -> None:
        self.watchdog.cancel()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def session(write_script):
    script = write_script(PROCESSOR)
    sessions = []

    def start(*args: str, launcher: bool = False, **env: str) -> Session:
        prefix = ["-m", "imagelake"] if launcher else []
        started = Session([*prefix, str(script), *args], **env)
        sessions.append(started)
        return started

    yield start
    for started in sessions:
        started.kill()


def test_a_whole_session(session):
    child = session()
    assert child.read_json() == {
        "imagelake": 1,
        "name": "demo",
        "version": "1.2.0",
        "fields": {"size": "integer", "first": "string?"},
    }

    response, images = child.request(b"\x00\x01PNG\r\n", id="r-17")
    assert response == {"id": "r-17", "ok": True, "metadata": {"size": 7, "first": "\x00"}}
    assert images == []

    response, images = child.request(b"abc", id="r-18", action="images")
    assert response == {
        "id": "r-18",
        "ok": True,
        "metadata": {"size": 3},
        "labels": ["derived"],
        "images": [{"name": "edges", "format": "png"}, {"name": "mask", "format": "webp"}],
    }
    assert images == [b"cba", b""]

    response, images = child.request(b"abc", id="r-19", action="error")
    assert response == {
        "id": "r-19",
        "ok": False,
        "error": {"code": "NO_FACES", "message": "No face was found."},
    }

    response, images = child.request(b"abc", id="r-20", action="raise")
    assert response == {
        "id": "r-20",
        "ok": False,
        "error": {"code": "EXCEPTION", "message": "ValueError: bad pixel at 3,4"},
    }

    # The loop goes on after errors, and large images pass whole.
    large = bytes(range(256)) * 40_000
    response, images = child.request(large, id="r-21")
    assert response["metadata"]["size"] == len(large)

    assert child.close() == 0
    stderr = child.stderr.decode()
    assert "print() from process, action=None" in stderr
    assert "Traceback (most recent call last)" in stderr and "ValueError: bad pixel at 3,4" in stderr


def test_nothing_printed_reaches_stdout(session):
    child = session()
    child.read_json()
    response, _ = child.request(b"xyz", action="noise")
    assert response["ok"] and response["metadata"]["size"] == 3
    response, _ = child.request(b"xy")  # the next frame is still in sync
    assert response["metadata"]["size"] == 2
    assert child.close() == 0
    assert child.process.stdout.read() == b""
    stderr = child.stderr.decode()
    for line in ("sys.stdout.write", "os.write to fd 1", "a child process's stdout", "sys.__stdout__"):
        assert line in stderr


def test_user_code_cannot_read_the_frames_on_stdin(session):
    child = session()
    child.read_json()
    response, _ = child.request(b"xyz", action="input")
    assert response["metadata"] == {"size": -1}
    response, _ = child.request(b"ok")
    assert response["metadata"]["size"] == 2
    assert child.close() == 0


def test_an_invalid_header_is_answered_and_the_loop_goes_on(session):
    child = session()
    child.read_json()
    write_frame(child.process.stdin, b"{not json")
    write_frame(child.process.stdin, b"image")
    child.process.stdin.flush()
    response = child.read_json()
    assert response["id"] is None and response["ok"] is False
    assert response["error"]["code"] == "INVALID_REQUEST"
    response, _ = child.request(b"ok")
    assert response["ok"]
    assert child.close() == 0


def test_closing_stdin_right_after_hello_exits_0(session):
    child = session()
    child.read_json()
    assert child.close() == 0


def test_stdin_ending_inside_a_request_exits_1(session):
    child = session()
    child.read_json()
    write_frame(child.process.stdin, b'{"id": "r-1"}')
    child.process.stdin.write(b"\x00\x00\x01\x00only part of the image")
    assert child.close() == 1
    assert b"protocol error on stdin" in child.stderr


def test_a_header_without_its_image_exits_1(session):
    child = session()
    child.read_json()
    write_frame(child.process.stdin, b'{"id": "r-1"}')
    assert child.close() == 1
    assert b"before its image frame" in child.stderr


def test_sys_exit_in_process_ends_the_process(session):
    child = session()
    child.read_json()
    write_frame(child.process.stdin, json.dumps({"id": "r", "config": {"action": "exit"}}).encode())
    write_frame(child.process.stdin, b"")
    child.process.stdin.flush()
    assert child.process.wait(10) == 3
    child.close()


def test_the_launcher_protects_stdout_from_prints_at_import_time(session):
    child = session(launcher=True, NOISY_IMPORT="1")
    assert child.read_json()["name"] == "demo"
    response, _ = child.request(b"abcd")
    assert response["metadata"]["size"] == 4
    assert child.close() == 0
    assert b"printed while the script loads" in child.stderr


def test_the_launcher_serves_a_script_that_does_not_call_run(write_script):
    script = write_script(
        """
        from imagelake import processor

        @processor(name="bare", version="1", fields={})
        def process(image_bytes, info):
            return {}
        """,
        name="bare.py",
    )
    child = Session(["-m", "imagelake", str(script)])
    try:
        assert child.read_json()["name"] == "bare"
        response, _ = child.request(b"")
        assert response == {"id": "r-1", "ok": True, "metadata": {}}
        assert child.close() == 0
    finally:
        child.kill()


def test_serve_stdio_on_in_memory_streams():
    def function(image_bytes, info):
        return {"size": len(image_bytes)}

    spec = Processor(name="mem", version="1", fields={"size": "integer"}, function=function)
    requests = io.BytesIO()
    for image in (b"a", b"bb"):
        write_frame(requests, json.dumps({"id": image.decode()}).encode())
        write_frame(requests, image)
    requests.seek(0)
    responses = io.BytesIO()
    assert serve_stdio(spec, requests, responses) == 0
    responses.seek(0)
    frames = []
    while (frame := read_frame(responses)) is not None:
        frames.append(json.loads(frame))
    assert frames == [
        {"imagelake": 1, "name": "mem", "version": "1", "fields": {"size": "integer"}},
        {"id": "a", "ok": True, "metadata": {"size": 1}},
        {"id": "bb", "ok": True, "metadata": {"size": 2}},
    ]
