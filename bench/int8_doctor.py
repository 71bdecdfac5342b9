"""The int8 doctor and its remedies, measured: what each remedy gives, and how long it takes.

    python bench/int8_doctor.py RUN [--data-dir DIR] [--json]

RUN is a run folder (model.keras, trained on Fashion-MNIST; `edgecnn train` makes one).
Two models are measured:

* **crafted**: RUN's model with conv1's channel 3 scaled up 100x and conv2's weights from
  that channel scaled down 100x (the float outputs unchanged, checked), which plain
  per-tensor int8 calibration fails. It is exported (int8 .tflite) plain, with each
  ``--remedy`` alone, and with ``--remedy auto``: the top-1 agreement with Keras of each
  int8 file on the 10,000 test images, and each export's time (a named remedy's includes
  the plain file it is measured against). Then ``edgecnn doctor`` on a plain export (int8
  .tflite and ONNX): the layer it names, and its time.
* **RUN's own model**: ``edgecnn doctor`` on a plain int8 export (.tflite and ONNX): its
  per-tensor tables, sensitivity and sweep, and its time (the target is under 60 s).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: conv1's channel 3 times 100, conv2's weights from it divided by 100 (as the tests).
CRAFT = {"layer": "conv1", "next": "conv2", "channel": 3, "factor": 100.0}


def craft(run: Path, out: Path, data_dir: Path | None) -> float:
    """Copy ``run`` to ``out`` with its model crafted; the largest logit change, relative."""
    import keras
    import numpy as np

    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.idx import load_dataset

    shutil.copytree(run, out, ignore=shutil.ignore_patterns("exports", "checkpoint*"))
    model = keras.models.load_model(run / "model.keras")
    original = keras.models.load_model(run / "model.keras")
    first, second = model.get_layer(CRAFT["layer"]), model.get_layer(CRAFT["next"])
    (w1, b1), (w2, b2) = first.get_weights(), second.get_weights()
    c, factor = CRAFT["channel"], CRAFT["factor"]
    w1[..., c] *= factor
    b1[c] *= factor
    w2[..., c, :] /= factor
    first.set_weights([w1, b1])
    second.set_weights([w2, b2])
    (out / "model.keras").unlink()
    model.save(out / "model.keras")
    images = to_float(load_dataset("fashion", data_dir).x_test)
    a = original.predict(images, batch_size=1000, verbose=0)
    b = model.predict(images, batch_size=1000, verbose=0)
    return float(np.abs(a - b).max() / np.abs(a).max())


def export_int8(
    run: Path, remedy: str, out: Path, data_dir: Path | None, formats: tuple[str, ...] = ("tflite",)
) -> dict[str, Any]:
    """Export ``run``'s int8 .tflite with ``remedy``; its agreement, pass and seconds."""
    from edgecnn.export.config import ExportConfig
    from edgecnn.export.exporter import export_model

    config = ExportConfig(int8=True, formats=formats, remedy=remedy)
    started = time.perf_counter()
    report = export_model(run, config, out_dir=out, data_dir=data_dir, stream=io.StringIO())
    seconds = time.perf_counter() - started
    record = next(f for f in report.files if f.file == "model_int8.tflite")
    chosen = record.remedy.chosen if record.remedy else None
    return {"remedy": remedy, "agreement": record.agreement, "passed": record.passed,
            "chosen": chosen, "seconds": seconds}  # fmt: skip


def doctor(run: Path, data_dir: Path | None) -> tuple[Any, float]:
    """``edgecnn doctor RUN``: the diagnosis and its wall time (TensorFlow loaded already)."""
    from edgecnn.export.doctor.cli import find_patient
    from edgecnn.export.doctor.examine import examine

    started = time.perf_counter()
    diagnosis = examine(find_patient(run), data_dir=data_dir)
    return diagnosis, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from edgecnn.export.auto import REMEDIES
    from edgecnn.export.doctor.show import format_diagnosis

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-doctor-") as scratch:
        crafted = Path(scratch) / "crafted"
        result["crafted_logit_change"] = craft(args.run, crafted, args.data_dir)
        rows = []
        for remedy in ("none", *REMEDIES, "auto"):
            rows.append(export_int8(crafted, remedy, crafted / "exports", args.data_dir))
            print(f"crafted  --remedy {remedy:16s} agreement {100 * rows[-1]['agreement']:6.2f}%"
                  f"  {'pass' if rows[-1]['passed'] else 'FAIL'}  {rows[-1]['seconds']:5.1f} s"
                  + (f"  (kept: {rows[-1]['chosen']})" if remedy == "auto" else ""),
                  file=sys.stderr)  # fmt: skip
        result["crafted"] = rows
        # The doctor's patients: plain int8 .tflite and ONNX, as `edgecnn export --int8`.
        export_int8(crafted, "none", crafted / "exports", args.data_dir, ("tflite", "onnx"))
        diagnosis, seconds = doctor(crafted, args.data_dir)
        result["crafted_doctor"] = {"culprit": diagnosis.culprit, "seconds": seconds}
        print(f"crafted  doctor names {diagnosis.culprit} in {seconds:.1f} s", file=sys.stderr)
        own = Path(scratch) / "own"
        shutil.copytree(args.run, own, ignore=shutil.ignore_patterns("exports", "checkpoint*"))
        export_int8(own, "none", own / "exports", args.data_dir, ("tflite", "onnx"))
        diagnosis, seconds = doctor(own, args.data_dir)
        result["model_doctor"] = {"seconds": seconds, "diagnosis": diagnosis.to_dict()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_diagnosis(diagnosis))
        print(f"doctor on {args.run}: {seconds:.1f} s (target: under 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
