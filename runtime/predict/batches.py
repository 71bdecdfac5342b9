"""The inputs of ``edgecnn predict`` cut into batches, and each batch decoded into pixels.

A batch holds up to :data:`BATCH_SIZE` images of one kind: uint8 (pictures and uint8
``.npy`` arrays) or float (other arrays, converted as
:func:`~edgecnn.runtime.preprocess.to_batch` converts them). Mixing the two would change
results: the backends map uint8 pixels through a table and quantize floats, and both
must give exactly what classifying the image alone gives. :func:`decode` needs nothing
but its arguments, so it runs in a worker process as well as here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.predict.inputs import NpyFile, Refused, Source, open_npy_images

#: Images per batch: the chunk the LiteRT and onnxruntime backends run at once.
BATCH_SIZE = 256


@dataclass(frozen=True)
class NpySlice:
    """Images ``start`` to ``stop`` of a ``.npy`` array."""

    file: NpyFile
    start: int
    stop: int


#: One piece of a batch: a picture's path, part of an array, or a refused input.
Item = str | NpySlice | Refused


@dataclass(frozen=True)
class Batch:
    """The inputs of one batch, in order, and the kind of images they make."""

    items: tuple[Item, ...]
    count: int
    uint8: bool

    def names(self) -> Iterator[str]:
        """The name of each input, as results and errors give it."""
        for item in self.items:
            if isinstance(item, NpySlice):
                yield from map(item.file.name, range(item.start, item.stop))
            else:
                yield item if isinstance(item, str) else item.path

    @property
    def pictures(self) -> int:
        """How many of the items are pictures (to decode) rather than arrays."""
        return sum(isinstance(item, str) for item in self.items)


@dataclass
class Decoded:
    """A job's pixels: one row per input that could be read, and why the others could not.

    ``failed`` maps positions in the job to messages; ``images`` holds the other inputs
    in order (None when there are none).
    """

    images: np.ndarray | None
    failed: dict[int, str]


def make_batches(sources: Sequence[Source], batch_size: int = BATCH_SIZE) -> Iterator[Batch]:
    """``sources`` in batches of at most ``batch_size`` images, each of one kind, in order.

    Arrays are cut where a batch is full, so that pictures and arrays fill batches alike.
    """
    items: list[Item] = []
    count = 0
    uint8: bool | None = None  # the batch's kind, once an input that has one is in it
    for source in sources:
        kind = _kind(source)
        if items and None not in (kind, uint8) and kind != uint8:
            yield Batch(tuple(items), count, uint8 is not False)
            items, count, uint8 = [], 0, None
        uint8 = kind if uint8 is None else uint8
        size = source.count if isinstance(source, NpyFile) else 1
        start = 0
        while start < size:
            if count == batch_size:
                yield Batch(tuple(items), count, uint8 is not False)
                items, count = [], 0
            take = min(batch_size - count, size - start)
            piece = NpySlice(source, start, start + take) if isinstance(source, NpyFile) else source
            items.append(piece)
            count += take
            start += take
    if items:
        yield Batch(tuple(items), count, uint8 is not False)


def _kind(source: Source) -> bool | None:
    """Whether ``source`` makes uint8 images (False: float); None for a refused input."""
    if isinstance(source, NpyFile):
        return source.uint8
    return None if isinstance(source, Refused) else True


def decode(job: Batch, shape: tuple[int, int, int], light_on_dark: bool) -> Decoded:
    """The pixels of ``job``'s inputs, as classifying each alone would see them."""
    rows = np.empty((job.count, *shape), np.uint8 if job.uint8 else np.float32)
    readable = np.ones(job.count, bool)
    failed: dict[int, str] = {}
    pictures: list[tuple[int, str]] = []
    position = 0
    for item in job.items:
        if isinstance(item, str):
            pictures.append((position, item))
            position += 1
        elif isinstance(item, Refused):
            failed[position] = item.reason
            position += 1
        else:
            bad = _npy_rows(item, shape, rows[position : position + item.stop - item.start])
            failed.update({position + k: why for k, why in bad.items()})
            position += item.stop - item.start
    if pictures:
        pixels, bad = decode_pictures([path for _, path in pictures], shape, light_on_dark)
        at = [p for p, _ in pictures]
        rows[at] = pixels
        failed.update({at[k]: why for k, why in bad.items()})
    if failed:
        readable[list(failed)] = False
        rows = rows[readable]
    return Decoded(rows if len(rows) else None, failed)


def _npy_rows(piece: NpySlice, shape: tuple[int, int, int], out: np.ndarray) -> dict[int, str]:
    """Fill ``out`` with the piece's images; those that cannot be, by position in ``out``."""
    from edgecnn.runtime.preprocess import to_batch

    file = piece.file
    try:
        array = open_npy_images(file.path)
    except InputError as e:
        return dict.fromkeys(range(len(out)), str(e))
    if (1 if file.single else len(array)) != file.count or (array.dtype == np.uint8) != file.uint8:
        return dict.fromkeys(range(len(out)), f"{file.path} changed while being read")
    images = array[None] if file.single else array[piece.start : piece.stop]
    try:
        # np.asarray: a plain array, as the images would be in memory (a memmap view is not).
        out[:] = to_batch(np.asarray(images), shape)
        return {}
    except InputError:
        pass
    bad = {}
    for k in range(len(out)):  # find the images at fault, and name them
        try:
            out[k] = to_batch(np.asarray(images[k]), shape)[0]
        except InputError as e:
            bad[k] = f"{file.name(piece.start + k)}: {e}"
    return bad


def decode_pictures(
    paths: Sequence[str], shape: tuple[int, int, int], light_on_dark: bool
) -> tuple[np.ndarray, dict[int, str]]:
    """``(N, *shape)`` uint8 pixels of the pictures, and the pictures that cannot be read.

    Exactly :func:`~edgecnn.runtime.images.load_image`'s pixels (greyscale or colour,
    resized, inverted when dark-on-light for a light-on-dark model): plain small PNGs
    through :mod:`edgecnn.runtime.predict.small_png`, every other picture through ``load_image``.
    """
    from edgecnn.runtime.images import light_borders, load_image
    from edgecnn.runtime.predict import small_png

    side, width, channels = shape
    pixels = np.zeros((len(paths), *shape), np.uint8)
    plain: list[bytes] = []
    at: list[int] = []
    others: list[int] = []
    for i, path in enumerate(paths):
        data = small_png.read_small(path) if channels == 1 and side == width else None
        rows = small_png.filtered_rows(data, side) if data is not None else None
        if rows is None:
            others.append(i)
        else:
            plain.append(rows)
            at.append(i)
    if plain:
        images = small_png.unfilter(plain, side)
        if light_on_dark:
            light = light_borders(images)
            images[light] = 255 - images[light]
        pixels[at, :, :, 0] = images
    failed: dict[int, str] = {}
    for i in others:
        try:
            image = load_image(paths[i], None, side=side, light_on_dark=light_on_dark,
                               channels=channels)  # fmt: skip
        except InputError as e:
            failed[i] = str(e) if str(e).startswith(paths[i]) else f"{paths[i]}: {e}"
            continue
        pixels[i] = image.reshape(shape)
    return pixels, failed
