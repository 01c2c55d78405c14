"""The HTTP protocol: a real server on a free port, real multipart requests."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.policy import HTTP

import pytest
from conftest import child_env
from imagelake import DerivedImage, ProcessorError, Result, processor
from imagelake.httpserver import make_server


@processor(name="http-demo", version="3.0.0", fields={"size": "integer", "customer": "string"})
def demo(image_bytes: bytes, info: dict):
    action = info["config"].get("action")
    if action == "error":
        raise ProcessorError("NO_FACES", "No face was found.")
    if action == "raise":
        raise RuntimeError("model not loaded")
    return Result(
        metadata={"size": len(image_bytes), "customer": info["image"].get("customerId")},
        labels=["cat"],
        images=[DerivedImage("mask", "png", image_bytes[::-1])],
    )


# Every byte value, and the line endings a multipart parser could trip over.
IMAGE = bytes(range(256)) + b"\r\n--\r\n\n\r" + bytes(range(255, -1, -1)) + b"\r\n"


def header(**config) -> dict:
    return {
        "id": "r-1",
        "image": {"id": "img-1", "customerId": "acme", "format": "png", "input": "original"},
        "metadata": {},
        "previous": {},
        "config": config,
    }


def multipart(request: dict | bytes, image: bytes | None) -> tuple[bytes, str]:
    """A body as browsers and Node's fetch send it: raw binary parts, CRLF line ends."""
    boundary = f"----imagelake{uuid.uuid4().hex}"
    body = b""
    if request is not None:
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        body += (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="request"\r\n'
                "Content-Type: application/json\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    if image is not None:
        body += (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="image"; filename="image.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + image
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server():
    httpd = make_server(demo.imagelake, "127.0.0.1", 0, max_body=1024 * 1024)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_get_root_is_the_hello_and_a_health_check(server):
    with urllib.request.urlopen(server + "/", timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {
            "imagelake": 1,
            "name": "http-demo",
            "version": "3.0.0",
            "fields": {"size": "integer", "customer": "string"},
        }


def test_a_multipart_post_gets_the_result_with_base64_images(server):
    status, body = post(server + "/process", *multipart(header(), IMAGE), **{"Imagelake-Request-Id": "r-1"})
    assert status == 200
    assert body == {
        "ok": True,
        "metadata": {"size": len(IMAGE), "customer": "acme"},
        "labels": ["cat"],
        "images": [{"name": "mask", "format": "png", "data": base64.b64encode(IMAGE[::-1]).decode()}],
    }
    assert base64.b64decode(body["images"][0]["data"]) == IMAGE[::-1]


def test_a_body_made_by_the_email_package_with_base64_parts(server):
    message = MIMEMultipart("form-data", policy=HTTP)
    request = MIMEApplication(json.dumps(header()).encode(), "json")
    request.add_header("Content-Disposition", "form-data", name="request")
    image = MIMEApplication(IMAGE, "octet-stream")  # base64 Content-Transfer-Encoding
    image.add_header("Content-Disposition", "form-data", name="image", filename="image.png")
    message.attach(request)
    message.attach(image)
    raw = message.as_bytes(policy=HTTP)
    _, _, body = raw.partition(b"\r\n\r\n")
    status, answer = post(server, body, message["Content-Type"])
    assert status == 200
    assert answer["metadata"]["size"] == len(IMAGE)


def test_processor_errors_and_exceptions_are_200_with_ok_false(server):
    status, body = post(server, *multipart(header(action="error"), b"x"))
    assert (status, body) == (
        200,
        {"ok": False, "error": {"code": "NO_FACES", "message": "No face was found."}},
    )
    status, body = post(server, *multipart(header(action="raise"), b"x"))
    assert (status, body) == (
        200,
        {"ok": False, "error": {"code": "EXCEPTION", "message": "RuntimeError: model not loaded"}},
    )


@pytest.mark.parametrize(
    ("body", "content_type", "complaint"),
    [
        (b"garbage", "multipart/form-data; boundary=abc", "not multipart/form-data with the boundary"),
        (b"garbage", "application/json", "expected multipart/form-data"),
        (b"--abc\r\n", "multipart/form-data", "has no boundary"),
        (multipart(header(), None)[0], None, "missing part(s): image"),
        (multipart(None, b"x")[0], None, "missing part(s): request"),
        (multipart(b"{not json", b"x")[0], None, "'request' part is not JSON"),
        (multipart(b"[1, 2]", b"x")[0], None, "must be a JSON object"),
        (multipart(header(), b"x")[0][:-40], None, "cut short"),
    ],
)
def test_malformed_requests_are_400(server, body, content_type, complaint):
    if content_type is None:
        boundary = re.match(rb"--(\S+)\r\n", body).group(1).decode()
        content_type = f"multipart/form-data; boundary={boundary}"
    status, answer = post(server, body, content_type)
    assert status == 400
    assert answer["ok"] is False and answer["error"]["code"] == "BAD_REQUEST"
    assert complaint in answer["error"]["message"]


def test_a_body_over_the_limit_is_413(server):
    status, answer = post(server, *multipart(header(), b"x" * (1024 * 1024 + 1)))
    assert status == 413 and answer["ok"] is False


def test_other_paths_are_404(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server + "/nothing", timeout=10)
    assert caught.value.code == 404


def test_keep_alive_and_chunked_bodies(server):
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for size in (10, 20):
            body, content_type = multipart(header(), b"y" * size)
            # Chunked: the body is sent as an iterable of pieces with no Content-Length.
            pieces = iter([body[:7], body[7:100], body[100:]])
            connection.request(
                "POST", "/", body=pieces, headers={"Content-Type": content_type}, encode_chunked=True
            )
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["metadata"]["size"] == size
        connection.request("GET", "/")  # the same connection, still open
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_concurrent_requests(server):
    results = []

    def one(size: int) -> None:
        results.append(post(server, *multipart(header(), b"z" * size))[1]["metadata"]["size"])

    threads = [threading.Thread(target=one, args=(size,)) for size in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == list(range(1, 9))


def test_the_http_flag_serves_a_script(write_script):
    script = write_script(
        """
        from imagelake import processor, run

        @processor(name="served", version="1", fields={"size": "integer"})
        def process(image_bytes, info):
            print("this goes to stdout in --http mode, harmlessly")
            return {"size": len(image_bytes)}

        if __name__ == "__main__":
            run()
        """
    )
    child = subprocess.Popen(
        [sys.executable, str(script), "--http", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        line = child.stderr.readline()
        match = re.search(r"serving the HTTP protocol on (http://127\.0\.0\.1:\d+)/", line)
        assert match, line
        url = match.group(1)
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert json.loads(response.read())["name"] == "served"
        assert post(url, *multipart(header(), b"12345")) == (200, {"ok": True, "metadata": {"size": 5}})
        child.terminate()  # SIGTERM: a clean shutdown
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
