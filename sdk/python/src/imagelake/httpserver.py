"""The HTTP protocol: POST multipart/form-data (request, image), answer JSON."""

from __future__ import annotations

import base64
import binascii
import email.message
import email.policy
import json
import quopri
import sys
from email.parser import BytesHeaderParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .core import DerivedImage, Processor, execute, to_json_bytes
from .framing import max_frame_size

__all__ = ["BadRequest", "make_server", "parse_multipart", "serve_http"]


class BadRequest(Exception):
    """The request is not what the HTTP protocol sends; answered with 400 (or 413)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def _split_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts (headers and content) between the delimiters of RFC 2046.

    Delimiters are found with bytes.find, which keeps a large image fast (the
    email module's feed parser goes line by line). Bare LF line ends, which
    some clients send, are accepted too.
    """
    dash = b"--" + boundary
    if body.startswith(dash):
        at = 0
    else:  # a preamble
        at = body.find(b"\n" + dash)
        if at < 0:
            raise BadRequest("the body is not multipart/form-data with the boundary its Content-Type names")
        at += 1
    parts = []
    while True:
        at += len(dash)
        if body.startswith(b"--", at):
            return parts
        line_end = body.find(b"\n", at)
        if line_end < 0 or body[at:line_end].strip(b" \t\r"):
            raise BadRequest("the multipart body is malformed after a boundary")
        start = line_end + 1
        end = body.find(b"\n" + dash, start)
        if end < 0:
            raise BadRequest("the multipart body is cut short (no closing boundary)")
        stop = end - 1 if end > start and body[end - 1] == 0x0D else end
        parts.append(body[start:stop])
        at = end + 1


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart/form-data body by name (the first of each name).

    Headers (the boundary, each part's Content-Disposition and
    Content-Transfer-Encoding) are parsed with the standard library's email
    parser, since the cgi module is gone in Python 3.13. Parts may be raw
    binary, base64 or quoted-printable.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest(f"expected multipart/form-data, got {content_type or 'no Content-Type'}")
    head = _headers(f"Content-Type: {content_type}\r\n".encode("latin-1", "replace"))
    boundary = head.get_boundary()
    if not boundary:
        raise BadRequest("the multipart/form-data Content-Type has no boundary")
    parts: dict[str, bytes] = {}
    for raw in _split_parts(body, boundary.encode("latin-1", "replace")):
        if raw.startswith((b"\r\n", b"\n")):  # no headers at all
            continue
        ends = [(at, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (at := raw.find(sep)) >= 0]
        if not ends:
            raise BadRequest("a multipart part has no blank line after its headers")
        split, width = min(ends)
        headers = _headers(raw[: split + width])
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or name in parts:
            continue
        content = raw[split + width :]
        encoding = str(headers.get("content-transfer-encoding", "")).strip().lower()
        try:
            if encoding == "base64":
                content = base64.b64decode(content)
            elif encoding == "quoted-printable":
                content = quopri.decodestring(content)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"part {name!r} is not valid {encoding}: {error}") from None
        parts[name] = content
    return parts


def _headers(block: bytes) -> email.message.Message:
    return BytesHeaderParser(policy=email.policy.HTTP).parsebytes(block + b"\r\n")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (about 40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    # Seconds a connection may sit idle (or trickle a body) before it is dropped.
    timeout = 120

    def _send_json(self, status: int, body: dict[str, Any] | bytes) -> None:
        data = body if isinstance(body, bytes) else to_json_bytes(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        # The body may not have been read; the connection cannot be reused after it.
        self.close_connection = True
        code = "BAD_REQUEST" if status == HTTPStatus.BAD_REQUEST else HTTPStatus(status).name
        self._send_json(status, {"ok": False, "error": {"code": code, "message": message}})

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("invalid chunked body") from None
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise BadRequest(f"body over {limit} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise BadRequest("the chunked body is cut short")
                chunks.append(chunk)
                self.rfile.readline(8)  # the CRLF after each chunk
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise BadRequest("a Content-Length (or a chunked body) is required")
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            raise BadRequest(f"invalid Content-Length {raw!r}") from None
        if length > limit:
            # Read and drop it, or the client, still sending, would see a reset instead of the 413.
            remaining = length
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 20))):
                remaining -= len(chunk)
            raise BadRequest(f"body of {length} bytes is over {limit}", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        body = self.rfile.read(length)
        if len(body) < length:
            raise BadRequest(f"the body is cut short ({len(body)} of {length} bytes)")
        return body

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] == "/":
            self._send_json(HTTPStatus.OK, self.server.spec.hello())
        else:
            self._send_error(HTTPStatus.NOT_FOUND, f"nothing at {self.path}; POST images to process them")

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._read_body()
            parts = parse_multipart(self.headers.get("Content-Type", ""), body)
            missing = [name for name in ("request", "image") if name not in parts]
            if missing:
                raise BadRequest(f"missing part(s): {', '.join(missing)}; send 'request' (JSON) and 'image'")
            try:
                info = json.loads(parts["request"])
            except ValueError as error:
                raise BadRequest(f"the 'request' part is not JSON: {error}") from None
            if not isinstance(info, dict):
                raise BadRequest("the 'request' part must be a JSON object")
        except BadRequest as error:
            self.log_message("%s: %s", error.status.phrase, error)
            self._send_error(error.status, str(error))
            return
        outcome = execute(self.server.spec, parts["image"], info)
        try:
            data = to_json_bytes(outcome.body(_image_entry))
        except (TypeError, ValueError) as error:  # e.g. labels that UTF-8 cannot carry
            message = f"{type(error).__name__}: the result is not valid JSON: {error}"
            data = to_json_bytes({"ok": False, "error": {"code": "EXCEPTION", "message": message}})
        self._send_json(HTTPStatus.OK, data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        request_id = self.headers.get("Imagelake-Request-Id") if getattr(self, "headers", None) else None
        suffix = f" [{request_id}]" if request_id else ""
        sys.stderr.write(
            f"imagelake: {self.server.spec.name}: {self.address_string()} {format % args}{suffix}\n"
        )


def _image_entry(image: DerivedImage) -> dict[str, str]:
    return {"name": image.name, "format": image.format, "data": base64.b64encode(image.data).decode("ascii")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], spec: Processor, max_body: int) -> None:
        self.spec = spec
        self.max_body = max_body
        super().__init__(address, _Handler)


def make_server(
    spec: Processor, host: str = "127.0.0.1", port: int = 0, max_body: int | None = None
) -> _Server:
    """A bound, not yet serving, server (port 0 picks a free port: see
    server.server_address). Call serve_forever() on it, shutdown() to stop.
    Requests are handled on threads, so process() may run concurrently."""
    return _Server((host, port), spec, max_frame_size() if max_body is None else max_body)


def serve_http(spec: Processor, port: int, host: str = "127.0.0.1") -> int:
    """Serves until interrupted (Ctrl-C or SIGTERM); returns the exit code."""
    server = make_server(spec, host, port)
    bound_host, bound_port = server.server_address[:2]
    print(
        f"imagelake: {spec.name} {spec.version} serving the HTTP protocol on http://{bound_host}:{bound_port}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
