"""Pictures (PNG, JPEG, BMP; any size or colour mode) -> the 28x28 uint8 images the model takes.

Fashion-MNIST items are light on a black background. A photo of a shoe on a white table
is the opposite, so a picture whose border is brighter than mid-grey is inverted, unless
the caller says otherwise. Decoding needs Pillow (``pip install "edgecnn[images]"``).
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from edgecnn.runtime.errors import InputError, read_file

#: Pictures above this many pixels are refused before they are decoded (a 20000x20000
#: PNG would need 400 MB as greyscale and far more in RGBA).
MAX_PIXELS = 50_000_000
FORMATS = ("PNG", "JPEG", "BMP")


def load_pillow() -> Any:
    """Pillow's ``Image`` module, or an InputError saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            'reading image files needs Pillow: pip install "edgecnn[images]"'
        ) from None
    return Image


def is_image_source(obj: Any) -> bool:
    """Whether ``obj`` is a path or encoded bytes rather than an array."""
    return isinstance(obj, (str, os.PathLike, bytes, bytearray, memoryview))


def load_image(source: str | os.PathLike[str] | bytes, invert: bool | None = None) -> np.ndarray:
    """Decode a picture into a uint8 ``(28, 28)`` image, light on dark.

    Args:
        source: a file path, or the bytes of a PNG, JPEG or BMP file.
        invert: ``None`` inverts when the picture's border is light (dark-on-light);
            ``True`` or ``False`` force it.

    Raises:
        InputError: missing, empty, undecodable or oversized pictures.
    """
    image_module = load_pillow()
    name = "image bytes"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        name = str(source)
        data = read_file(source, InputError, "an image")
    if not data:
        raise InputError(f"{name} is empty")
    try:
        with image_module.open(io.BytesIO(data), formats=FORMATS) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{name} is {width}x{height} pixels; the limit is "
                    f"{MAX_PIXELS // 1_000_000} megapixels"
                )
            if im.format == "JPEG":
                im.draft("L", (56, 56))  # let the decoder downscale large JPEGs cheaply
            if im.mode.startswith("I"):  # 16- or 32-bit greyscale: scale, don't clip, to 8 bits
                wide = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or wide.max() <= 65535 else wide.max()
                im = image_module.fromarray(np.clip(wide / top * 255, 0, 255).astype(np.uint8))
            elif im.mode in ("RGBA", "LA", "PA"):
                im = _flatten(im)
            else:
                im = im.convert("L")
            im = im.resize((28, 28), image_module.Resampling.LANCZOS, reducing_gap=3.0)
            pixels = np.asarray(im, dtype=np.uint8)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as e:
        raise InputError(f"{name} is not a PNG, JPEG or BMP image ({e})") from None
    if invert is None:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        invert = float(border.mean()) > 127
    return 255 - pixels if invert else pixels


def _flatten(im: Any) -> Any:
    """Composite a transparent picture onto white, then greyscale it."""
    image_module = load_pillow()
    rgba = im.convert("RGBA")
    background = image_module.new("RGBA", rgba.size, (255, 255, 255, 255))
    return image_module.alpha_composite(background, rgba).convert("L")
