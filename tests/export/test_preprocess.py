"""Camera frames in C: ``edgecnn_preprocess`` against its numpy twin, byte for byte.

The tiny model's library is generated and built for this machine, and its
``edgecnn_preprocess`` called through ctypes on real pictures (Fashion-MNIST test images
rendered as camera frames, in every format, odd sizes and strides, crops) and on random
ones; ``edgecnn.runtime.camera_frames`` must give the same bytes. Models of other shapes
(colour, non-square, one pixel) get ``templates/preprocess.c`` built alone against a
header of their shape. Bad frames get their error code and leave the output alone, under
AddressSanitizer and UndefinedBehaviorSanitizer too.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcu_helpers import TINY_INT8, generate_tiny, tiny_metadata

from edgecnn.export.mcu import cgen, toolchain
from edgecnn.runtime import load_classifier
from edgecnn.runtime.camera_frames import (
    ERROR_ARGUMENT,
    ERROR_CROP,
    ERROR_SIZE,
    FORMATS,
    INVERT_CODES,
    PIXEL_BYTES,
    FrameError,
    preprocess_frame,
)
from edgecnn.runtime.frames import Crop
from edgecnn.runtime.images import LIGHT_BORDER, light_borders, resize_array

#: What the output buffer holds before a call, and the bytes after it that must stay so.
SENTINEL, GUARD = 0xA5, 64
INVERTS = {code: name for name, code in INVERT_CODES.items()}
INT32_MAX = 2**31 - 1


class CropBox(ctypes.Structure):
    """``edgecnn_crop``."""

    _fields_ = [(name, ctypes.c_int32) for name in ("x", "y", "width", "height")]


def _bind(path: Path, shape: tuple[int, int, int], light_on_dark: bool) -> SimpleNamespace:
    handle = ctypes.CDLL(str(path))
    handle.edgecnn_preprocess.restype = ctypes.c_int
    handle.edgecnn_preprocess.argtypes = [
        ctypes.c_char_p, ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
        ctypes.POINTER(CropBox), ctypes.c_int, ctypes.c_void_p,
    ]  # fmt: skip
    return SimpleNamespace(handle=handle, shape=shape, light_on_dark=light_on_dark)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model's generated library, built for this machine."""
    folder = tmp_path_factory.mktemp("tiny_c")
    meta = tiny_metadata()
    library = generate_tiny(folder)
    built = toolchain.build_shared([folder / cgen.SOURCE], folder / "libtiny.so", (f"-I{folder}",))
    lib = _bind(built, library.input_shape, meta.light_on_dark)
    lib.folder, lib.header = folder, library.files[cgen.HEADER]
    lib.handle.edgecnn_classify.restype = ctypes.c_int
    lib.handle.edgecnn_classify.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def _variant_header(header: str, shape: tuple[int, int, int], light_on_dark: bool) -> str:
    """The tiny model's header with another input shape and polarity."""
    height, width, channels = shape
    values = {
        "INPUT_HEIGHT": height, "INPUT_WIDTH": width, "INPUT_CHANNELS": channels,
        "INPUT_SIZE": height * width * channels, "LIGHT_ON_DARK": int(light_on_dark),
    }  # fmt: skip
    for name, value in values.items():
        header, count = re.subn(rf"#define EDGECNN_{name} \d+", f"#define EDGECNN_{name} {value}",
                                header)  # fmt: skip
        assert count == 1, name
    return header


def _preprocess_source() -> str:
    """templates/preprocess.c alone, after the includes edgecnn_model.c gives it."""
    text = resources.files("edgecnn.export.mcu").joinpath("templates/preprocess.c").read_text()
    return '#include <stddef.h>\n#include <stdint.h>\n#include "edgecnn_model.h"\n\n' + text


VARIANTS = [((32, 24, 3), True), ((7, 5, 1), False), ((1, 1, 3), True), ((3, 40, 1), True),
            ((24, 32, 3), False)]  # fmt: skip


@pytest.fixture(scope="module")
def variants(tiny, tmp_path_factory):
    """preprocess.c built alone for models of other shapes and polarities."""
    built = {}
    for shape, light_on_dark in VARIANTS:
        folder = tmp_path_factory.mktemp("variant")
        (folder / cgen.HEADER).write_text(_variant_header(tiny.header, shape, light_on_dark))
        (folder / "preprocess.c").write_text(_preprocess_source())
        path = toolchain.build_shared([folder / "preprocess.c"], folder / "libvariant.so",
                                      (f"-I{folder}",))  # fmt: skip
        built[shape, light_on_dark] = _bind(path, shape, light_on_dark)
    return built


def call_c(lib, frame, fmt, width, height, stride, crop=None, invert=INVERT_CODES["auto"],
           pixels=True):  # fmt: skip
    """``edgecnn_preprocess`` through ctypes: its return code and the output buffer."""
    size = int(np.prod(lib.shape))
    out = (ctypes.c_uint8 * (size + GUARD))(*([SENTINEL] * (size + GUARD)))
    box = ctypes.byref(CropBox(*crop)) if crop is not None else None
    code = FORMATS[fmt] if isinstance(fmt, str) else fmt
    result = lib.handle.edgecnn_preprocess(frame, code, width, height, stride, box, invert,
                                           out if pixels else None)  # fmt: skip
    buffer = np.frombuffer(bytes(out), dtype=np.uint8)
    assert (buffer[size:] == SENTINEL).all(), "written past the output buffer"
    return result, buffer[:size].reshape(lib.shape)


def assert_same(lib, frame, fmt, width, height, stride, crop=None, invert="auto"):
    """C and numpy give the same bytes; the C result."""
    code, c_pixels = call_c(lib, frame, fmt, width, height, stride, crop, INVERT_CODES[invert])
    assert code == 0
    twin = preprocess_frame(frame, fmt, width, height, stride, crop, invert, lib.shape,
                            lib.light_on_dark)  # fmt: skip
    assert twin.dtype == np.uint8 and twin.shape == lib.shape
    np.testing.assert_array_equal(c_pixels, twin)
    return c_pixels


# ---- frames as cameras deliver them --------------------------------------------------------


def encode(rgb: np.ndarray, fmt: str, pad: int = 0, rng=None) -> tuple[bytes, int]:
    """An ``(H, W, 3)`` uint8 RGB picture as ``fmt`` rows, each followed by ``pad`` junk
    bytes but the last; the bytes and the stride."""
    r, g, b = (rgb[:, :, i].astype(np.uint32) for i in range(3))
    if fmt == "grey8":
        rows = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    elif fmt == "rgb888":
        rows = rgb.reshape(rgb.shape[0], -1)
    else:
        order = "<u2" if fmt == "rgb565" else ">u2"
        word = ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).astype(order)
        rows = word.view(np.uint8).reshape(rgb.shape[0], -1)
    rng = rng or np.random.default_rng(0)
    junk = rng.integers(0, 256, (rows.shape[0], pad), dtype=np.uint8)
    padded = np.concatenate([rows, junk], axis=1).reshape(-1)
    stride = rows.shape[1] + pad
    return padded[: len(padded) - pad].tobytes(), stride


def render(image: np.ndarray, width: int, height: int, side: int, dark_on_light: bool,
           rng) -> np.ndarray:  # fmt: skip
    """A 28x28 picture enlarged to ``side`` (nearest), centred in a ``width`` x ``height``
    RGB frame (cut off where it does not fit), tinted, with noise: a garment on a light
    table (``dark_on_light``) or lit against a dark background."""
    index = np.arange(side) * image.shape[0] // side
    big = image[index][:, index].astype(np.int32)
    frame = np.zeros((height, width), dtype=np.int32)
    top, left = (height - side) // 2, (width - side) // 2
    fy, fx = max(top, 0), max(left, 0)
    cut = big[fy - top : fy - top + height - fy, fx - left : fx - left + width - fx]
    frame[fy : fy + cut.shape[0], fx : fx + cut.shape[1]] = cut
    if dark_on_light:
        frame = 235 - frame * 235 // 255
    tint = np.stack([frame, frame * 9 // 10, frame * 8 // 10 + 12], axis=-1)
    noisy = tint + rng.integers(-6, 7, tint.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


#: (width, height, side, dark_on_light, pad, crop, invert): frames a camera gives, and odd ones.
CASES = [
    (320, 240, 200, True, 0, None, "auto"),
    (97, 131, 90, False, 3, (5, 17, 81, 77), "auto"),
    (641, 479, 300, True, 1, (100, 0, 441, 479), "yes"),
    (28, 28, 28, False, 0, None, "no"),
    (17, 9, 9, True, 5, None, "auto"),  # smaller than the model: enlarged
    (160, 120, 120, True, 2, (0, 0, 160, 120), "auto"),  # the whole frame, squashed
    (33, 500, 33, False, 0, (0, 200, 33, 29), "auto"),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fashion_frames_give_the_same_bytes_in_c_and_numpy(tiny, test_images, fmt):
    rng = np.random.default_rng(FORMATS[fmt])
    for k, (width, height, side, dark, pad, crop, invert) in enumerate(CASES):
        for image in test_images.x[k * 12 : k * 12 + 12]:
            frame, stride = encode(render(image, width, height, side, dark, rng), fmt, pad, rng)
            assert_same(tiny, frame, fmt, width, height, stride, crop, invert)


def test_auto_polarity_inverts_a_garment_on_a_light_table_only(tiny, test_images):
    """AUTO is the runtime's rule: a light border means dark-on-light, inverted."""
    rng = np.random.default_rng(1)
    for dark in (True, False):
        frame, stride = encode(render(test_images.x[0], 320, 240, 200, dark, rng), "rgb888")
        _, auto = call_c(tiny, frame, "rgb888", 320, 240, stride)
        _, plain = call_c(tiny, frame, "rgb888", 320, 240, stride, None, INVERT_CODES["no"])
        _, inverted = call_c(tiny, frame, "rgb888", 320, 240, stride, None, INVERT_CODES["yes"])
        np.testing.assert_array_equal(inverted, 255 - plain)
        np.testing.assert_array_equal(auto, inverted if dark else plain)
        assert light_borders(plain[np.newaxis, :, :, 0])[0] == dark


@pytest.mark.parametrize(("shape", "light_on_dark"), VARIANTS)
def test_models_of_other_shapes_get_the_same_bytes(variants, test_images, shape, light_on_dark):
    """Colour models (grey frames repeated into R, G, B), non-square and one-pixel inputs."""
    lib = variants[shape, light_on_dark]
    rng = np.random.default_rng(sum(shape))
    for k, fmt in enumerate(FORMATS):
        for width, height, side, dark, pad, crop, invert in CASES[:5]:
            picture = render(test_images.x[k], width, height, side, dark, rng)
            frame, stride = encode(picture, fmt, pad, rng)
            assert_same(lib, frame, fmt, width, height, stride, crop, invert)


@st.composite
def frames(draw):
    """A small frame of random pixels: format, size, padding, crop, polarity."""
    fmt = draw(st.sampled_from(list(FORMATS)))
    width, height = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    pad = draw(st.integers(0, 5))
    crop = None
    if draw(st.booleans()):
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        crop = (x, y, draw(st.integers(1, width - x)), draw(st.integers(1, height - y)))
    invert = draw(st.sampled_from(list(INVERT_CODES)))
    seed = draw(st.integers(0, 2**32 - 1))
    return fmt, width, height, pad, crop, invert, seed


@settings(max_examples=150, deadline=None)
@given(frames())
def test_random_frames_give_the_same_bytes(tiny, variants, case):
    fmt, width, height, pad, crop, invert, seed = case
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 200)  # a random range, so that polarity goes either way
    picture = rng.integers(low, low + 56, (height, width, 3), dtype=np.uint8)
    frame, stride = encode(picture, fmt, pad, rng)
    for lib in (tiny, variants[(32, 24, 3), True]):
        assert_same(lib, frame, fmt, width, height, stride, crop, invert)


def test_a_constant_frame_gives_its_value_and_a_crop_reads_only_itself(tiny):
    """The area mean of one value is that value, whatever the sizes; padding is never read."""
    for value in (0, 1, 127, 128, 254, 255):
        for width, height in ((1, 1), (28, 28), (29, 27), (1000, 3), (3, 1000)):
            picture = np.full((height, width, 3), value, dtype=np.uint8)
            frame, stride = encode(picture, "rgb888", 7, np.random.default_rng(value))
            _, pixels = call_c(tiny, frame, "rgb888", width, height, stride, None, 0)
            assert (pixels == value).all()
    picture = np.zeros((50, 60, 3), dtype=np.uint8)
    picture[10:30, 20:45] = 200
    frame, stride = encode(picture, "rgb888")
    _, pixels = call_c(tiny, frame, "rgb888", 60, 50, stride, (20, 10, 25, 20), 0)
    assert (pixels == 200).all()


def test_rgb565_widens_5_and_6_bits_by_repeating_their_top_bits(variants):
    """A one-pixel RGB model shows each widened value exactly: 0 -> 0, 31 and 63 -> 255."""
    lib = variants[(1, 1, 3), True]
    for r, g, b in ((0, 0, 0), (31, 63, 31), (1, 1, 1), (16, 32, 8), (4, 17, 30)):
        word = r << 11 | g << 5 | b
        for fmt, data in (("rgb565", word.to_bytes(2, "little")),
                          ("rgb565_be", word.to_bytes(2, "big"))):  # fmt: skip
            _, pixel = call_c(lib, data, fmt, 1, 1, 2, None, INVERT_CODES["no"])
            expected = [(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)]
            assert pixel.reshape(-1).tolist() == expected


def test_grey_is_pillows_l_conversion(tiny):
    """Every (R, G, B) the L formula can meet, against Pillow's own convert("L")."""
    from PIL import Image

    rng = np.random.default_rng(3)
    colours = np.concatenate([rng.integers(0, 256, (4000, 3)), [[0, 0, 0], [255, 255, 255]]])
    picture = colours.astype(np.uint8)[np.newaxis]
    expected = np.asarray(Image.fromarray(picture).convert("L"))[0]
    for i, colour in enumerate(colours):
        frame = bytes(colour.astype(np.uint8))
        _, pixels = call_c(tiny, frame, "rgb888", 1, 1, 3, None, INVERT_CODES["no"])
        assert (pixels == expected[i]).all()


def test_the_c_constants_are_the_runtimes(tiny):
    source = _preprocess_source()
    assert f"#define EC_LIGHT_BORDER {LIGHT_BORDER}u" in source
    defines = dict(re.findall(r"#define (EDGECNN_\w+) \(?(-?\d+)\)?", tiny.header))
    assert {name: int(defines[f"EDGECNN_FRAME_{name.upper()}"]) for name in FORMATS} == FORMATS
    assert {name: int(defines[f"EDGECNN_INVERT_{name.upper()}"]) for name in INVERT_CODES} \
        == INVERT_CODES  # fmt: skip
    errors = {"ARGUMENT": ERROR_ARGUMENT, "SIZE": ERROR_SIZE, "CROP": ERROR_CROP}
    assert {name: int(defines[f"EDGECNN_ERROR_{name}"]) for name in errors} == errors
    assert len(set(errors.values())) == 3 and max(errors.values()) < 0


# ---- bad frames ---------------------------------------------------------------------------

GOOD = {"frame": bytes(320 * 240 * 2), "fmt": "rgb565", "width": 320, "height": 240,
        "stride": 640, "crop": None, "invert": INVERT_CODES["auto"]}  # fmt: skip
BAD = [
    ({"frame": None}, ERROR_ARGUMENT),
    ({"pixels": False}, ERROR_ARGUMENT),
    ({"fmt": 0}, ERROR_ARGUMENT),
    ({"fmt": 5}, ERROR_ARGUMENT),
    ({"fmt": -1}, ERROR_ARGUMENT),
    ({"invert": -1}, ERROR_ARGUMENT),
    ({"invert": 3}, ERROR_ARGUMENT),
    ({"width": 0}, ERROR_SIZE),
    ({"width": -320}, ERROR_SIZE),
    ({"height": 0}, ERROR_SIZE),
    ({"height": -1}, ERROR_SIZE),
    ({"width": 65536, "stride": 65536 * 2}, ERROR_SIZE),
    ({"height": 65536}, ERROR_SIZE),
    ({"stride": 639}, ERROR_SIZE),
    ({"stride": 0}, ERROR_SIZE),
    ({"stride": -640}, ERROR_SIZE),
    ({"fmt": "grey8", "stride": 319}, ERROR_SIZE),
    ({"fmt": "rgb888", "stride": 959}, ERROR_SIZE),
    ({"fmt": "rgb565_be", "stride": 1}, ERROR_SIZE),
    ({"width": 0, "crop": (-1, 0, 1, 1)}, ERROR_SIZE),
    ({"crop": (-1, 0, 10, 10)}, ERROR_CROP),
    ({"crop": (0, -1, 10, 10)}, ERROR_CROP),
    ({"crop": (0, 0, 0, 10)}, ERROR_CROP),
    ({"crop": (0, 0, 10, 0)}, ERROR_CROP),
    ({"crop": (0, 0, -5, 10)}, ERROR_CROP),
    ({"crop": (311, 0, 10, 10)}, ERROR_CROP),
    ({"crop": (0, 231, 10, 10)}, ERROR_CROP),
    ({"crop": (0, 0, 321, 240)}, ERROR_CROP),
    ({"crop": (320, 0, 1, 1)}, ERROR_CROP),
    ({"crop": (INT32_MAX, 0, INT32_MAX, 1)}, ERROR_CROP),
    ({"crop": (1, 1, INT32_MAX, INT32_MAX)}, ERROR_CROP),
    ({"crop": (-INT32_MAX - 1, 0, INT32_MAX, 1)}, ERROR_CROP),
]


@pytest.mark.parametrize(("change", "error"), BAD)
def test_a_bad_frame_is_an_error_code_and_the_pixels_stay_as_they_were(tiny, change, error):
    args = {**GOOD, **change}
    code, pixels = call_c(tiny, args["frame"], args["fmt"], args["width"], args["height"],
                          args["stride"], args["crop"], args["invert"],
                          change.get("pixels", True))  # fmt: skip
    assert code == error
    assert (pixels == SENTINEL).all()
    if "pixels" in change:
        return
    fmt = args["fmt"] if isinstance(args["fmt"], str) else f"format {args['fmt']}"
    invert = INVERTS.get(args["invert"], f"code {args['invert']}")
    with pytest.raises(FrameError) as raised:
        preprocess_frame(args["frame"], fmt, args["width"], args["height"], args["stride"],
                         args["crop"], invert)  # fmt: skip
    assert raised.value.code == error
    assert "\n" not in str(raised.value)


def test_the_twin_refuses_a_buffer_shorter_than_the_frame():
    with pytest.raises(FrameError, match="take 7,680 bytes") as raised:
        preprocess_frame(bytes(7679), "rgb888", 40, 64)
    assert raised.value.code == ERROR_SIZE
    # The last row need not be padded.
    assert preprocess_frame(bytes(3 * 128 + 40 * 3), "rgb888", 40, 4, 128).shape == (28, 28, 1)


def test_the_twin_takes_a_crop_object_and_arrays(test_images):
    picture = np.ascontiguousarray(np.stack([test_images.x[0]] * 3, axis=-1))
    as_array = preprocess_frame(picture, "rgb888", 28, 28, crop=Crop((2, 3, 20, 21)))
    as_bytes = preprocess_frame(picture.tobytes(), "rgb888", 28, 28, crop=(2, 3, 20, 21))
    np.testing.assert_array_equal(as_array, as_bytes)
    with pytest.raises(FrameError):
        preprocess_frame(picture.astype(np.float32), "rgb888", 28, 28)


# ---- the largest frames ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_widest_and_tallest_frames(tiny, fmt):
    """65535 pixels across or down, at full brightness: row sums at their largest."""
    size = PIXEL_BYTES[fmt]
    white = bytes([255]) * (65535 * size)
    for width, height in ((65535, 1), (1, 65535)):
        code, pixels = call_c(tiny, white, fmt, width, height, width * size, None, 0)
        assert code == 0 and (pixels == 255).all()
    rng = np.random.default_rng(5)
    for width, height in ((65535, 3), (3, 65535)):
        frame = rng.integers(0, 256, width * height * size, dtype=np.uint8).tobytes()
        assert_same(tiny, frame, fmt, width, height, width * size, (0, 0, width, height))


def test_sums_past_32_bits(tiny):
    """Crops whose sums pass 2^32: 4700 x 4700 of 250, and 28 x 28 blocks of 168 x 168."""
    side = 4700
    code, pixels = call_c(tiny, bytes([250]) * side * side, "grey8", side, side, side, None, 0)
    assert code == 0 and (pixels == 250).all()
    blocks = np.random.default_rng(6).integers(200, 256, (28, 28), dtype=np.uint8)
    frame = np.kron(blocks, np.ones((168, 168), dtype=np.uint8))
    _, pixels = call_c(tiny, frame.tobytes(), "grey8", 28 * 168, 28 * 168, 28 * 168, None, 0)
    np.testing.assert_array_equal(pixels[:, :, 0], blocks)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux" or sys.maxsize < 2**32, reason="Linux mmap, 64-bit")
def test_the_largest_frame_of_all(tiny, tmp_path):
    """65535 x 65535 bytes of 255 (4 GiB of address space, one small file mapped over and
    over): every sum at its largest, the 64-bit ones included."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    side, chunk = 65535, 64 << 20
    total = -(-side * side // chunk) * chunk
    tile = tmp_path / "white"
    tile.write_bytes(bytes([255]) * chunk)
    # Linux's PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE: address space only.
    base = libc.mmap(None, total, 0, 0x02 | 0x20 | 0x4000, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    try:
        with tile.open("rb") as f:
            for offset in range(0, total, chunk):
                # PROT_READ, MAP_SHARED | MAP_FIXED: the tile, at its place in the frame.
                got = libc.mmap(base + offset, chunk, 0x1, 0x01 | 0x10, f.fileno(), 0)
                assert got == base + offset
        frame = ctypes.cast(base, ctypes.c_char_p)
        code, pixels = call_c(tiny, frame, "grey8", side, side, side, None, 0)
        assert code == 0 and (pixels == 255).all()
        code, pixels = call_c(tiny, frame, "grey8", side, side, side, (1, 0, side - 1, side), 2)
        assert code == 0 and (pixels == 0).all()  # a light border: inverted
    finally:
        libc.munmap(base, total)


# ---- sanitizers, the Cortex-M4 -------------------------------------------------------------

SANITIZER_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgecnn_model.h"

static uint64_t seed = 1;
static int failures = 0;

static unsigned next(unsigned n)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(seed >> 33) % n;
}

/* One call on a frame of exactly the bytes it needs (any read past them is reported), an
 * output buffer of exactly EDGECNN_INPUT_SIZE bytes; pixels untouched on an error. */
static void check(int format, int32_t width, int32_t height, int32_t stride,
                  const edgecnn_crop *crop, int invert, int expect)
{
    size_t bytes = format == EDGECNN_FRAME_GREY8 ? 1 : format == EDGECNN_FRAME_RGB888 ? 3 : 2;
    size_t need = expect == 0 ? (size_t)(height - 1) * (size_t)stride + (size_t)width * bytes : 1;
    uint8_t *frame = malloc(need), *pixels = malloc(EDGECNN_INPUT_SIZE);
    size_t i;
    int got;
    for (i = 0; i < need; ++i) {
        frame[i] = (uint8_t)next(256);
    }
    memset(pixels, 0xA5, EDGECNN_INPUT_SIZE);
    got = edgecnn_preprocess(frame, format, width, height, stride, crop, invert, pixels);
    if (got != expect) {
        printf("format %d %dx%d stride %d: %d, not %d\n", format, (int)width, (int)height,
               (int)stride, got, expect);
        ++failures;
    }
    for (i = 0; got != 0 && i < EDGECNN_INPUT_SIZE; ++i) {
        failures += pixels[i] != 0xA5;
    }
    free(frame);
    free(pixels);
}

int main(void)
{
    static const edgecnn_crop bad[] = {
        {-1, 0, 1, 1}, {0, -1, 1, 1}, {0, 0, 0, 1}, {0, 0, 1, 0}, {2147483647, 0, 2147483647, 1},
        {1, 1, 2147483647, 2147483647}, {-2147483647 - 1, 0, 2147483647, 1}, {9, 0, 2, 1},
        {0, 9, 1, 2}};
    uint8_t pixels[EDGECNN_INPUT_SIZE];
    int format, i, n = 0;
    for (format = 1; format <= 4; ++format) {
        int bytes = format == 1 ? 1 : format == 2 ? 3 : 2;
        edgecnn_crop corner = {9, 9, 1, 1}, all = {0, 0, 10, 10};
        check(format, 1, 1, bytes, NULL, 2, 0);
        check(format, 65535, 1, 65535 * bytes, NULL, 2, 0);
        check(format, 1, 65535, bytes, NULL, 1, 0);
        check(format, 2, 65535, 2 * bytes + 3, NULL, 0, 0);
        check(format, 10, 10, 10 * bytes, &corner, 2, 0);
        check(format, 10, 10, 10 * bytes + 1, &all, 2, 0);
        check(format, 10, 10, 10 * bytes - 1, NULL, 2, EDGECNN_ERROR_SIZE);
        check(format, 0, 10, 10, NULL, 2, EDGECNN_ERROR_SIZE);
        check(format, 10, -1, 10 * bytes, NULL, 2, EDGECNN_ERROR_SIZE);
        check(format, 65536, 1, 65536 * bytes, NULL, 2, EDGECNN_ERROR_SIZE);
        check(format, 10, 10, -10 * bytes, NULL, 2, EDGECNN_ERROR_SIZE);
        check(format, 10, 10, 10 * bytes, NULL, 3, EDGECNN_ERROR_ARGUMENT);
        check(format, 10, 10, 10 * bytes, NULL, -1, EDGECNN_ERROR_ARGUMENT);
        for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); ++i) {
            check(format, 10, 10, 10 * bytes, &bad[i], 2, EDGECNN_ERROR_CROP);
        }
    }
    check(0, 10, 10, 10, NULL, 2, EDGECNN_ERROR_ARGUMENT);
    check(5, 10, 10, 10, NULL, 2, EDGECNN_ERROR_ARGUMENT);
    if (edgecnn_preprocess(NULL, 1, 1, 1, 1, NULL, 2, pixels) != EDGECNN_ERROR_ARGUMENT ||
        edgecnn_preprocess(pixels, 1, 1, 1, 1, NULL, 2, NULL) != EDGECNN_ERROR_ARGUMENT) {
        ++failures;
    }
    for (n = 0; n < 3000; ++n) {
        int32_t width = 1 + (int32_t)next(200), height = 1 + (int32_t)next(200);
        int bytes;
        edgecnn_crop box;
        format = 1 + (int)next(4);
        bytes = format == 1 ? 1 : format == 2 ? 3 : 2;
        box.x = (int32_t)next((unsigned)width);
        box.y = (int32_t)next((unsigned)height);
        box.width = 1 + (int32_t)next((unsigned)(width - box.x));
        box.height = 1 + (int32_t)next((unsigned)(height - box.y));
        check(format, width, height, width * bytes + (int32_t)next(5), next(2) ? &box : NULL,
              (int)next(3), 0);
    }
    printf("%d failures\n", failures);
    return failures != 0;
}
"""


@pytest.mark.parametrize("model", ["tiny", "colour"])
def test_sanitizers_find_nothing_on_hostile_and_edge_frames(tiny, tmp_path, model):
    """AddressSanitizer and UndefinedBehaviorSanitizer: frames of exactly their bytes, the
    largest sides, corners, odd strides, every refusal, and 3,000 random frames and crops."""
    cc = toolchain.host_compiler()
    assert cc is not None
    if model == "tiny":
        sources, include = [tiny.folder / cgen.SOURCE], tiny.folder
    else:
        include = tmp_path
        (tmp_path / cgen.HEADER).write_text(_variant_header(tiny.header, (32, 24, 3), True))
        (tmp_path / "preprocess.c").write_text(_preprocess_source())
        sources = [tmp_path / "preprocess.c"]
    (tmp_path / "driver.c").write_text(SANITIZER_DRIVER)
    program = tmp_path / "driver"
    toolchain.run(
        [cc, *toolchain.WARNINGS, "-O1", "-g", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all", f"-I{include}",
         *map(str, sources), str(tmp_path / "driver.c"), "-o", str(program)],
        "compiling with sanitizers",
    )  # fmt: skip
    env = {"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(program)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr
    assert "0 failures" in done.stdout


@pytest.mark.mcu
def test_the_cortex_m4_build_is_small_and_needs_nothing(tiny, tmp_path):
    """-Os for a Cortex-M4 with -Werror: no libc or libgcc routine (memset, a 64-bit
    division), a small function."""
    if toolchain.arm_compiler() is None:
        pytest.fail(f"{toolchain.ARM_GCC} is not installed", pytrace=False)
    (tmp_path / cgen.HEADER).write_text(tiny.header)
    (tmp_path / "preprocess.c").write_text(_preprocess_source())
    obj = tmp_path / "preprocess.o"
    toolchain.run([toolchain.ARM_GCC, *toolchain.WARNINGS, *toolchain.CORTEX_M4, "-Os",
                   f"-I{tmp_path}", "-c", str(tmp_path / "preprocess.c"), "-o", str(obj)],
                  "compiling for Cortex-M4")  # fmt: skip
    symbols = subprocess.run(["arm-none-eabi-nm", str(obj)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert [line for line in symbols.splitlines() if " U " in line] == []
    sizes = toolchain.run(["arm-none-eabi-size", str(obj)], "measuring")
    text, data, bss = (int(v) for v in sizes.splitlines()[1].split()[:3])
    assert data == bss == 0
    assert text < 1536


# ---- against the runtime's picture path -----------------------------------------------------


def test_answers_agree_with_the_runtimes_picture_path(tiny, test_images):
    """Fashion-MNIST pictures as 320x240 frames: the C path (edgecnn_preprocess, then
    edgecnn_classify) answers as the runtime does with Pillow on the centred square, on
    most frames (bench/camera_frames.py measures all 10,000)."""
    clf = load_classifier(TINY_INT8)
    rng = np.random.default_rng(7)
    dims = (ctypes.c_int32 * 5).in_dll(tiny.handle, "edgecnn_dims")
    work = ctypes.create_string_buffer(dims[4])
    scores = ctypes.create_string_buffer(dims[3])
    ours, theirs = [], []
    for image in test_images.x[:300]:
        picture = render(image, 320, 240, 200, True, rng)
        frame, stride = encode(picture, "rgb888")
        code, pixels = call_c(tiny, frame, "rgb888", 320, 240, stride)
        assert code == 0
        ours.append(tiny.handle.edgecnn_classify(pixels.tobytes(), work, scores))
        square = resize_array(picture[:, 40:280], clf.input_shape)
        theirs.append(255 - square if light_borders(square[np.newaxis, :, :, 0])[0] else square)
    answers = clf.predict(np.stack(theirs)).argmax(1)
    assert np.mean(np.array(ours) == answers) >= 0.9


def test_the_readmes_picture_example_gives_the_c_paths_answer(tiny, test_images, tmp_path):
    """README.md's classify.c, built as it says, on PPM and PGM pictures of camera frames."""
    from string import Template

    readme = resources.files("edgecnn.export.formats").joinpath("templates/c.md").read_text()
    blocks = re.findall(r"```c\n(.*?)```", Template(readme).safe_substitute(), re.S)
    program = next(block for block in blocks if "int main" in block)
    (tmp_path / "classify.c").write_text(program)
    binary = tmp_path / "classify"
    cc = toolchain.host_compiler()
    assert cc is not None
    toolchain.run([cc, *toolchain.WARNINGS, "-O2", f"-I{tiny.folder}",
                   str(tiny.folder / cgen.SOURCE), str(tmp_path / "classify.c"), "-o",
                   str(binary)], "compiling the README's example")  # fmt: skip
    labels = tiny_metadata().labels
    dims = (ctypes.c_int32 * 5).in_dll(tiny.handle, "edgecnn_dims")
    work = ctypes.create_string_buffer(dims[4])
    probabilities = (ctypes.c_float * dims[3])()
    rng = np.random.default_rng(8)
    for i, fmt in enumerate(("rgb888", "grey8")):
        picture = render(test_images.x[i], 320, 240, 200, True, rng)
        frame, _ = encode(picture, fmt)
        magic = b"P6" if fmt == "rgb888" else b"P5"
        (tmp_path / "frame.ppm").write_bytes(magic + b"\n320 240\n255\n" + frame)
        done = subprocess.run([str(binary), str(tmp_path / "frame.ppm")], capture_output=True,
                              text=True, check=True)  # fmt: skip
        _, pixels = call_c(tiny, frame, fmt, 320, 240, 320 * PIXEL_BYTES[fmt])
        answer = tiny.handle.edgecnn_answer(pixels.tobytes(), work, probabilities)
        if answer == cgen.UNKNOWN:
            assert done.stdout == "unknown\n"
        else:
            label, probability = done.stdout.rsplit(" ", 1)
            assert label == labels[answer]
            assert float(probability) == pytest.approx(probabilities[answer], abs=5e-4)
    # Built with a threshold no probability reaches: every picture is "unknown".
    toolchain.run([cc, *toolchain.WARNINGS, "-O2", f"-I{tiny.folder}",
                   "-DEDGECNN_REJECT_BELOW=1.1f", str(tiny.folder / cgen.SOURCE),
                   str(tmp_path / "classify.c"), "-o", str(binary) + "-strict"],
                  "compiling the README's example")  # fmt: skip
    done = subprocess.run([str(binary) + "-strict", str(tmp_path / "frame.ppm")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout == "unknown\n"
    (tmp_path / "bad.ppm").write_bytes(b"P6\n320 240\n255\n" + bytes(10))
    done = subprocess.run([str(binary), str(tmp_path / "bad.ppm")], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2 and "truncated" in done.stderr
