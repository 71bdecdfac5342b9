"""Pictures given to the runtime: what decoding refuses, and in how much memory.

Files that are no picture or not one of the formats read, small files that decode to huge
images (refused from their header, before any pixel is decoded), the largest pictures
under the pixel limit (decoded in bounded memory), 16-bit and sideways (EXIF) pictures.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke, peak_rss_mb
from PIL import Image
from shared import PICTURE, TINY

from edgecnn.runtime import InputError, load_classifier
from edgecnn.runtime.images import MAX_PIXELS, load_image

TINY_FLOAT = TINY / "model_float32.tflite"


@pytest.fixture(scope="module")
def clf():
    return load_classifier(TINY / "model_int8.tflite")


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# -- not a picture -------------------------------------------------------------------------


def test_bad_pictures(clf, tmp_path):
    """Empty, missing, text, GIF: each an InputError that says which and why."""
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        clf.predict(tmp_path / "empty.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(InputError, match="not a PNG, JPEG or BMP"):
        clf.predict(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="does not exist"):
        clf.predict(tmp_path / "missing.png")
    with pytest.raises(InputError, match="not a PNG"):
        clf.predict(b"GIF89a" + b"\0" * 100)
    gif = io.BytesIO()
    Image.new("L", (28, 28)).save(gif, format="GIF")
    with pytest.raises(InputError, match="not a PNG, JPEG or BMP"):
        clf.predict(gif.getvalue())


def test_errors_about_pictures_never_show_memory_addresses():
    with pytest.raises(InputError) as e:
        load_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert "0x" not in str(e.value) and "object at" not in str(e.value)


# -- small files, huge pictures ------------------------------------------------------------


def test_a_20000_pixel_square_picture_is_refused_before_decoding(clf, tmp_path):
    """A PNG header claiming 400 megapixels: refused in this process, memory unchanged."""
    import resource

    path = tmp_path / "huge.png"
    path.write_bytes(_huge_png_header(20000, 20000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match="20000x20000|megapixels|limit|large"):
        clf.predict(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew {grown_mb:.0f} MB"


def test_a_7000_pixel_square_16_bit_png_is_refused_before_decoding(tmp_path):
    """A real, small (under 200 kB) 16-bit PNG over the pixel limit: the error names its
    size and the limit, and the peak memory of a fresh interpreter does not grow."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(np.zeros((7000, 7000), np.uint16)))
    assert path.stat().st_size < 200_000  # a small file...
    code = (
        "from edgecnn.runtime.images import load_image\n"
        "from edgecnn.runtime import InputError\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "mark()\n"
        "try:\n    load_image(data)\nexcept InputError as e:\n    sys.stderr.write(str(e))\n"
    )
    before, after, stderr = peak_rss_mb(code, path)
    assert "7000x7000" in stderr and f"{MAX_PIXELS:,}" in stderr  # the limit is said
    assert after - before < 20, f"peak grew {after - before:.0f} MB"  # ...never decoded


@pytest.mark.parametrize(
    "mode,size", [("I;16", (4096, 4096)), ("RGBA", (4096, 4096)), ("JPEG", (10000, 8000))]
)
def test_the_worst_pictures_under_the_limit_decode_in_bounded_memory(tmp_path, mode, size):
    """Decoding takes the picture once in its own mode and makes no wider copy (peaks
    measured in bench/decode.py; decoding 7000x7000 once took 1.31 GB)."""
    width, height = size
    if mode == "JPEG":
        image = Image.linear_gradient("L").resize(size).convert("RGB")
        path = tmp_path / "huge.jpg"
        image.save(path, "JPEG", quality=50)
    else:
        ramp = np.tile(np.arange(width, dtype=np.uint32) % 65536, (height, 1))
        array = ramp.astype(np.uint16) if mode == "I;16" else None
        image = Image.fromarray(array) if mode == "I;16" else Image.new("RGBA", size, (9, 9, 9, 99))
        path = tmp_path / "huge.png"
        image.save(path, "PNG")
    del image
    code = (
        "from edgecnn.runtime.images import load_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "import numpy\n"
        "mark()\n"
        "out = load_image(data)\n"
        "assert out.shape == (28, 28) and out.dtype == numpy.uint8\n"
    )
    before, after, stderr = peak_rss_mb(code, path)
    full_rgba_mb = width * height * 4 / 2**20
    # Decoding itself needs the picture once in its own mode; no wider copy is made.
    assert after - before < 1.6 * full_rgba_mb, f"peak grew {after - before:.0f} MB"
    assert stderr == ""


def test_a_huge_png_prints_no_pillow_warning(tmp_path):
    """``edgecnn predict`` on a picture over the limit: one line, no DecompressionBomb."""
    path = tmp_path / "big.png"
    path.write_bytes(_png(np.zeros((10000, 10000), np.uint8)))
    result = invoke("predict", TINY_FLOAT, path)
    assert_one_line_error(result, "10000x10000")
    assert "DecompressionBomb" not in result.stderr


# -- pictures that decode, read right --------------------------------------------------------


def test_sixteen_bit_pictures_are_scaled_not_clipped():
    """A 16-bit PNG classifies as the 8-bit picture it was made from (x 257)."""
    clf = load_classifier(TINY / "model_float32.tflite")
    image = np.load(PICTURE.with_suffix(".npy"))
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint16) * 257).save(buffer, format="PNG")
    np.testing.assert_allclose(clf.predict(buffer.getvalue()), clf.predict(image), atol=1e-6)


def test_pictures_taken_sideways_are_turned_upright(test_images):
    """JPEGs saved rotated with an EXIF orientation, as phones save portraits, are turned
    upright: as many are classified right as of the same pictures saved upright."""
    clf = load_classifier(TINY / "model_float32.tflite")
    images, labels = test_images.x[:200], test_images.y[:200]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view", as phones save portraits
    correct_upright = correct_sideways = 0
    for image, label in zip(images, labels, strict=True):
        big = Image.fromarray(image).resize((112, 112), Image.Resampling.BICUBIC)
        upright, sideways = io.BytesIO(), io.BytesIO()
        big.save(upright, "JPEG", quality=95)
        big.transpose(Image.Transpose.ROTATE_90).save(sideways, "JPEG", quality=95, exif=exif)
        correct_upright += clf.classify(upright.getvalue())[0][0] == clf.labels[label]
        correct_sideways += clf.classify(sideways.getvalue())[0][0] == clf.labels[label]
    assert correct_upright > 130  # a small trained model (78% on the test set), JPEG at 4x
    assert abs(correct_sideways - correct_upright) <= 6  # ignoring EXIF: 2.5% against 91%
