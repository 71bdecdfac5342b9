"""Pictures (PNG, JPEG, BMP; any size or colour mode) -> the small uint8 images a model takes.

Fashion-MNIST items are light on a black background. A photo of a shoe on a white table
is the opposite, so for a light-on-dark model a picture whose border is brighter than
mid-grey is inverted, unless the caller says otherwise. Decoding needs Pillow
(``pip install "edgecnn[images]"``).

A small file can decode to a huge picture (docs/benchmarks.md, "PNG bomb size"), so
the size is read from the file's header and refused above
:data:`MAX_PIXELS` before anything is decoded. Large JPEGs are decoded at 1/2 to 1/8
scale by the decoder itself, and every other picture is shrunk by whole-pixel boxes in
its own mode before any conversion, so no full-size copy in a wider type is ever made.
"""

from __future__ import annotations

import io
import os
import re
import struct
from types import ModuleType
from typing import TYPE_CHECKING, cast

import numpy as np

from edgecnn._files import read_regular_file
from edgecnn.runtime.contract import DEFAULT_IMAGE_SIZE
from edgecnn.runtime.errors import IMAGE_MAX_BYTES, InputError

if TYPE_CHECKING:  # Pillow is optional ("edgecnn[images]"); imported when a picture is read
    from PIL.Image import Image as Picture

#: Decoded pixels at most (4096 x 4096). Far below Pillow's own limit (89 million),
#: which guards against bombs, not against memory on a 1 GB Raspberry Pi; the worst
#: picture under this limit is measured by ``bench/decode.py`` (docs/benchmarks.md).
MAX_PIXELS = 4096 * 4096
#: JPEGs are decoded at up to 1/8 scale (libjpeg's DCT scaling), so they may declare
#: this many times more pixels than :data:`MAX_PIXELS` decode to.
JPEG_SCALE = 8
FORMATS = ("PNG", "JPEG", "BMP")
#: File name suffixes of those formats, for finding pictures in folders.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Resampling shrinks by whole-pixel boxes first, down to this many times the target
#: size, then resamples with Lanczos: Pillow's ``reducing_gap``, done by hand so that
#: it happens before the colour conversions.
REDUCING_GAP = 3.0
#: EXIF orientation -> the transpose that makes the picture upright (as phones save it).
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip
_EXIF_ORIENTATION = 0x0112
#: A picture whose border is brighter than this (mid-grey) is dark-on-light.
LIGHT_BORDER = 127
_ADDRESS = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def load_pillow() -> ModuleType:
    """Pillow's ``Image`` module, or an InputError saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError(
            'reading image files needs Pillow: pip install "edgecnn[images]"'
        ) from None
    return Image


def is_image_source(obj: object) -> bool:
    """Whether ``obj`` is a path or encoded bytes rather than an array."""
    return isinstance(obj, (str, os.PathLike, bytes, bytearray, memoryview))


def picture_header(data: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` read from a PNG, JPEG or BMP header; None if unrecognised.

    Only the header is read, so a picture can be refused for its size before a decoder
    allocates anything.
    """
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return "PNG", width, height
        if data.startswith(b"BM"):
            (dib_size,) = struct.unpack("<I", data[14:18])
            if dib_size == 12:  # OS/2 BITMAPCOREHEADER
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            return "BMP", abs(width), abs(height)
        if data.startswith(b"\xff\xd8"):
            return _jpeg_header(data)
    except struct.error:
        return None
    return None


def _jpeg_header(data: bytes) -> tuple[str, int, int] | None:
    """The size in the first start-of-frame marker of a JPEG."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                      0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):  # fmt: skip
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return "JPEG", width, height
        if marker == 0xDA or length < 2:  # scan data before any frame: not a JPEG we read
            return None
        pos += 2 + length
    return None


def _too_large(name: str, width: int, height: int) -> InputError:
    return InputError(
        f"{name} is {width}x{height} pixels; the limit is {MAX_PIXELS:,} decoded pixels "
        "(4096x4096; JPEGs are decoded at down to 1/8 scale, so may be larger)"
    )


def check_picture_size(data: bytes, name: str) -> str:
    """The picture's format, after refusing it if it would decode to too many pixels.

    Raises:
        InputError: not a PNG, JPEG or BMP, or too large.
    """
    header = picture_header(data)
    if header is None:
        raise InputError(f"{name} is not a PNG, JPEG or BMP image (unrecognised content)")
    fmt, width, height = header
    limit = MAX_PIXELS * (JPEG_SCALE * JPEG_SCALE if fmt == "JPEG" else 1)
    pillow_limit = getattr(load_pillow(), "MAX_IMAGE_PIXELS", None)
    if pillow_limit:  # above it Pillow warns on stderr, or refuses
        limit = min(limit, int(pillow_limit))
    if width * height > limit:
        raise _too_large(name, width, height)
    return fmt


def decode_picture(data: bytes, name: str, size: tuple[int, int], channels: int = 1) -> Picture:
    """Decode ``data`` into an upright Pillow image of ``size`` (width, height).

    Greyscale ("L") for ``channels`` 1, "RGB" for 3; transparency is composited onto white.

    Raises:
        InputError: unreadable, truncated or oversized pictures.
    """
    image_module = load_pillow()
    fmt = check_picture_size(data, name)
    try:
        with image_module.open(io.BytesIO(data), formats=[fmt]) as im:
            if fmt == "JPEG":  # let the decoder downscale (and greyscale) for free
                im.draft("L" if channels == 1 else "RGB", (2 * size[0], 2 * size[1]))
            if im.width * im.height > MAX_PIXELS:
                raise _too_large(name, im.width, im.height)
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            im.load()
            upright = size if orientation < 5 else (size[1], size[0])  # 5-8 turn 90 degrees
            small = _shrink(_reducible(im), upright)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as e:
        reason = _ADDRESS.sub("", str(e)).strip() or type(e).__name__
        if isinstance(e, image_module.UnidentifiedImageError):
            reason = "unrecognised content"
        raise InputError(f"{name} is not a PNG, JPEG or BMP image ({reason[:120]})") from None
    transpose = _ORIENTATION.get(orientation)
    if transpose is not None:  # as phones save pictures taken sideways
        small = small.transpose(getattr(image_module.Transpose, transpose))
    return _finish(small, size, channels)


def _finish(im: Picture, size: tuple[int, int], channels: int) -> Picture:
    """A shrunk picture in the model's mode, resampled to ``size`` with Lanczos."""
    image_module = load_pillow()
    im = _greyscale(im) if channels == 1 else _colour(im)
    return im.resize(size, image_module.Resampling.LANCZOS)


def resize_array(image: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A uint8 image array ``(H, W)`` or ``(H, W, C)`` brought to ``shape`` ``(h, w, c)``.

    Exactly as a picture file would be: the same shrinking, mode and resampling. Arrays
    already of ``shape`` are returned as they are.
    """
    height, width, channels = shape
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.shape == (height, width) and channels == 1:
        return image[:, :, np.newaxis]
    if image.shape == shape:
        return image
    image_module = load_pillow()
    im = image_module.fromarray(np.ascontiguousarray(image))
    out = np.asarray(_finish(_shrink(im, (width, height)), (width, height), channels))
    return out.reshape(shape)


def _reducible(im: Picture) -> Picture:
    """``im`` in a mode Pillow can shrink: 16-bit greyscale becomes 8-bit, palettes expand."""
    if im.mode.startswith("I"):  # 16- or 32-bit greyscale: scale, don't clip, to 8 bits
        return _eight_bit(im)
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    return im.convert("RGB")  # 1, CMYK, YCbCr, La, RGBa...


def _eight_bit(im: Picture) -> Picture:
    """A 16- or 32-bit greyscale image as 8-bit "L", a band of rows at a time.

    Whole, the conversion would need a full-size copy four or eight bytes per pixel.
    """
    image_module = load_pillow()
    width, height = im.size
    top = 65535
    if not im.mode.startswith("I;16"):
        extrema = cast("tuple[float, float]", im.getextrema())  # one band: (min, max)
        top = max(65535, int(extrema[1]))
    out = np.empty((height, width), dtype=np.uint8)
    band = max(1, (1 << 20) // max(width, 1))
    for y in range(0, height, band):
        rows = np.asarray(im.crop((0, y, width, min(y + band, height))), dtype=np.int64)
        scaled = (np.clip(rows, 0, top) * 255 + top // 2) // top
        out[y : y + band] = scaled.astype(np.uint8)
    eight_bit: Picture = image_module.fromarray(out)
    return eight_bit


def _shrink(im: Picture, size: tuple[int, int]) -> Picture:
    """Shrink ``im`` by whole-pixel boxes to within :data:`REDUCING_GAP` of ``size``.

    A band of rows at a time: Pillow's ``reduce`` makes a full-size copy of a transparent
    picture first (to premultiply its alpha). Bands a whole number of boxes high give
    exactly the result of reducing the picture at once.
    """
    fx = max(1, int(im.width / size[0] / REDUCING_GAP))
    fy = max(1, int(im.height / size[1] / REDUCING_GAP))
    if fx == 1 and fy == 1:
        return im
    rows = fy * max(1, (1 << 20) // max(1, im.width * fy))  # about a megapixel per band
    if rows >= im.height:  # one band: no copies to cut it out and paste it back
        reduced: Picture = im.reduce((fx, fy))
        return reduced
    image_module = load_pillow()
    out: Picture = image_module.new(im.mode, (-(-im.width // fx), -(-im.height // fy)))
    for top in range(0, im.height, rows):
        band = im.crop((0, top, im.width, min(top + rows, im.height)))
        out.paste(band.reduce((fx, fy)), (0, top // fy))
    return out


def _greyscale(im: Picture) -> Picture:
    """Greyscale; transparent pictures are composited onto white first."""
    if im.mode == "L":
        return im
    if im.mode in ("RGBA", "LA"):
        return _on_white(im).convert("L")
    return im.convert("L")


def _colour(im: Picture) -> Picture:
    """RGB; transparent pictures are composited onto white first."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA"):
        return _on_white(im).convert("RGB")
    return im.convert("RGB")


def _on_white(im: Picture) -> Picture:
    image_module = load_pillow()
    rgba = im.convert("RGBA")
    background = image_module.new("RGBA", rgba.size, (255, 255, 255, 255))
    composite: Picture = image_module.alpha_composite(background, rgba)
    return composite


def border_mean(pixels: np.ndarray) -> float:
    """The mean brightness of an image's outermost pixels: its background, most often."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(border.mean())


def light_borders(images: np.ndarray) -> np.ndarray:
    """Which greyscale images ``(N, H, W)`` have ``border_mean(image) > LIGHT_BORDER``.

    The batch form of the test in :func:`load_image`, on exact integer sums: the same
    answer for every image.
    """
    sums = sum(
        edge.sum(axis=1, dtype=np.int64)
        for edge in (images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1])
    )
    count = 2 * (images.shape[1] + images.shape[2])
    return np.asarray(sums > LIGHT_BORDER * count)


def load_image(
    source: str | os.PathLike[str] | bytes,
    invert: bool | None = None,
    side: int = DEFAULT_IMAGE_SIZE,
    light_on_dark: bool = True,
    channels: int = 1,
) -> np.ndarray:
    """Decode a picture into a uint8 image as the model expects it: the one preprocessing.

    The trainer reads the pictures of an image folder with this function too, so that
    training and serving cannot drift apart. Returns ``(side, side)`` for greyscale,
    ``(side, side, 3)`` for colour.

    Args:
        source: a file path, or the bytes of a PNG, JPEG or BMP file.
        invert: ``None`` decides from the picture: for a ``light_on_dark`` model, a
            picture with a light border (dark-on-light) is inverted; otherwise pictures
            are used as they are. ``True`` or ``False`` force it.
        side: the model's input width and height.
        light_on_dark: whether the model was trained on light objects on a dark
            background (its metadata says).
        channels: 1 (greyscale) or 3 (colour), as the model takes.

    Raises:
        InputError: missing, empty, undecodable or oversized pictures.
    """
    name = "image bytes"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = read_regular_file(source, IMAGE_MAX_BYTES, InputError, "an image")
        name = str(source)
    if not data:
        raise InputError(f"{name} is empty")
    pixels = np.asarray(decode_picture(data, name, (side, side), channels), dtype=np.uint8)
    if invert is None:
        invert = light_on_dark and border_mean(pixels) > LIGHT_BORDER
    return 255 - pixels if invert else pixels
