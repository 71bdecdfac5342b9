"""What ``edgecnn predict`` reads: its FILE arguments expanded into pictures and ``.npy`` arrays.

An argument is a file (a picture whatever its name, or a ``.npy`` array), a folder (the
pictures and ``.npy`` arrays in it and its sub-folders, sorted by path, sub-folders where
their names sort; hidden files are skipped and links to folders not followed), or a glob
pattern (``'shots/**/*.png'``, expanded here so that a hundred thousand names never meet
the shell's argument limit; its matches, found by the folders' rule (see
:mod:`edgecnn.runtime.predict.walk`), are taken in path order as if typed, a matching folder
as a folder). Only the names are kept, never the pictures, so the list of a large
folder stays small (docs/benchmarks.md, "file list memory").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.images import SUFFIXES
from edgecnn.runtime.predict.output import escape_text
from edgecnn.runtime.predict.walk import folder_files, is_pattern, pattern_matches

NPY_SUFFIX = ".npy"
#: A .npy batch is memory-mapped, so it may be large; this only refuses absurd headers.
NPY_MAX_BYTES = 64 << 30


@dataclass(frozen=True)
class NpyFile:
    """A ``.npy`` array of ``count`` images; ``single``: one image, named without ``[i]``.

    ``uint8`` arrays are batched with pictures; other dtypes are converted to float as
    :func:`~edgecnn.runtime.preprocess.to_batch` does and batched among themselves.
    """

    path: str
    count: int
    single: bool
    uint8: bool

    def name(self, index: int) -> str:
        """How image ``index`` of the file is named in results and errors."""
        return self.path if self.single else f"{self.path}[{index}]"


@dataclass(frozen=True)
class Refused:
    """An input found unreadable before any classification, reported in its place."""

    path: str
    reason: str


#: One input file: a picture's path, a ``.npy`` array, or an input refused up front.
Source = str | NpyFile | Refused


@dataclass
class Inputs:
    """The inputs of one ``edgecnn predict``, in order, and how many images they hold."""

    sources: list[Source] = field(default_factory=list)
    images: int = 0  # pictures plus the images in .npy arrays
    pictures: int = 0
    name_width: int = 0  # the longest name a text line shows (escaped)


def find_files(arguments: Iterable[str]) -> tuple[list[str], list[str]]:
    """The files the arguments stand for, in order, and the files left out of folders.

    Raises:
        InputError: a path that does not exist, a pattern matching nothing, a folder
            holding no pictures or arrays, or a folder that cannot be read.
    """
    files: list[str] = []
    left_out: list[str] = []
    for argument in arguments:
        for path in _expand(argument):
            if os.path.isdir(path):
                found, others = _folder_files(path)
                if not found:
                    raise InputError(
                        f"{path} holds no pictures ({', '.join(SUFFIXES)}) or .npy arrays"
                        + (f" ({len(others)} other files)" if others else "")
                    )
                files += found
                left_out += others
            else:
                files.append(path)
    return files, left_out


def _expand(argument: str) -> Iterator[str]:
    """``argument`` itself if it exists, else its matches if it is a glob pattern."""
    try:
        os.stat(argument)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise InputError(f"cannot read {argument}: {e.strerror or type(e).__name__}") from None
    else:
        yield argument
        return
    if not is_pattern(argument):
        raise InputError(f"{argument} does not exist")
    matched = False
    for path in pattern_matches(argument):
        matched = True
        yield path
    if not matched:
        raise InputError(f"no files match {argument}")


def _folder_files(folder: str) -> tuple[list[str], list[str]]:
    """The pictures and arrays under ``folder`` in path order, and the other files."""
    return folder_files(folder, _is_input)


def _is_input(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in (*SUFFIXES, NPY_SUFFIX)


def collect(files: list[str], shape: tuple[int, int, int], skip_bad: bool = False) -> Inputs:
    """The inputs of :func:`find_files`'s ``files``, with each ``.npy`` array's header checked.

    With ``skip_bad`` an unreadable array is kept as :class:`Refused`, to be reported
    in its place; otherwise it is an error here, before anything is classified.

    Raises:
        InputError: an unreadable or ill-shaped ``.npy`` array; pictures to read
            without Pillow installed.
    """
    found = Inputs()
    width = 0
    for path in files:
        source: Source = path
        if path.lower().endswith(NPY_SUFFIX):
            try:
                source = npy_file(path, shape)
            except InputError as e:
                if not skip_bad:
                    raise
                source = Refused(path, str(e))
        found.sources.append(source)
        if isinstance(source, NpyFile):
            found.images += source.count
            width = max(width, len(escape_text(source.name(source.count - 1))))
        else:
            found.images += 1
            found.pictures += not isinstance(source, Refused)
            width = max(width, len(escape_text(path)))
    found.name_width = width
    if found.pictures:
        from edgecnn.runtime.images import load_pillow

        load_pillow()  # without Pillow: one sentence now, not an error per picture
    return found


def npy_file(path: str, shape: tuple[int, int, int]) -> NpyFile:
    """The ``.npy`` array at ``path``, checked: one image of ``shape``, or a batch of them.

    Raises:
        InputError: missing, unreadable, malformed, or of another shape.
    """
    array = open_npy_images(path)
    from edgecnn.runtime.preprocess import shape_hint, single_image_shapes

    if array.shape in single_image_shapes(shape):
        return NpyFile(path, 1, True, array.dtype == np.uint8)
    if array.ndim in (3, 4) and array.shape[1:] in single_image_shapes(shape):
        return NpyFile(path, len(array), False, array.dtype == np.uint8)
    raise InputError(f"{path}: images must have shape {shape_hint(shape)}; got {array.shape}")


def open_npy_images(path: str) -> np.ndarray:
    """The memory-mapped array of the ``.npy`` file at ``path``.

    Raises:
        InputError: missing, not a regular file, empty, unreadable or malformed.
    """
    from edgecnn._files import check_regular_file
    from edgecnn.runtime.npy import NpyError, open_npy

    check_regular_file(path, NPY_MAX_BYTES, InputError, "a .npy array")
    try:
        return open_npy(Path(path), NPY_MAX_BYTES)
    except NpyError as e:
        raise InputError(f"{path} is not a readable .npy array ({e})") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
