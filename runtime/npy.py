"""``.npy`` arrays from untrusted bytes or files: the header is checked before anything else.

``np.load`` allocates whatever shape a header claims (a 100-byte file can claim 2**38
floats), follows a zip archive renamed ``.npy``, and accepts dtypes that are not
numbers. Here the header is parsed first, the shape's size is computed with Python's
unbounded integers (an int64 product can wrap to a harmless-looking number), and the
data must be exactly as long as the header says.
"""

from __future__ import annotations

import io
import math
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
#: What reading a damaged or hostile ``.npz`` (a zip archive) can raise besides
#: :class:`NpyError`, each caught on purpose: ``NotImplementedError`` when a damaged
#: directory names an unknown compression method, ``RuntimeError`` for an encrypted
#: member (and ``RecursionError``), ``ValueError`` for bad text and malformed members.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
    NotImplementedError, RuntimeError,
)  # fmt: skip


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


def read_header(stream: IO[bytes], kinds: str = NUMERIC_KINDS) -> NpyHeader:
    """Parse the header at the start of ``stream`` and check the dtype against ``kinds``.

    Raises:
        NpyError: not an ``.npy`` header, or a dtype that is not a plain number.
    """
    start = stream.tell()
    magic = stream.read(len(MAGIC))
    if magic != MAGIC:
        if magic.startswith(b"PK"):
            raise NpyError("it is a zip archive (.npz?), not a .npy array")
        raise NpyError("it does not start like a .npy array")
    stream.seek(start)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise NpyError(f"format version {version[0]}.{version[1]} is not supported")
    except NpyError:
        raise
    except (ValueError, TypeError, SyntaxError, OverflowError, RecursionError) as e:
        raise NpyError(f"unreadable header ({str(e)[:120]})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise NpyError(f"dtype {dtype} holds objects or records, not numbers")
    if dtype.kind not in kinds or dtype.itemsize == 0:
        raise NpyError(f"dtype {dtype} is not a plain number type")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise NpyError(f"impossible shape {shape!r:.80}")
    return NpyHeader(np.dtype(dtype), tuple(shape), bool(fortran), stream.tell() - start)


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


def read_member(stream: IO[bytes], size: int, max_items: int, kinds: str = "f") -> np.ndarray:
    """An array from a zip member of ``size`` bytes (``weights.npz``), checked before reading.

    Raises:
        NpyError: malformed, a dtype not in ``kinds``, too many values, or a size that
            does not match.
    """
    header = read_header(stream, kinds=kinds)
    _checked(header, size - header.offset, max_items, lambda: "too large for a weight")
    data = stream.read(header.nbytes)
    if len(data) != header.nbytes:
        raise NpyError(f"truncated: {len(data):,} of {header.nbytes:,} data bytes")
    array = np.frombuffer(data, dtype=header.dtype, count=header.items)
    return array.reshape(header.shape, order="F" if header.fortran else "C")
