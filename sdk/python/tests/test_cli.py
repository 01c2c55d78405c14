"""run()'s command line: --test, option errors, and image sniffing."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from conftest import run_script
from imagelake.cli import mode_of, sniff

SCRIPT = """
    from imagelake import DerivedImage, ProcessorError, Result, processor, run

    FIELDS = {"size": "integer", "format": "string", "width": "integer?"}

    @processor(name="tester", version="1", fields=FIELDS)
    def process(image_bytes, info):
        print("printed by process()")
        config = info["config"]
        if config.get("fail"):
            raise ProcessorError("NOPE", "configured to fail")
        image = info["image"]
        metadata = {"size": len(image_bytes), "format": image["format"], "width": image["width"]}
        name = "copy"
        if config.get("wrong"):
            metadata = {"size": "big", "extra": 1}
            name = "Copy Of It"
        return Result(metadata=metadata, images=[DerivedImage(name, "png", image_bytes)])

    if __name__ == "__main__":
        run()
"""


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png(7, 5))
    return path


def test_test_prints_the_result_json_with_images_summarised(write_script, image, tmp_path):
    script = write_script(SCRIPT)
    done = run_script([str(script), "--test", str(image)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "ok": True,
        "metadata": {"size": image.stat().st_size, "format": "png", "width": 7},
        "images": [{"name": "copy", "format": "png", "bytes": image.stat().st_size}],
    }
    assert b"printed by process()" in done.stderr  # stdout stays pure JSON
    assert b"warning" not in done.stderr


def test_test_passes_config_and_saves_images(write_script, image, tmp_path):
    script = write_script(SCRIPT)
    out = tmp_path / "out"
    done = run_script([str(script), "--test", str(image), "--config", '{"x": 1}', "--save", str(out)])
    assert done.returncode == 0, done.stderr
    saved = json.loads(done.stdout)["images"][0]["path"]
    assert Path(saved) == out / "copy.png"
    assert Path(saved).read_bytes() == image.read_bytes()


def test_test_warns_about_what_the_platform_would_refuse(write_script, image):
    script = write_script(SCRIPT)
    done = run_script([str(script), "--test", str(image), "--config", '{"wrong": true}'])
    assert done.returncode == 0
    assert json.loads(done.stdout)["metadata"] == {"size": "big", "extra": 1}
    stderr = done.stderr.decode()
    assert "field 'extra' is not declared" in stderr
    assert "field 'size' must be a whole number, not 'big'" in stderr
    assert "field 'format' (string) is missing" in stderr
    assert "derived image name 'Copy Of It' must match" in stderr


def test_test_exits_1_on_an_error_result(write_script, image):
    script = write_script(SCRIPT)
    done = run_script([str(script), "--test", str(image), "--config", '{"fail": true}'])
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "ok": False,
        "error": {"code": "NOPE", "message": "configured to fail"},
    }


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--test", "/nonexistent/photo.jpg"], "cannot read /nonexistent/photo.jpg"),
        (["--config", "{}"], "--config and --save only apply to --test"),
        (["--host", "0.0.0.0"], "--host only applies to --http"),
        (["--test", "x.jpg", "--config", "[1]"], "--config must be a JSON object"),
        (["--test", "x.jpg", "--http", "80"], "not allowed with argument"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(write_script, args, complaint):
    script = write_script(SCRIPT)
    done = run_script([str(script), *args])
    assert done.returncode == 2
    assert complaint in done.stderr.decode()


def test_run_refuses_to_guess_between_several_processors(write_script, image):
    script = write_script(
        """
        from imagelake import processor, run

        @processor(name="one", version="1", fields={})
        def one(image_bytes, info):
            return {}

        @processor(name="two", version="1", fields={})
        def two(image_bytes, info):
            return {}

        run()
        """
    )
    done = run_script([str(script), "--test", str(image)])
    assert done.returncode == 2
    assert (
        "several processors are registered (one, two); pass the one to serve: run(process)"
        in done.stderr.decode()
    )


def test_an_invalid_declaration_fails_at_import_with_its_reasons(write_script):
    script = write_script(
        """
        from imagelake import processor

        @processor(name="Bad Name", version="1", fields={"x": "float"})
        def process(image_bytes, info):
            return {}
        """
    )
    done = run_script([str(script)])
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert "ProcessorDefinitionError" in stderr and "name 'Bad Name' must match" in stderr
    assert done.stdout == b""


def test_help(write_script):
    done = run_script([str(write_script(SCRIPT)), "--help"])
    assert done.returncode == 0
    assert b"--http PORT" in done.stdout and b"--test IMAGE" in done.stdout


def test_mode_of():
    assert mode_of([]) == "stdio"
    assert mode_of(["--http", "80"]) == "http"
    assert mode_of(["--http=80", "--host", "0.0.0.0"]) == "http"
    assert mode_of(["--test", "a.jpg"]) == "test"
    assert mode_of(["--help"]) == "other"


def jpeg_header(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(640, 480), ("png", "image/png", 640, 480)),
        (b"GIF89a" + struct.pack("<HH", 32, 16) + b"\x00" * 10, ("gif", "image/gif", 32, 16)),
        (jpeg_header(4032, 3024), ("jpeg", "image/jpeg", 4032, 3024)),
        (
            b"RIFF\x00\x00\x00\x00WEBPVP8X"
            + b"\x00" * 8
            + (1279).to_bytes(3, "little")
            + (719).to_bytes(3, "little"),
            ("webp", "image/webp", 1280, 720),
        ),
        (b"II*\x00" + b"\x00" * 20, ("tiff", "image/tiff", None, None)),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, ("heif", "image/heif", None, None)),
        (b"\x00\x00\x00\x18ftypavif" + b"\x00" * 20, ("avif", "image/avif", None, None)),
        (b"not an image", (None, None, None, None)),
        (b"\xff\xd8\xff", ("jpeg", "image/jpeg", None, None)),
        (b"", (None, None, None, None)),
    ],
)
def test_sniff(data, expected):
    assert sniff(data) == expected
