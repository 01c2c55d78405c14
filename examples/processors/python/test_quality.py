"""Tests for quality.py: images drawn with Pillow, and one real stdio session."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Run from a checkout without installing the SDK: fall back to its source.
SDK_SRC = HERE.parents[2] / "sdk" / "python" / "src"
if SDK_SRC.is_dir() and str(SDK_SRC) not in sys.path:
    sys.path.append(str(SDK_SRC))

import quality  # noqa: E402
from imagelake import ProcessorError, Result, validate  # noqa: E402
from imagelake.framing import read_frame, write_frame  # noqa: E402


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def info(**config) -> dict:
    return {"id": "r-1", "image": {}, "metadata": {}, "previous": {}, "config": config}


def analyse(image_bytes: bytes, **config) -> Result:
    result = quality.process(image_bytes, info(**config))
    assert isinstance(result, Result)
    assert validate(quality.process.imagelake.fields, result.metadata) == []
    return result


def checkerboard(size: int = 512, square: int = 8) -> Image.Image:
    """Black and white squares of square pixels (size a multiple of square)."""
    cells = size // square
    pattern = (np.indices((cells, cells)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return Image.fromarray(pattern, "L").resize((size, size), Image.Resampling.NEAREST).convert("RGB")


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_a_sharp_image_scores_higher_than_the_same_image_blurred():
    sharp = checkerboard()
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    sharp_score = analyse(encode(sharp)).metadata["sharpness"]
    blurred_score = analyse(encode(blurred)).metadata["sharpness"]
    assert sharp_score > 10 * blurred_score > 0


def test_black_is_dark_and_white_is_bright():
    black = analyse(encode(Image.new("RGB", (64, 48), "black"))).metadata
    white = analyse(encode(Image.new("RGB", (64, 48), "white"))).metadata
    grey = analyse(encode(Image.new("RGB", (64, 48), (128, 128, 128)))).metadata
    assert black["brightness"] == 0.0 and black["exposure"] == "dark"
    assert white["brightness"] == 1.0 and white["exposure"] == "bright"
    assert grey["exposure"] == "normal" and 0.45 < grey["brightness"] < 0.55
    assert black["contrast"] == white["contrast"] == 0.0
    assert black["dominant_colors"] == ["#000000"] and white["dominant_colors"] == ["#ffffff"]


def test_contrast_of_half_black_half_white_is_half():
    image = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(image).rectangle((50, 0, 99, 99), fill=255)
    metadata = analyse(encode(image)).metadata
    assert metadata["contrast"] == pytest.approx(0.5, abs=0.01)
    assert metadata["brightness"] == pytest.approx(0.5, abs=0.01)


def test_a_mostly_red_image_has_red_first():
    image = Image.new("RGB", (400, 300), (220, 20, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 120, 100), fill=(20, 40, 200))  # 10% blue
    draw.ellipse((300, 200, 380, 280), fill=(30, 180, 40))  # some green
    colors = analyse(encode(image, "JPEG", quality=90)).metadata["dominant_colors"]
    assert 2 <= len(colors) <= 5
    assert all(len(color) == 7 and color.startswith("#") for color in colors)
    red, green, blue = hex_rgb(colors[0])
    assert red > 180 and green < 70 and blue < 70, colors
    assert any(hex_rgb(color)[2] > 150 for color in colors[1:]), colors


def test_many_colours_give_at_most_five():
    pixels = np.zeros((256, 256, 3), np.uint8)
    pixels[..., 0] = np.arange(256)[:, None]
    pixels[..., 1] = np.arange(256)[None, :]
    pixels[..., 2] = 128
    colors = analyse(encode(Image.fromarray(pixels))).metadata["dominant_colors"]
    assert len(colors) == 5 and len(set(colors)) == 5


def test_noise_has_one_dominant_colour_not_five_shades_of_it():
    noise = np.random.default_rng(7).integers(96, 160, (200, 300, 3), dtype=np.uint8)
    colors = analyse(encode(Image.fromarray(noise))).metadata["dominant_colors"]
    assert len(colors) == 1 and all(100 < channel < 156 for channel in hex_rgb(colors[0]))


def test_edges_only_when_configured():
    image = checkerboard(1200, 100)
    assert analyse(encode(image)).images == []
    assert analyse(encode(image), edges=False).images == []
    result = analyse(encode(image), edges=True)
    assert [(derived.name, derived.format) for derived in result.images] == [("edges", "png")]
    edges = Image.open(io.BytesIO(result.images[0].data))
    assert edges.format == "PNG" and max(edges.size) <= 256 and edges.size == (256, 256)
    assert np.asarray(edges).max() == 255  # the squares' borders are there


def test_exif_orientation_is_applied():
    # Stored 200x100 with "rotate 90" in EXIF: upright it is 100x200, and so is the edge map.
    image = Image.new("RGB", (200, 100), "white")
    exif = Image.Exif()
    exif[0x0112] = 6
    result = analyse(encode(image, "JPEG", exif=exif), edges=True)
    assert Image.open(io.BytesIO(result.images[0].data)).size == (100, 200)
    plain = analyse(encode(image, "JPEG"), edges=True)
    assert Image.open(io.BytesIO(plain.images[0].data)).size == (200, 100)


def test_large_images_are_downscaled_first():
    image = checkerboard(3000, 300)
    result = analyse(encode(image, "JPEG", quality=80), edges=True)
    assert result.metadata["exposure"] == "normal"
    assert Image.open(io.BytesIO(result.images[0].data)).size == (256, 256)


def test_transparency_counts_as_white():
    image = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    metadata = analyse(encode(image)).metadata
    assert metadata["brightness"] == 1.0 and metadata["dominant_colors"] == ["#ffffff"]


def test_sixteen_bit_greyscale():
    pixels = np.full((40, 40), 65535 // 4, dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode.startswith("I")
    metadata = analyse(encode(image)).metadata
    assert metadata["brightness"] == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 50, encode(checkerboard(64))[:100]],
)
def test_unreadable_input_is_a_processor_error(data):
    with pytest.raises(ProcessorError) as caught:
        quality.process(data, info())
    assert caught.value.code == "UNREADABLE"


def test_the_declaration():
    spec = quality.process.imagelake
    assert spec.name == "quality"
    assert spec.fields == {
        "sharpness": "number",
        "brightness": "number",
        "contrast": "number",
        "dominant_colors": "string[]",
        "exposure": "string",
    }


def test_quality_py_over_the_stdio_protocol():
    env = dict(os.environ)
    if SDK_SRC.is_dir():
        env["PYTHONPATH"] = os.pathsep.join([str(SDK_SRC), *filter(None, [env.get("PYTHONPATH")])])
    child = subprocess.Popen(
        [sys.executable, str(HERE / "quality.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        hello = json.loads(read_frame(child.stdout))
        assert hello["imagelake"] == 1 and hello["name"] == "quality" and hello["version"] == "1.0.0"
        assert hello["fields"]["exposure"] == "string"

        def request(request_id: str, image: bytes, **config) -> tuple[dict, list[bytes]]:
            header = {"id": request_id, "image": {"format": "png", "input": "preview"}, "config": config}
            write_frame(child.stdin, json.dumps(header).encode())
            write_frame(child.stdin, image)
            child.stdin.flush()
            response = json.loads(read_frame(child.stdout))
            return response, [read_frame(child.stdout) for _ in response.get("images", [])]

        response, images = request("r-1", encode(checkerboard(300, 30), "WEBP", lossless=True), edges=True)
        assert response["id"] == "r-1" and response["ok"] is True
        assert set(response["metadata"]) == set(hello["fields"])
        assert response["images"] == [{"name": "edges", "format": "png"}]
        assert Image.open(io.BytesIO(images[0])).size == (256, 256)

        response, images = request("r-2", b"garbage")
        assert response["ok"] is False and response["error"]["code"] == "UNREADABLE"
        assert images == []

        response, _ = request("r-3", encode(Image.new("RGB", (10, 10), "black")))
        assert response["metadata"]["exposure"] == "dark" and "images" not in response

        child.stdin.close()
        assert child.wait(timeout=20) == 0
        assert child.stdout.read() == b""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
