"""Camera frames through the C library against the runtime's picture path: same answers?

    python bench/camera_frames.py [MODEL] [--images N] [--json]

MODEL is a folder holding ``model_int8.tflite`` and the full-integer form of it (an
exports folder: ``tflm/model_data.cc``, and ``c/`` when exported; or a folder with
``full_integer/model_int8.tflite``, as ``tests/data/tiny``, the default), or a full-integer
``.tflite`` file. Its C library (``c/edgecnn_model.c``, else generated here from the
full-integer flatbuffer) is built for this machine and called through ctypes.

Each Fashion-MNIST test picture becomes a 320x240 camera frame, a photo of the garment
on a light table: enlarged to 200x200 with Pillow's bilinear filter, its brightness taken
as ink darkening the table's colour (R, G, B = 236, 232, 224) in proportion, centred,
with Gaussian noise (sigma 3 levels a channel, seed 0), rounded to RGB888; the RGB565
frame keeps the top 5, 6, 5 bits of the same pixels. On each frame:

* the C path: ``edgecnn_preprocess`` (the centred square, or the whole frame;
  ``EDGECNN_INVERT_AUTO``) then ``edgecnn_classify``;
* the runtime's picture path (Pillow): the same square, or the whole frame, as a PNG
  picture (for RGB565, the frame widened back to 8 bits as the C code widens it) read by
  ``load_image`` as ``load_classifier(...).predict`` reads a picture (shrink, grey,
  Lanczos, invert when the border is light), then the file users predict with
  (``model_int8.tflite``) and the full-integer form; and the C library's
  ``edgecnn_classify`` on the runtime's pixels, where the preprocessing alone differs
  from the C path.

Printed: the top-1 accuracy of each path and its agreement with the C path's answers.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.export.mcu import cgen, graph, toolchain
from edgecnn.runtime import load_classifier
from edgecnn.runtime.camera_frames import FORMATS, INVERT_CODES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "tests" / "data" / "tiny"
WIDTH, HEIGHT, SIDE = 320, 240, 200
TABLE = (236, 232, 224)
NOISE = 3.0
CHUNK = 500


class CropBox(ctypes.Structure):
    """``edgecnn_crop``."""

    _fields_ = [(name, ctypes.c_int32) for name in ("x", "y", "width", "height")]


def find_models(path: Path) -> tuple[bytes, Path, Path | None]:
    """The full-integer flatbuffer, the ``.tflite`` users predict with, and ``c/`` if any."""
    if path.is_file():
        return path.read_bytes(), path, None
    users = path / "model_int8.tflite"
    full = path / "full_integer" / "model_int8.tflite"
    bundle = path / "tflm" / "model_data.cc"
    c_folder = path / "c" if (path / "c" / cgen.SOURCE).is_file() else None
    if full.is_file():
        return full.read_bytes(), users, c_folder
    if bundle.is_file():
        text = bundle.read_text()
        array = text[text.index("{") : text.index("}")]
        return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", array)), users, c_folder
    sys.exit(f"bench/camera_frames.py: no full-integer model in {path} (tflm/model_data.cc "
             "or full_integer/model_int8.tflite); pass one")  # fmt: skip


def build_library(data: bytes, users: Path, c_folder: Path | None, work: Path) -> Any:
    """The model's C library for this machine, bound with ctypes."""
    if c_folder is None:
        meta = load_classifier(users).metadata
        library = cgen.generate(graph.read(data), cgen.sha256(data), "bench", meta.labels,
                                meta.light_on_dark)  # fmt: skip
        c_folder = work / "c"
        c_folder.mkdir()
        for name, text in library.files.items():
            (c_folder / name).write_text(text)
    built = toolchain.build_shared([c_folder / cgen.SOURCE], work / "libbench.so",
                                   ("-O2", f"-I{c_folder}"))  # fmt: skip
    lib = ctypes.CDLL(str(built))
    lib.edgecnn_preprocess.argtypes = [
        ctypes.c_char_p, ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
        ctypes.POINTER(CropBox), ctypes.c_int, ctypes.c_void_p,
    ]  # fmt: skip
    lib.edgecnn_classify.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def render(images: np.ndarray) -> np.ndarray:
    """The pictures as 320x240 RGB888 frames of a garment on a light table (see above)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    top, left = (HEIGHT - SIDE) // 2, (WIDTH - SIDE) // 2
    frames = np.empty((len(images), HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        big = Image.fromarray(image).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        ink = np.asarray(big, dtype=np.float64) / 255
        frame = np.broadcast_to(np.array(TABLE, dtype=np.float64), (HEIGHT, WIDTH, 3)).copy()
        frame[top : top + SIDE, left : left + SIDE] *= (1 - ink)[:, :, np.newaxis]
        frame += rng.normal(0, NOISE, frame.shape)
        frames[i] = np.clip(np.round(frame), 0, 255)
    return frames


def rgb565(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB565 words (little-endian bytes) of RGB888 frames, and them widened back to 8 bits."""
    r, g, b = (frames[..., i].astype(np.uint16) >> s for i, s in enumerate((3, 2, 3)))
    words = (r << 11 | g << 5 | b).astype("<u2")
    widened = np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], axis=-1)
    return words.view(np.uint8).reshape(*frames.shape[:3], 2), widened.astype(np.uint8)


def c_path(lib: Any, frames: np.ndarray, fmt: str, crop: CropBox | None,
           size: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The C library's pixels and answers for each frame."""
    dims = (ctypes.c_int32 * 5).in_dll(lib, "edgecnn_dims")
    work, scores = ctypes.create_string_buffer(dims[4]), ctypes.create_string_buffer(dims[3])
    pixels = ctypes.create_string_buffer(size)
    box = ctypes.byref(crop) if crop is not None else None
    out, answers = np.empty((len(frames), size), dtype=np.uint8), np.empty(len(frames), int)
    stride = frames.shape[2] * frames.shape[3]
    for i, frame in enumerate(frames):
        code = lib.edgecnn_preprocess(frame.tobytes(), FORMATS[fmt], WIDTH, HEIGHT, stride, box,
                                      INVERT_CODES["auto"], pixels)  # fmt: skip
        if code != 0:
            sys.exit(f"bench/camera_frames.py: edgecnn_preprocess returned {code}")
        out[i] = np.frombuffer(pixels.raw, dtype=np.uint8)
        answers[i] = lib.edgecnn_classify(pixels.raw, work, scores)
    return out, answers


def pictures(frames: np.ndarray, whole: bool) -> list[bytes]:
    """The centred square of each frame, or the whole frame, as PNG bytes."""
    from PIL import Image

    left = (WIDTH - HEIGHT) // 2
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        picture = Image.fromarray(frame if whole else frame[:, left : left + HEIGHT])
        picture.save(buffer, "PNG", compress_level=0)  # lossless, and quick to write
        out.append(buffer.getvalue())
    return out


def runtime_pixels(clf: Any, pngs: list[bytes]) -> np.ndarray:
    """What the runtime's picture path feeds the model: load_image on each picture."""
    from edgecnn.runtime.images import load_image

    height, _, channels = clf.input_shape
    meta = clf.metadata
    return np.stack([load_image(p, None, height, meta.light_on_dark, channels) for p in pngs])


def classify_pixels(lib: Any, images: np.ndarray) -> np.ndarray:
    """``edgecnn_classify`` on uint8 images."""
    dims = (ctypes.c_int32 * 5).in_dll(lib, "edgecnn_dims")
    work, scores = ctypes.create_string_buffer(dims[4]), ctypes.create_string_buffer(dims[3])
    return np.array([lib.edgecnn_classify(im.tobytes(), work, scores) for im in images])


def answers_for(lib: Any, classifiers: dict[str, Any], images: np.ndarray,
                size: int) -> dict[tuple[str, str, str], np.ndarray]:  # fmt: skip
    """Every path's answers on ``images`` as frames: (framing, format, path) -> answers."""
    frames888 = render(images)
    words, widened = rgb565(frames888)
    out = {}
    for whole in (False, True):
        crop = CropBox(0, 0, WIDTH, HEIGHT) if whole else None
        framing = "whole frame" if whole else "centred square"
        for fmt, frames, seen in (("rgb888", frames888, frames888), ("rgb565", words, widened)):
            _, ours = c_path(lib, frames, fmt, crop, size)
            # What predict does with each picture: load_image, then the model.
            pillow = runtime_pixels(next(iter(classifiers.values())), pictures(seen, whole))
            out[framing, fmt, "C path"] = ours
            for name, model in classifiers.items():
                out[framing, fmt, f"runtime, {name}"] = model.predict(pillow).argmax(1)
            out[framing, fmt, "edgecnn_classify on the runtime's pixels"] = classify_pixels(
                lib, pillow
            )
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from edgecnn.trainer.idx import load_arrays

    data, users, c_folder = find_models(Path(args.model))
    (_, _, x_test, y_test), _ = load_arrays("fashion", None)
    images, labels = x_test[: args.images], y_test[: args.images].astype(int)
    answers: dict[tuple[str, str, str], list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-frames-") as scratch:
        work = Path(scratch)
        clf = load_classifier(users)
        classifiers = {users.name: clf}
        if data != users.read_bytes():
            full = work / "full_integer.tflite"  # no metadata needed: fed arrays, not pictures
            full.write_bytes(data)
            classifiers["full-integer .tflite"] = load_classifier(full)
        lib = build_library(data, users, c_folder, work)
        size = int(np.prod(clf.input_shape))
        for start in range(0, len(images), CHUNK):
            chunk = answers_for(lib, classifiers, images[start : start + CHUNK], size)
            for key, got in chunk.items():
                answers.setdefault(key, []).append(got)
            print(f"  {min(start + CHUNK, len(images)):,} of {len(images):,} pictures",
                  file=sys.stderr)  # fmt: skip
    rows = []
    for (framing, fmt, path), parts in answers.items():
        got, ours = np.concatenate(parts), np.concatenate(answers[framing, fmt, "C path"])
        rows.append({"framing": framing, "format": fmt, "path": path,
                     "accuracy": float(np.mean(got == labels)),
                     "agreement": float(np.mean(got == ours))})  # fmt: skip
    return {"images": len(images), "model": str(args.model), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "model", nargs="?", default=str(DEFAULT_MODEL),
        help="a model folder or a full-integer .tflite (default: tests/data/tiny)",
    )  # fmt: skip
    parser.add_argument("--images", type=int, default=10_000, help="test pictures (10,000)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = measure(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['images']:,} Fashion-MNIST test pictures as {WIDTH}x{HEIGHT} frames; "
          f"model {results['model']}")  # fmt: skip
    print(f"\n{'framing':15s} {'frame':7s} {'path':42s} {'accuracy':>9s} {'agrees with C':>14s}")
    for row in results["rows"]:
        agreement = "-" if row["path"] == "C path" else f"{100 * row['agreement']:.2f}%"
        print(f"{row['framing']:15s} {row['format']:7s} {row['path']:42s} "
              f"{100 * row['accuracy']:8.2f}% {agreement:>14s}")  # fmt: skip


if __name__ == "__main__":
    main()
