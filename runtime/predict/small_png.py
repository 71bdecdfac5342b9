"""Plain greyscale PNGs of the model's own size, decoded a batch at a time.

Folders of small pictures (Fashion-MNIST's 28x28 PNGs) spend most of their time in
Pillow's per-picture bookkeeping, not in decoding: through
:func:`~edgecnn.runtime.images.load_image` a picture costs several times its share of a
batch-256 inference (docs/benchmarks.md, "small PNG decoding").
Here a picture that is certain to need nothing but inflating and unfiltering (8-bit
greyscale, not interlaced, exactly the model's size, no chunk that could change its
pixels) is inflated with :mod:`zlib`, and a whole batch is unfiltered by one call of
Pillow's own PNG decoder. Every other picture, and every file that is damaged in any
way, goes through ``load_image`` as before, so its pixels and its error message are the
ones ``load_image`` gives.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from edgecnn.runtime.images import load_pillow

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Larger files are never plain small PNGs; they are read by ``load_image``.
MAX_BYTES = 1 << 16
#: Ancillary chunks Pillow reads without touching a greyscale picture's pixels, with the
#: length each must have (Pillow refuses shorter ones). Text chunks are not here: Pillow
#: takes an EXIF orientation from them, which turns the picture.
HARMLESS = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"pHYs": 9}
_CHUNK = struct.Struct(">I4s")
#: IHDR of a plain picture: width, height, 8 bits, greyscale, deflate, filter method 0,
#: not interlaced.
_IHDR = struct.Struct(">IIBBBBB")
_LAST_FILTER = 4  # Paeth
_IEND = b"\0\0\0\0IEND" + zlib.crc32(b"IEND").to_bytes(4, "big")
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def read_small(path: str) -> bytes | None:
    """The bytes of the file ``path`` if it holds 1 to :data:`MAX_BYTES`; else None.

    One ``open``, one ``read`` and one ``close``: no ``stat``, which cost a fifth of the
    time of reading a small file. What a ``stat`` would have refused comes out here all
    the same: a folder cannot be read, a pipe opened without blocking gives nothing or
    fails, a device gives too much; and a file cut short by being written while read is
    then no complete PNG. None for anything unusual: ``load_image`` then reads the file
    and says what is wrong with it.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if 0 < len(data) <= MAX_BYTES else None


def filtered_rows(data: bytes, side: int) -> bytes | None:
    """The inflated, still filtered rows of a plain ``side`` x ``side`` greyscale PNG.

    None unless the file is exactly that and intact: the signature and IHDR first, only
    :data:`HARMLESS` chunks before the image data, one run of IDAT chunks, IEND last and
    nothing after it, every chunk's CRC right, a complete zlib stream of exactly the
    picture's rows, each with a known filter type.
    """
    head = _head(side)
    if not data.startswith(head) or not data.endswith(_IEND):
        return None
    pos, end = len(head), len(data) - len(_IEND)
    one_idat = int.from_bytes(data[pos : pos + 4], "big") == end - pos - 12
    if one_idat and data[pos + 4 : pos + 8] == b"IDAT":  # the usual layout, checked at once
        stop = end - 4
        if zlib.crc32(data[pos + 4 : stop]) != int.from_bytes(data[stop:end], "big"):
            return None
        return _inflate([data[pos + 8 : stop]], side)
    idat: list[bytes] = []
    while pos < end:
        if pos + 12 > end:
            return None
        length, kind = _CHUNK.unpack_from(data, pos)
        stop = pos + 8 + length
        if stop + 4 > end or zlib.crc32(data[pos + 4 : stop]) != int.from_bytes(
            data[stop : stop + 4], "big"
        ):
            return None
        if kind == b"IDAT":
            idat.append(data[pos + 8 : stop])
        elif idat or HARMLESS.get(kind) != length:
            return None  # a chunk after the image data, or one that may change pixels
        pos = stop + 4
    return _inflate(idat, side) if idat else None


@functools.lru_cache(maxsize=8)
def _head(side: int) -> bytes:
    """The signature and IHDR chunk every plain ``side`` x ``side`` picture starts with."""
    ihdr = b"IHDR" + _IHDR.pack(side, side, 8, 0, 0, 0, 0)
    return SIGNATURE + len(ihdr[4:]).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")


def _inflate(idat: list[bytes], side: int) -> bytes | None:
    size = side * (side + 1)  # a filter-type byte before each row
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(b"".join(idat), size + 1)  # bounded: no zip bomb
    except zlib.error:
        return None
    if len(rows) != size or not inflater.eof or max(rows[:: side + 1]) > _LAST_FILTER:
        return None
    return rows


def unfilter(rows: Sequence[bytes], side: int) -> np.ndarray:
    """``(N, side, side)`` uint8 pixels of the pictures whose :func:`filtered_rows` these are.

    The pictures are stacked into one tall picture and unfiltered by a single call of
    Pillow's PNG decoder, with a row of zeros (filter "none") before each one: to the
    row after it, that row is exactly the zero row the PNG standard puts above a
    picture's top, so each picture comes out as if decoded alone. The stack is wrapped
    in an uncompressed zlib stream, a copy, because that decoder inflates as it goes.

    Raises:
        InputError: Pillow is not installed.
    """
    image_module = load_pillow()
    stride = side + 1
    blank = bytes(stride)
    stacked = blank + blank.join(rows)
    tall = image_module.frombytes(
        "L", (side, len(rows) * stride), zlib.compress(stacked, 0), "zip", "L"
    )
    pixels = np.array(tall).reshape(len(rows), stride, side)  # a copy: writable
    return pixels[:, 1:, :]
