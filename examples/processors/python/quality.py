"""An example command/url processor: how sharp, bright and contrasted an image is,
its dominant colours, and (when configured) a small edge map.

    pip install ./sdk/python -r examples/processors/python/requirements.txt
    python examples/processors/python/quality.py --test photo.jpg
    python examples/processors/python/quality.py --test photo.jpg --config '{"edges": true}' --save /tmp/out
    python examples/processors/python/quality.py              # the stdio protocol (a `command` processor)
    python examples/processors/python/quality.py --http 8080  # the HTTP protocol (a `url` processor)

Config (the processor's `config` in the processors file):
    edges: true   also return a derived image `edges` (PNG, long edge at most 256 px)
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from imagelake import DerivedImage, ProcessorError, Result, processor, run
from PIL import Image, ImageFilter, ImageOps

#: Images are analysed at this long edge at most, which keeps a 50-megapixel photo fast.
ANALYSIS_EDGE = 1024
#: Dominant colours come from a copy this small.
PALETTE_EDGE = 64
#: The derived edge map's long edge.
EDGES_EDGE = 256
#: Mean luma below which an image is "dark", and above which it is "bright".
DARK_BELOW = 0.25
BRIGHT_ABOVE = 0.75
#: A colour must cover this share of the image to count as dominant.
MIN_COLOR_SHARE = 0.01
#: Colours closer than this (Euclidean, in 0..255 RGB) to a more common one are
#: the same colour to a person, and are not listed again.
MIN_COLOR_DISTANCE = 32


def _open(image_bytes: bytes) -> Image.Image:
    """Decoded, upright and RGB, with its long edge at most ANALYSIS_EDGE."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes))
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: much faster on big photos.
            image.draft("RGB", (ANALYSIS_EDGE, ANALYSIS_EDGE))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ProcessorError("TOO_LARGE", f"The image has too many pixels to analyse: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise ProcessorError("UNREADABLE", f"The image could not be decoded: {error}") from None
    image = ImageOps.exif_transpose(image) or image
    image = _to_rgb(image)
    image.thumbnail((ANALYSIS_EDGE, ANALYSIS_EDGE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float greyscale
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas count as the white they are usually shown on.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _sharpness(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian, on 0..255 values (the usual scale:
    under ~100 looks blurry at this size)."""
    if luma.shape[0] < 3 or luma.shape[1] < 3:
        return 0.0
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    return float(laplacian.var())


def _dominant_colors(image: Image.Image, count: int = 5) -> list[str]:
    small = image.copy()
    small.thumbnail((PALETTE_EDGE, PALETTE_EDGE), Image.Resampling.BILINEAR)
    paletted = small.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    palette = paletted.getpalette() or []
    total = small.width * small.height
    picked: list[tuple[int, int, int]] = []
    for pixels, index in sorted(paletted.getcolors() or [], reverse=True):
        if pixels / total < MIN_COLOR_SHARE or len(picked) == count:
            break
        rgb = tuple(palette[index * 3 : index * 3 + 3])
        if all(_distance(rgb, other) >= MIN_COLOR_DISTANCE for other in picked):
            picked.append(rgb)
    return [f"#{red:02x}{green:02x}{blue:02x}" for red, green, blue in picked]


def _distance(one: tuple[int, ...], other: tuple[int, ...]) -> float:
    return sum((a - b) ** 2 for a, b in zip(one, other, strict=True)) ** 0.5


def _exposure(brightness: float) -> str:
    if brightness < DARK_BELOW:
        return "dark"
    if brightness > BRIGHT_ABOVE:
        return "bright"
    return "normal"


def _edges(image: Image.Image) -> bytes:
    small = image.convert("L")
    small.thumbnail((EDGES_EDGE, EDGES_EDGE), Image.Resampling.LANCZOS)
    edges = ImageOps.autocontrast(small.filter(ImageFilter.FIND_EDGES))
    out = io.BytesIO()
    edges.save(out, format="PNG", optimize=True)
    return out.getvalue()


@processor(
    name="quality",
    version="1.0.0",
    fields={
        "sharpness": "number",
        "brightness": "number",
        "contrast": "number",
        "dominant_colors": "string[]",
        "exposure": "string",
    },
)
def process(image_bytes: bytes, info: dict) -> Result:
    image = _open(image_bytes)
    # ITU-R 601 luma, as Pillow's "L" mode computes it.
    luma = np.asarray(image.convert("L"), dtype=np.float64)
    brightness = float(luma.mean()) / 255.0
    metadata = {
        "sharpness": round(_sharpness(luma), 2),
        "brightness": round(brightness, 4),
        "contrast": round(float(luma.std()) / 255.0, 4),
        "dominant_colors": _dominant_colors(image),
        "exposure": _exposure(brightness),
    }
    images = []
    if (info.get("config") or {}).get("edges"):
        images.append(DerivedImage("edges", "png", _edges(image)))
    return Result(metadata=metadata, images=images)


if __name__ == "__main__":
    run()
