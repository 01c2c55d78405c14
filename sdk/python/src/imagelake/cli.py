"""run(): one processor, three ways to serve it, chosen by the command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from .core import NAME, DerivedImage, Processor, ProcessorDefinitionError, _plain, execute, get_processor
from .fields import validate
from .stdio import claim_stdin, claim_stdout, serve_stdio

__all__ = ["main", "mode_of", "run", "run_test", "sniff"]

_ran = False


def mode_of(args: list[str]) -> str:
    """What a command line asks for: stdio, http, test or other (e.g. --help)."""
    if not args:
        return "stdio"
    if any(arg == "--http" or arg.startswith("--http=") for arg in args):
        return "http"
    if any(arg == "--test" or arg.startswith("--test=") for arg in args):
        return "test"
    return "other"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="An imagelake processor. Without options it speaks the stdio protocol "
        "(what a `command` processor runs).",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--http", metavar="PORT", type=int, help="serve the HTTP protocol on PORT (a `url` processor)"
    )
    modes.add_argument("--test", metavar="IMAGE", help="process one image file and print the result as JSON")
    parser.add_argument(
        "--host", help="address --http listens on (default 127.0.0.1; 0.0.0.0 for a container)"
    )
    parser.add_argument(
        "--config", metavar="JSON", help="with --test: the processor config, e.g. '{\"edges\": true}'"
    )
    parser.add_argument(
        "--save", metavar="DIR", help="with --test: write derived images to DIR as NAME.FORMAT"
    )
    return parser


def main(argv: list[str] | None = None, target: Any = None) -> int:
    """Parses argv (default sys.argv[1:]), serves the processor, returns the exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "processor")
    args = parser.parse_args(args_list)
    if args.host is not None and args.http is None:
        parser.error("--host only applies to --http")
    if (args.config is not None or args.save is not None) and args.test is None:
        parser.error("--config and --save only apply to --test")
    config: dict[str, Any] = {}
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except ValueError as error:
            parser.error(f"--config is not JSON: {error}")
        if not isinstance(config, dict):
            parser.error("--config must be a JSON object")
    try:
        spec = get_processor(target)
    except ProcessorDefinitionError as error:
        print(f"imagelake: {error}", file=sys.stderr)
        return 2
    if args.http is not None:
        if not 0 <= args.http <= 65535:
            parser.error(f"--http port {args.http} is not between 0 and 65535")
        from .httpserver import serve_http  # imported here: the stdio protocol starts faster without it

        return serve_http(spec, args.http, args.host or "127.0.0.1")
    if args.test is not None:
        return run_test(spec, args.test, config, args.save)
    return serve_stdio(spec)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(target: Any = None, argv: list[str] | None = None) -> NoReturn:
    """Serves the processor as the command line says, then exits.

        python quality.py                    the stdio protocol (a `command` processor)
        python quality.py --http 8080        the HTTP protocol (a `url` processor)
        python quality.py --test photo.jpg   process one file, print the result

    target is the decorated function (default: the only one registered).
    """
    global _ran
    _ran = True
    args = sys.argv[1:] if argv is None else list(argv)
    mode = mode_of(args)
    if mode == "stdio":
        # Before anything else runs: from here on print() goes to stderr.
        claim_stdout()
        claim_stdin()
    elif mode == "http":
        try:  # Containers stop with SIGTERM: shut down like Ctrl-C, exit 0.
            signal.signal(signal.SIGTERM, _raise_interrupt)
        except ValueError:  # not the main thread
            pass
    try:
        code = main(args, target)
    except KeyboardInterrupt:
        code = 130 if mode != "http" else 0
    except BrokenPipeError:
        print("imagelake: stdout was closed; exiting", file=sys.stderr)
        _discard_claimed_stdout()
        code = 1
    sys.exit(code)


def _discard_claimed_stdout() -> None:
    """After the reader went away, point the frames stream at /dev/null so its
    unflushed bytes cannot raise again while the interpreter exits."""
    from . import stdio

    stream = stdio._claimed_stdout
    if stream is None:
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except OSError:
        pass


def ran() -> bool:
    """Whether run() was called (the `python -m imagelake SCRIPT` launcher asks)."""
    return _ran


def sniff(data: bytes) -> tuple[str | None, str | None, int | None, int | None]:
    """(format, media type, width, height) from an image's first bytes, as far as they tell."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
            width, height = struct.unpack(">II", data[16:24])
            return "png", "image/png", width, height
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return "gif", "image/gif", width, height
        if data.startswith(b"\xff\xd8"):
            width, height = _jpeg_size(data)
            return "jpeg", "image/jpeg", width, height
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            width, height = _webp_size(data)
            return "webp", "image/webp", width, height
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return "tiff", "image/tiff", None, None
        if data[4:8] == b"ftyp":
            brand = data[8:12]
            if brand in (b"avif", b"avis"):
                return "avif", "image/avif", None, None
            if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
                return "heif", "image/heif", None, None
        if data.startswith(b"BM") and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return "bmp", "image/bmp", width, abs(height)
    except struct.error:
        pass
    return None, None, None, None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None, None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None, None


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None, None


def request_for(path: str, data: bytes, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request header the platform would send with this file (as a test image of no customer)."""
    image_format, media_type, width, height = sniff(data)
    if image_format is None:
        image_format = Path(path).suffix.lower().lstrip(".").replace("jpg", "jpeg") or None
    return {
        "id": "test-1",
        "image": {
            "id": "test",
            "customerId": "test",
            "source": "test",
            "format": image_format,
            "mediaType": media_type,
            "width": width,
            "height": height,
            "input": "original",
        },
        "metadata": {"format": image_format, "width": width, "height": height},
        "previous": {},
        "config": config or {},
    }


def run_test(
    spec: Processor,
    path: str,
    config: dict[str, Any] | None = None,
    save: str | None = None,
    out: BinaryIO | None = None,
) -> int:
    """Processes one file as the platform would and prints the result JSON
    (derived images as name, format and size) to stdout; warnings about what
    the platform would refuse go to stderr. Exit code 0, or 1 for an error result."""
    if out is None:
        out = claim_stdout()  # so what process() prints cannot mix with the JSON
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        print(f"imagelake: cannot read {path}: {error.strerror or error}", file=sys.stderr)
        return 2
    outcome = execute(spec, data, request_for(path, data, config))

    def describe(image: DerivedImage) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": image.name, "format": image.format, "bytes": len(image.data)}
        if save is not None:
            target = Path(save) / f"{image.name}.{image.format}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image.data)
            entry["path"] = str(target)
        return entry

    summary = outcome.body(describe)
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=_plain)
    out.write(text.encode("utf-8") + b"\n")
    out.flush()
    if outcome.ok:
        warnings = validate(spec.fields, outcome.metadata, outcome.labels)
        warnings += [
            f"derived image name {image.name!r} must match {NAME.pattern}"
            for image in outcome.images
            if not NAME.match(image.name)
        ]
        for warning in warnings:
            print(f"warning: the platform would refuse this result: {warning}", file=sys.stderr)
    else:
        print(f"imagelake: {spec.name} failed with {outcome.error['code']}", file=sys.stderr)  # type: ignore[index]
    return 0 if outcome.ok else 1
