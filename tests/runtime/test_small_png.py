"""The batch decoder of ``edgecnn predict`` gives exactly ``load_image``'s pixels and errors.

Plain small PNGs take the fast path (zlib, then one Pillow call unfiltering the whole
batch); every other picture, and every damaged file, must come out as ``load_image``
makes it. PNGs are written by hand here so that each of the five row filters, split
image data and extra chunks are all exercised.
"""

import io
import os
import zlib

import numpy as np
import pytest
from PIL import Image

from edgecnn.runtime import InputError
from edgecnn.runtime.images import light_borders, load_image
from edgecnn.runtime.predict import small_png
from edgecnn.runtime.predict.batches import decode_pictures

SHAPE = (28, 28, 1)


def chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filtered(image: np.ndarray, filters: list[int]) -> bytes:
    """The rows of a greyscale ``image``, each filtered as the PNG standard says."""
    raw = bytearray()
    prev = np.zeros(image.shape[1], np.int32)
    for y, row in enumerate(image.astype(np.int32)):
        kind = filters[y % len(filters)]
        left = np.concatenate([[0], row[:-1]])
        up_left = np.concatenate([[0], prev[:-1]])
        predicted = [0, left, prev, (left + prev) // 2, paeth(left, prev, up_left)][kind]
        raw += bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes()
        prev = row
    return bytes(raw)


def png(image, filters=(0, 1, 2, 3, 4), before=(), idat_parts=1, rows=None) -> bytes:
    height, width = image.shape
    ihdr = chunk(b"IHDR", width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\0\0\0\0")
    data = zlib.compress(rows if rows is not None else filtered(image, list(filters)))
    step = -(-len(data) // idat_parts)
    idat = b"".join(chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(before) + idat + chunk(b"IEND", b"")


def pillow_png(image, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG", **options)
    return out.getvalue()


def assert_same_as_load_image(paths, light_on_dark=True):
    pixels, failed = decode_pictures([str(p) for p in paths], SHAPE, light_on_dark)
    for i, path in enumerate(paths):
        try:
            expected = load_image(path, light_on_dark=light_on_dark)
        except InputError as e:
            assert failed[i] == (str(e) if str(e).startswith(str(path)) else f"{path}: {e}")
            continue
        assert i not in failed, failed[i]
        np.testing.assert_array_equal(pixels[i, :, :, 0], expected, err_msg=str(path))


def fast(path) -> bool:
    data = small_png.read_small(str(path))
    return data is not None and small_png.filtered_rows(data, 28) is not None


@pytest.fixture(scope="module")
def images(test_images):
    # Light-on-dark items, and one dark-on-light (inverted on the way in).
    return [test_images.x[i] for i in range(6)] + [255 - test_images.x[6]]


def test_every_row_filter_and_layout_takes_the_fast_path_exactly(images, tmp_path):
    gamma = chunk(b"gAMA", (45455).to_bytes(4, "big"))
    phys = chunk(b"pHYs", bytes(8) + b"\x01")
    files = {
        "none.png": png(images[0], [0]),
        "sub.png": png(images[1], [1]),
        "up.png": png(images[2], [2]),
        "average.png": png(images[3], [3]),
        "paeth.png": png(images[4], [4]),
        "mixed_split.png": png(images[5], [4, 3, 2, 1, 0], idat_parts=3),
        "chunks.png": png(images[0], [3, 4], before=[gamma, phys]),
        "dark_on_light.png": png(images[6]),
        "pillow.png": pillow_png(images[1]),
        "pillow_optimized.png": pillow_png(images[2], optimize=True),
        "stored.png": pillow_png(images[3], compress_level=0),
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    assert all(map(fast, paths))
    assert_same_as_load_image(paths)
    assert_same_as_load_image(paths, light_on_dark=False)


def test_other_pictures_go_through_load_image(images, tmp_path):
    text = chunk(b"tEXt", b"Comment\0made by hand")
    (tmp_path / "text_chunk.png").write_bytes(png(images[0], before=[text]))  # may turn it
    rgb = np.repeat(images[1][:, :, None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.kron(images[2], np.ones((2, 2), np.uint8))).save(tmp_path / "larger.png")
    Image.fromarray(images[3].astype(np.uint16) * 257).save(tmp_path / "sixteen_bit.png")
    Image.fromarray(images[4]).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(images[5]).save(tmp_path / "photo.jpg", quality=90)
    Image.fromarray(images[6]).save(tmp_path / "picture.bmp")
    paths = sorted(tmp_path.iterdir())
    assert len(paths) == 7 and not any(map(fast, paths))
    assert_same_as_load_image(paths)


def test_damaged_pngs_get_load_images_answer(images, tmp_path):
    good = png(images[0])
    idat = good.index(b"IDAT")
    rows = bytearray(filtered(images[1], [0]))
    rows[29 * 5] = 5  # no such filter type
    zlib_stream = bytearray(zlib.compress(filtered(images[2], [1])))
    zlib_stream[-1] ^= 0xFF  # the stream's own checksum
    files = {
        "bad_idat_crc.png": good[: idat + 10] + bytes([good[idat + 10] ^ 1]) + good[idat + 11 :],
        "junk_after_iend.png": good + b"junk",
        "truncated.png": good[: len(good) // 2],
        "no_iend.png": good[:-12],
        "bad_filter.png": png(images[1], rows=bytes(rows)),
        "bad_adler.png": (
            png(images[0])[:33] + chunk(b"IDAT", bytes(zlib_stream)) + chunk(b"IEND", b"")
        ),
        "empty.png": b"",
        "not_a_picture.png": b"hello",
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    assert not any(map(fast, paths))
    assert_same_as_load_image([*paths, tmp_path / "missing.png", tmp_path])


def test_light_borders_is_load_images_rule(test_images):
    from edgecnn.runtime.images import LIGHT_BORDER, border_mean

    images = np.concatenate([test_images.x[:200], 255 - test_images.x[:200]])
    # Borders right at the threshold, where a rounding slip would show.
    edge = np.full((28, 28), LIGHT_BORDER, np.uint8)
    above = edge.copy()
    above[0, 0] += 1
    images = np.concatenate([images, edge[None], above[None]])
    expected = [border_mean(image) > LIGHT_BORDER for image in images]
    assert light_borders(images).tolist() == expected
    assert expected[-2:] == [False, True]


def test_unusual_files_are_left_to_load_image_without_blocking(images, tmp_path):
    """No ``stat``: a folder, a pipe with no writer, an endless device, an empty or too
    large file all read as None at once, and a PNG cut short takes Pillow's path."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "large.png").write_bytes(bytes(small_png.MAX_BYTES + 1))
    for path in (tmp_path, fifo, "/dev/zero", tmp_path / "empty.png", tmp_path / "large.png"):
        assert small_png.read_small(str(path)) is None, path
    whole = tmp_path / "whole.png"
    Image.fromarray(images[0]).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:-1])
    assert fast(whole) and not fast(cut)
    assert_same_as_load_image([whole, cut])
