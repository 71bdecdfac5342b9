"""``.npy`` arrays from untrusted bytes or files: the header is checked before anything else.

``np.load`` allocates whatever shape a header claims (a 100-byte file can claim 2**38
floats), follows a zip archive renamed ``.npy``, and accepts dtypes that are not
numbers. Here the header is parsed first (its own length bounded before it is read), the
shape's size is computed with Python's unbounded integers (an int64 product can wrap to
a harmless-looking number), and the data must be exactly as long as the header says.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC = b"\x93NUMPY"
#: dtype kinds that are numbers an image can be made of: unsigned, signed, float.
NUMERIC_KINDS = "uif"
#: The longest ``.npy`` header text read; numpy writes a few hundred bytes, and refuses
#: more than 10,000 itself, but only after reading all of what the length field claims.
MAX_HEADER_BYTES = 1 << 16
#: Versions of the format: the size of the header-length field.
_LENGTH_FIELD = {(1, 0): "<H", (2, 0): "<I"}
#: The most text an archive member may hold (a "U" array: 4 bytes a character), whatever
#: its number of values: one value of a "U" dtype can claim gigabytes.
TEXT_MAX_BYTES = 1 << 22
#: Data is inflated in pieces of this size into the array's own buffer.
CHUNK_BYTES = 1 << 22
#: What reading a damaged or hostile ``.npz`` (a zip archive) can raise besides
#: :class:`NpyError`, each caught on purpose: ``NotImplementedError`` when a damaged
#: directory names an unknown compression method, ``RuntimeError`` for an encrypted
#: member (and ``RecursionError``), ``ValueError`` for bad text and malformed members.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
    NotImplementedError, RuntimeError,
)  # fmt: skip
#: One header parsed at a time. numpy reads the header's text with ``ast.literal_eval``,
#: and CPython before 3.11.8 keeps the AST builder's depth count in one place for every
#: thread (python/cpython#106905): a garbage collection that runs Python code in the
#: middle of one parse lets another thread's parse in, and one of them fails with
#: ``SystemError`` (two of serve's workers did, while a reload made garbage).
_HEADER_LOCK = threading.Lock()


def _new_lock_in_child() -> None:
    """In a forked child: a free lock (a thread of the parent may have held the old one)."""
    global _HEADER_LOCK
    _HEADER_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_new_lock_in_child)


class NpyError(ValueError):
    """An ``.npy`` that is malformed, of a refused dtype, too large, or truncated."""


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` header says: dtype, shape, order, and where the data starts."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran: bool
    offset: int

    @property
    def items(self) -> int:
        """Number of elements (exact, never wrapped)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises."""
        return self.items * self.dtype.itemsize


def _read_exact(stream: IO[bytes], size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise NpyError(f"truncated in its {what}")
    return data


def read_header(stream: IO[bytes], kinds: str = NUMERIC_KINDS) -> NpyHeader:
    """Parse the header at the start of ``stream`` and check the dtype against ``kinds``.

    Only the header's bytes are read: at most :data:`MAX_HEADER_BYTES` past the fixed part.

    Raises:
        NpyError: not an ``.npy`` header, or a dtype that is not a plain number.
    """
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        if magic.startswith(b"PK"):
            raise NpyError("it is a zip archive (.npz?), not a .npy array")
        raise NpyError("it does not start like a .npy array")
    version = tuple(_read_exact(stream, 2, "header"))
    field = _LENGTH_FIELD.get((version[0], version[1]))
    if field is None:
        raise NpyError(f"format version {version[0]}.{version[1]} is not supported")
    length_bytes = _read_exact(stream, struct.calcsize(field), "header")
    (length,) = struct.unpack(field, length_bytes)
    if length > MAX_HEADER_BYTES:
        raise NpyError(f"its header claims {length:,} bytes; at most {MAX_HEADER_BYTES:,}")
    text = _read_exact(stream, length, "header")
    fmt = np.lib.format
    parse = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        with _HEADER_LOCK:
            shape, fortran, dtype = parse(io.BytesIO(length_bytes + text))
    except (ValueError, TypeError, SyntaxError, OverflowError, RecursionError) as e:
        raise NpyError(f"unreadable header ({str(e)[:120]})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise NpyError(f"dtype {dtype} holds objects or records, not numbers")
    if dtype.kind not in kinds or dtype.itemsize == 0:
        if kinds == "U":
            raise NpyError(f"dtype {dtype} is not text (an array of str)")
        raise NpyError(f"dtype {dtype} is not a plain number type")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise NpyError(f"impossible shape {shape!r:.80}")
    offset = len(MAGIC) + 2 + len(length_bytes) + length
    return NpyHeader(np.dtype(dtype), tuple(shape), bool(fortran), offset)


def _checked(header: NpyHeader, available: int, max_items: int, describe: Callable[[], str]
             ) -> None:  # fmt: skip
    if header.items == 0:
        raise NpyError(f"empty: shape {header.shape} holds no values")
    if header.items > max_items:
        raise NpyError(f"shape {header.shape} has more than {max_items:,} values; {describe()}")
    if available != header.nbytes:
        what = "truncated" if available < header.nbytes else "longer than its header says"
        raise NpyError(f"{what}: {available:,} of {header.nbytes:,} data bytes")


def parse_npy(data: bytes, max_items: int, describe: Callable[[], str] = lambda: "too large"
              ) -> np.ndarray:  # fmt: skip
    """The array in an ``.npy`` file's bytes (read-only, no copy).

    Raises:
        NpyError: malformed, refused dtype, more than ``max_items`` values, or truncated.
    """
    stream = io.BytesIO(data)
    header = read_header(stream)
    _checked(header, len(data) - header.offset, max_items, describe)
    array = np.frombuffer(data, dtype=header.dtype, offset=header.offset, count=header.items)
    return array.reshape(header.shape, order="F" if header.fortran else "C")


def open_npy(path: Path, max_items: int) -> np.ndarray:
    """A memory-mapped view of the ``.npy`` at ``path``: large batches are not read whole.

    Raises:
        NpyError: malformed, refused dtype, more than ``max_items`` values, or truncated.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        header = read_header(f)
        size = f.seek(0, io.SEEK_END)
    _checked(header, size - header.offset, max_items, lambda: "too large")
    return np.memmap(path, dtype=header.dtype, mode="r", offset=header.offset,
                     shape=header.shape, order="F" if header.fortran else "C")  # fmt: skip


def read_member(stream: IO[bytes], size: int, max_items: int, kinds: str = "f",
                what: str = "this array") -> np.ndarray:  # fmt: skip
    """An array from a zip member of ``size`` bytes (``weights.npz``), checked before reading.

    ``what`` names the array in the message for one too large ("a weight").

    Raises:
        NpyError: malformed, a dtype not in ``kinds``, too many values, text over
            :data:`TEXT_MAX_BYTES`, or a size that does not match.
    """
    header = read_header(stream, kinds=kinds)
    _checked(header, size - header.offset, max_items, lambda: f"too large for {what}")
    if header.dtype.kind == "U" and header.nbytes > TEXT_MAX_BYTES:
        raise NpyError(f"{header.nbytes:,} bytes of text ({header.dtype}); at most "
                       f"{TEXT_MAX_BYTES:,}")  # fmt: skip
    return inflate(stream, header)


def inflate(stream: IO[bytes], header: NpyHeader) -> np.ndarray:
    """The data after ``header``, read in chunks into a buffer of exactly its size.

    Whatever the archive's directory claims, no more than the header's bytes (plus one,
    to see that the data ends there) are ever taken from ``stream``.
    """
    buffer = bytearray(header.nbytes)
    view, done = memoryview(buffer), 0
    while done < header.nbytes:
        chunk = stream.read(min(CHUNK_BYTES, header.nbytes - done))
        if not chunk:
            raise NpyError(f"truncated: {done:,} of {header.nbytes:,} data bytes")
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    if stream.read(1):
        raise NpyError(f"longer than its header says ({header.nbytes:,} data bytes)")
    array = np.frombuffer(buffer, dtype=header.dtype)
    return array.reshape(header.shape, order="F" if header.fortran else "C")
