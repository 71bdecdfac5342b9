"""Calibrated confidence and "unknown", per exported file, with and without outlier exposure.

For each of two trainings of the default network on Fashion-MNIST, one plain and one with
``--outliers`` (synthetic pictures of no class trained towards a uniform answer), this
script exports every file (``edgecnn export --int8``, each file fitting its own
temperature and threshold on the validation split) and measures on the test split:

* expected calibration error (15 equal-width bins) before and after the temperature;
* the share answered "unknown" and the accuracy on the pictures accepted, beside the
  accuracy on all;
* far out-of-distribution rejection: AUROC of the largest calibrated probability (test
  pictures against outsiders) and the false-accept rate at 95% acceptance of the test
  pictures, pooled and per family: uniform noise, blank pictures (one grey level),
  inverted test pictures, letters and digits drawn with Pillow's bundled font, and sine
  stripes. Training's outliers (shuffled pixels and tiles, smooth noise, strokes and
  shapes) are none of these, but blank pictures are close to its smoothest noise and
  letters to its strokes; stripes are like nothing it sees;
* near out-of-distribution rejection: the same network trained on 8 classes (an ``.npz``
  through ``--data``), the test pictures of the 2 held out as outsiders: AUROC, FA@95
  and the share the file's own threshold accepts.

Every model is trained here, from the IDX files, so one run compares like with like:

    python bench/confidence.py [--data-dir DIR] [--epochs 10] [--outliers 0.25] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.pipeline.environment import cpu_model
from edgecnn.runtime.confidence import Confidence

#: Fashion-MNIST classes held out of the near-OOD training (Bag, Ankle boot).
HELD_OUT = (8, 9)
#: Pictures per far-OOD family.
PER_FAMILY = 2000
#: What is exported and measured: every file edgecnn.runtime runs (weights.npz comes too).
FORMATS = "tflite,onnx,c"


def far_families(x_test: np.ndarray, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Pictures of no Fashion-MNIST class, ``count`` per family, uint8 ``(N, 28, 28)``."""
    rng = np.random.default_rng(seed)
    shape = (count, *x_test.shape[1:])
    levels = rng.integers(0, 256, count, dtype=np.uint8)
    return {
        "uniform noise": rng.integers(0, 256, shape, dtype=np.uint8),
        "blank": np.broadcast_to(levels[:, None, None], shape).copy(),
        "inverted": 255 - x_test[rng.choice(len(x_test), count, replace=False)],
        "font glyphs": glyphs(count, x_test.shape[1], rng),
        "stripes": stripes(count, x_test.shape[1], rng),
    }


def stripes(count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Sine gratings: a period of 2 to 10 pixels, any angle, phase and contrast.

    Periodic fine structure is what no training outlier has (its noise is smooth or
    pixel-shuffled, its strokes few).
    """
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    angle = rng.uniform(0, np.pi, count)[:, None, None]
    period = rng.uniform(2, 10, count)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, count)[:, None, None]
    low = rng.uniform(0, 128, count)[:, None, None]
    high = rng.uniform(128, 256, count)[:, None, None]
    wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    return np.round(low + (high - low) * (wave + 1) / 2).clip(0, 255).astype(np.uint8)


def glyphs(count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """Letters and digits in Pillow's bundled font, light on dark like the model's pictures."""
    import string

    from PIL import Image, ImageDraw, ImageFont

    characters = string.ascii_letters + string.digits
    out = np.empty((count, side, side), dtype=np.uint8)
    fonts = {size: ImageFont.load_default(size) for size in range(14, 27, 2)}
    for i in range(count):
        picture = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(picture)
        font = fonts[int(rng.choice(list(fonts)))]
        text = "".join(rng.choice(list(characters), int(rng.integers(1, 3))))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = (side - (right - left)) // 2 - left + int(rng.integers(-2, 3))
        y = (side - (bottom - top)) // 2 - top + int(rng.integers(-2, 3))
        draw.text((x, y), text, fill=int(rng.integers(160, 256)), font=font)
        out[i] = np.asarray(picture)
    return out


def held_out_npz(path: Path, arrays: tuple[np.ndarray, ...], held_out: tuple[int, ...],
                 labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Write Fashion-MNIST less ``held_out`` classes as an ``.npz`` ``--data`` trains on.

    Returns the kept classes' test pictures and the held-out classes' ones.
    """
    x_train, y_train, x_test, y_test = arrays
    kept = [c for c in range(len(labels)) if c not in held_out]
    renumber = np.full(len(labels), -1)
    renumber[kept] = np.arange(len(kept))
    train, test = np.isin(y_train, kept), np.isin(y_test, kept)
    np.savez(path, x_train=x_train[train], y_train=renumber[y_train[train]],
             x_test=x_test[test], y_test=renumber[y_test[test]],
             class_names=np.array([labels[c] for c in kept]))  # fmt: skip
    return x_test[test], x_test[~test]


def edgecnn(*args: object) -> float:
    """Run the edgecnn CLI as a user would; seconds it took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def trained_and_exported(run: Path, data_dir: str, epochs: int, outliers: float,
                         data: Path | None = None) -> dict[str, float]:  # fmt: skip
    """Train into ``run`` and export every file with --int8, unless already there."""
    seconds = {}
    if not (run / "model.keras").exists():
        extra = ["--data", data] if data else []
        seconds["train"] = edgecnn("train", "--out", run, "--data-dir", data_dir, "--epochs",
                                   epochs, "--outliers", outliers, *extra)  # fmt: skip
    if not (run / "exports" / "export_report.json").exists():
        seconds["export"] = edgecnn("export", run, "--int8", "--formats", FORMATS,
                                    "--data-dir", data_dir)  # fmt: skip
    return seconds


@dataclass
class FileScores:
    """One exported file's raw and calibrated outputs on the pictures measured."""

    raw: np.ndarray
    calibrated: np.ndarray
    #: The temperature and threshold its metadata holds (None: it has none).
    confidence: Confidence | None

    @property
    def reject_below(self) -> float | None:
        """The file's "unknown" threshold, None when it has none."""
        return None if self.confidence is None else self.confidence.reject_below


def scored_files(run: Path, pictures: dict[str, np.ndarray]) -> dict[str, dict[str, FileScores]]:
    """Each kept file of ``run``'s export, on each array of ``pictures``.

    Each picture runs once: calibrated outputs are the raw ones at the file's temperature,
    as ``load_classifier`` computes them.
    """
    from edgecnn.export.report_file import load_report
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.confidence import calibrate

    out = run / "exports"
    files: dict[str, dict[str, FileScores]] = {}
    for row in load_report(out).kept:
        backend = "c" if row.format == "c" else "auto"  # never picked unasked: it is code
        classifier = load_classifier(out / row.file, backend=backend, calibrated=False)
        confidence = classifier.metadata.confidence
        temperature = 1.0 if confidence is None else confidence.temperature
        files[row.file] = {}
        for name, x in pictures.items():
            raw = classifier.predict(x)
            files[row.file][name] = FileScores(raw, calibrate(raw, temperature), confidence)
    return files


def accepted(top: np.ndarray, reject_below: float | None) -> float:
    """The share of pictures whose top calibrated probability clears the file's threshold."""
    if reject_below is None:
        return 1.0
    return float(np.mean(top >= np.float32(reject_below)))


def measure(files: dict[str, dict[str, FileScores]], y_test: np.ndarray,
            near: dict[str, dict[str, FileScores]] | None) -> dict[str, dict]:  # fmt: skip
    """The figures of each file (see the module's docstring)."""
    from edgecnn.runtime.confidence import auroc, false_accept_rate
    from edgecnn.trainer.calibration_metrics import measure_calibration

    results = {}
    for name, scored in files.items():
        test = scored["test"]
        # The test split's figures, as edgecnn evaluate measures them.
        measured = measure_calibration(test.raw, y_test, test.confidence)
        inside = test.calibrated.max(1)
        far = {f: s.calibrated.max(1) for f, s in scored.items() if f != "test"}
        pooled = np.concatenate(list(far.values()))
        entry = {
            "temperature": measured.temperature,
            "reject_below": test.reject_below,
            "accuracy": measured.accuracy,
            "ece_before": measured.ece_before,
            "ece_after": measured.ece_after,
            "unknown_share": measured.rejected,
            "accepted_accuracy": measured.accepted_accuracy,
            "far": {
                family: {
                    "auroc": auroc(inside, out),
                    "fa95": false_accept_rate(inside, out),
                    "accepted_at_threshold": accepted(out, test.reject_below),
                }  # fmt: skip
                for family, out in {**far, "pooled": pooled}.items()
            },
        }
        if near is not None and name in near:
            kept, held = near[name]["test"], near[name]["held out"]
            k, h = kept.calibrated.max(1), held.calibrated.max(1)
            entry["near"] = {"auroc": auroc(k, h), "fa95": false_accept_rate(k, h),
                             "accepted_at_threshold": accepted(h, held.reject_below)}  # fmt: skip
        results[name] = entry
    return results


def print_tables(variant: str, results: dict[str, dict]) -> None:
    """Markdown tables of one variant's figures."""
    print(f"\n### {variant}\n")
    print("| file | T | ECE before | ECE after | unknown (test) | accuracy all -> accepted "
          "| far AUROC | far FA@95 | near AUROC | near FA@95 | near accepted |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        near = r.get("near", {})
        print(
            f"| {name} | {r['temperature']:.3f} | {100 * r['ece_before']:.2f}% "
            f"| {100 * r['ece_after']:.2f}% | {100 * r['unknown_share']:.1f}% "
            f"| {100 * r['accuracy']:.2f}% -> {100 * r['accepted_accuracy']:.2f}% "
            f"| {r['far']['pooled']['auroc']:.3f} | {100 * r['far']['pooled']['fa95']:.1f}% "
            + (
                f"| {near['auroc']:.3f} | {100 * near['fa95']:.1f}% "
                f"| {100 * near['accepted_at_threshold']:.1f}% |"
                if near
                else "| - | - | - |"
            )
        )
    first = next(iter(results.values()))
    print("\n| family (first file) | AUROC | FA@95 | accepted at the file's threshold |")
    print("|---|---|---|---|")
    for family, f in first["far"].items():
        print(f"| {family} | {f['auroc']:.4f} | {100 * f['fa95']:.1f}% "
              f"| {100 * f['accepted_at_threshold']:.1f}% |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(
        "EDGECNN_DATA_DIR", "/usr/share/datasets/fashion-mnist"))  # fmt: skip
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--outliers", type=float, default=0.25)
    parser.add_argument("--work", type=Path, help="keep the runs here (reused when present)")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()

    from edgecnn.trainer.idx import LABELS, load_arrays

    arrays, _ = load_arrays("fashion", Path(args.data_dir))
    x_test, y_test = arrays[2], arrays[3]
    far = far_families(x_test, PER_FAMILY)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgecnn-confidence-"))
    work.mkdir(parents=True, exist_ok=True)
    npz = work / "fashion-8-classes.npz"
    kept_test, held_out = held_out_npz(npz, arrays, HELD_OUT, tuple(LABELS["fashion"]))
    print(f"# bench/confidence.py: {cpu_model()}, {os.cpu_count()} cores, {args.epochs} epochs; "
          f"{PER_FAMILY:,} pictures per far family; near: classes {HELD_OUT} held out")  # fmt: skip
    report: dict[str, object] = {}
    for variant, share in (("plain", 0.0), (f"outliers {args.outliers}", args.outliers)):
        tag = "plain" if share == 0 else "outliers"
        seconds = trained_and_exported(work / tag, args.data_dir, args.epochs, share)
        seconds |= {f"near {k}": v for k, v in trained_and_exported(
            work / f"{tag}-8", args.data_dir, args.epochs, share, npz).items()}  # fmt: skip
        files = scored_files(work / tag, {"test": x_test, **far})
        near = scored_files(work / f"{tag}-8", {"test": kept_test, "held out": held_out})
        results = measure(files, y_test, near)
        print_tables(variant, results)
        print("\nseconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
        report[variant] = results
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
