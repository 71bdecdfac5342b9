"""``edgecnn predict`` on a video, beside decoding alone and decoding plus crop and resize.

A 640x480 H.264 MP4 of real Fashion-MNIST test pictures (30 fps, each picture held for
10 frames) is made with ffmpeg in a temporary folder, as the tests make theirs; then,
interleaved over a few rounds (medians reported), in this process:

(a) decoding alone: ``runtime.video.read_frames`` (PyAV, frames to RGB arrays);
(b) decoding, crop and resize: (a) plus ``FrameClassifier.prepare`` on each frame;
(c) the whole of ``predict``'s stream path: ``predict_stream`` (the decoding thread,
    batches through the backend, a text line per frame written to /dev/null);
(d) the backend alone on the prepared frames, in batches of 32, as (c) calls it;

and (b) and (c) again with ``--every 5``, which skips converting four frames in five.
Speeds are frames of the video a second of wall time. The target is (c) >= 0.9x (b):
classification and output must not slow down a stream the machine can decode.

    python bench/stream.py [--model MODEL] [--seconds 10] [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.pipeline.environment import cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests")]
from video_files import RATE, make_video  # noqa: E402  (the tests' videos)

TARGET = 0.9
MODEL = REPO / "tests" / "data" / "tiny" / "model_int8.tflite"
HOLD = 10


def pictures(count: int) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images, found as the trainer finds them."""
    from edgecnn.trainer.idx import locate_dataset, read_idx

    files = locate_dataset("fashion")
    if not isinstance(files, dict):
        sys.exit("the Fashion-MNIST IDX files are not installed: apt-get install "
                 "dataset-fashion-mnist, or set EDGECNN_DATA_DIR")  # fmt: skip
    return read_idx(files["test_images"])[:count]


def _timed(run: Any) -> tuple[float, int]:
    start = time.perf_counter()
    count = run()
    return time.perf_counter() - start, count


def measure(model: Path, seconds: float = 10.0, rounds: int = 7) -> dict[str, Any]:
    """Every number of this benchmark, as a flat dict (``ratio`` is the target's)."""
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.frames import FrameClassifier
    from edgecnn.runtime.predict.stream import StreamOptions, predict_stream
    from edgecnn.runtime.streaming import BATCH_FRAMES, INTERPRETER_THREADS, FrameStream
    from edgecnn.runtime.video import Sampling, Source, read_frames

    with native_stderr_hidden():
        classifier = load_classifier(model, num_threads=INTERPRETER_THREADS)  # as predict's
    count = max(1, round(seconds * RATE / HOLD))

    def decode(every: int = 1) -> int:
        return sum(1 for _ in read_frames(source, Sampling(every)))

    def prepare(every: int = 1) -> int:
        frames = FrameClassifier(classifier)
        n = 0
        for frame in read_frames(source, Sampling(every)):
            frames.prepare(frame.pixels)
            n += 1
        return n

    def whole(every: int = 1) -> int:
        options = StreamOptions.from_cli(None, every, None, None, None, None, None, None,
                                         None, None, None)  # fmt: skip
        with open("/dev/null", "w") as out:
            predict_stream(classifier, source, options, False, None, out, io.StringIO())
        return len(video.pictures) * HOLD // every

    def backend() -> int:
        frames = FrameClassifier(classifier)
        for i in range(0, len(prepared), BATCH_FRAMES):
            batch = prepared[i : i + BATCH_FRAMES]
            n = len(batch)
            frames.classify_prepared(batch, range(n), [0.0] * n)
        return len(prepared)

    runs = {
        "decode": decode,
        "prepare": prepare,
        "whole": whole,
        "backend": backend,
        "prepare_every5": lambda: prepare(5),
        "whole_every5": lambda: whole(5),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "clothes.mp4", pictures(count), hold=HOLD)
        source = Source(str(video.path), "file")
        total = len(video.pictures) * HOLD
        frames = FrameClassifier(classifier)
        prepared = np.stack([frames.prepare(f.pixels) for f in read_frames(source)])
        if len(prepared) != total:
            sys.exit(f"read_frames gave {len(prepared)} frames of {total}")
        with FrameStream(FrameClassifier(classifier), source) as stream:
            sizes = [len(batch) for batch in stream.batches()]
        with native_stderr_hidden():
            for name in runs:  # warm: imports, the decoder's threads, the interpreter
                runs[name]()
            for _ in range(rounds):
                for name, run in runs.items():
                    wall, _ = _timed(run)
                    times[name].append(wall)
        size = video.path.stat().st_size
    fps = {name: total / statistics.median(walls) for name, walls in times.items()}
    return {
        "model": model.name,
        "backend": classifier.backend_name,
        "threads": classifier.backend.threads,
        "cpu": cpu_model(),
        "frames": total,
        "seconds": total / RATE,
        "video_kb": size / 1024,
        "rounds": rounds,
        **{f"{name}_fps": value for name, value in fps.items()},
        "frames_per_batch": statistics.mean(sizes),
        "ratio": fps["whole"] / fps["prepare"],
        "ratio_every5": fps["whole_every5"] / fps["prepare_every5"],
        "spread": {
            name: [round(total / max(walls), 1), round(total / min(walls), 1)]
            for name, walls in times.items()
        },
    }


def report(r: dict[str, Any]) -> str:
    """The numbers of :func:`measure` for people."""
    verdict = "PASS" if r["ratio"] >= TARGET else "FAIL"

    def line(label: str, name: str) -> str:
        low, high = r["spread"][name]
        return f"{label:42s} {r[name + '_fps']:8,.0f} fps   (rounds: {low:,.0f}..{high:,.0f})"

    return "\n".join(
        [
            f"{r['model']} on {r['backend']}, {r['threads']} threads; {r['cpu']}",
            f"video: 640x480 H.264 MP4, {r['frames']} frames ({r['seconds']:.0f} s at "
            f"{RATE} fps, {r['video_kb']:.0f} KB); {r['rounds']} interleaved rounds, medians",
            line("(a) decode alone (read_frames)", "decode"),
            line("(b) decode + crop/resize (prepare)", "prepare"),
            line("(c) whole predict_stream, text to /dev/null", "whole"),
            line("(d) backend alone, batches of 32", "backend"),
            f"    (c) classified {r['frames_per_batch']:.2f} frames a batch on average "
            f"(FrameStream.batches takes what the decoding thread has queued)",
            line("(b) with --every 5", "prepare_every5"),
            line("(c) with --every 5", "whole_every5"),
            f"whole / (decode + crop/resize): {r['ratio']:.2f}x (target >= {TARGET:.1f}x): "
            f"{verdict}; with --every 5: {r['ratio_every5']:.2f}x",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="[tests' tiny int8 model]")
    parser.add_argument("--seconds", type=float, default=10.0, help="video length at 30 fps")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians)")
    parser.add_argument("--json", action="store_true", help="the numbers as JSON")
    args = parser.parse_args()
    result = measure(args.model, args.seconds, args.rounds)
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
