"""The report's section on the int8 doctor: why int8 lost agreement, and what to try.

``edgecnn run`` writes ``doctor.json`` when the int8 ``.tflite`` fails its gate or agrees
with Keras on less than 99.5% of the test images; findings about another file than the
one in the export (an earlier export's) are not shown.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecnn.export.doctor.diagnosis import Diagnosis
from edgecnn.export.doctor.tensors import TensorError
from edgecnn.pipeline.report.html import E, figure, pct, table
from edgecnn.pipeline.results import RunData
from edgecnn.records import Fields, RecordError
from edgecnn.run_folder import DOCTOR_CHART, DOCTOR_FILE, EXPORTS_DIR

#: Below this top-1 agreement with Keras, ``edgecnn run`` has the doctor examine the int8
#: .tflite (a file that failed its gate always).
DOCTOR_BELOW = 0.995


def read_diagnosis(run_dir: Path) -> Diagnosis | None:
    """The run's ``doctor.json`` if it describes the int8 file the export holds now."""
    import hashlib

    path = run_dir / DOCTOR_FILE
    try:
        diagnosis = Diagnosis.from_fields(Fields(json.loads(path.read_text())))
        examined = Path(diagnosis.file)
        current = examined if examined.is_absolute() else run_dir.parent / examined
        if not current.is_file():
            current = run_dir / EXPORTS_DIR / examined.name
        digest = hashlib.sha256(current.read_bytes()).hexdigest()
    except (OSError, ValueError, RecordError):
        return None
    return diagnosis if digest == diagnosis.file_sha256 else None


def doctor(run: RunData) -> str:
    """The doctor's verdict, its chart, and its tables; or why it was not needed."""
    diagnosis = read_diagnosis(run.run_dir)
    if diagnosis is None:
        return f"<p>{E(_why_none(run))}</p>"
    tensors = _tensor_table(diagnosis.test, diagnosis.calibration)
    onnx = ""
    if diagnosis.onnx:
        onnx = f"<h3>int8 ONNX, each quantized tensor</h3>{_tensor_table(diagnosis.onnx, ())}"
    trials = [["as exported", pct(diagnosis.agreement)]]
    trials += [[f"{t.layer} in float ({', '.join(t.float_layers)})", pct(t.agreement)]
               for t in diagnosis.sensitivity]  # fmt: skip
    trials += [[f"calibrated on {p.images:,} images", pct(p.agreement)] for p in diagnosis.sweep]
    return (
        f"<p>{E(diagnosis.finding)}</p>"
        + figure(run.run_dir / DOCTOR_CHART, "SQNR per quantized tensor; agreement per trial")
        + "<h3>int8 .tflite, each quantized tensor against Keras</h3>"
        + tensors
        + onnx
        + "<h3>Top-1 agreement with Keras on the test images</h3>"
        + table(["int8 .tflite", "agreement"], trials)
        + "<p>Fix it with <code>edgecnn export RUN --remedy auto</code>: it tries more "
        "calibration images, cross-layer equalization, bias correction, a layer in float "
        "and 16-bit activations, and keeps the first file that passes its gate.</p>"
    )


def _why_none(run: RunData) -> str:
    """Why the report has no findings: no int8 file, none needed, or the doctor failed."""
    int8 = [f for f in run.export.files if f.format == "tflite" and f.precision == "int8"]
    if not int8:
        return "This export has no int8 .tflite."
    if int8[0].passed and int8[0].agreement >= DOCTOR_BELOW:
        return (
            f"The int8 .tflite passed its gate and agrees with Keras on at least "
            f"{100 * DOCTOR_BELOW:g}% of the test images: no diagnosis was needed "
            "('edgecnn doctor RUN' runs one anyway)."
        )
    return (
        "The doctor could not examine the int8 .tflite (the run's output says why); "
        "'edgecnn doctor RUN' tries again."
    )


def _tensor_table(tensors: tuple[TensorError, ...], calibration: tuple[TensorError, ...]) -> str:
    """One row per tensor: SQNR (test and calibration images), range ratio, steps, clipped."""
    on_calibration = {t.tensor: t.sqnr_db for t in calibration}
    rows = [
        [t.layer, "x".join(map(str, t.shape)), f"{t.sqnr_db:.1f}",
         f"{t.median_channel_sqnr_db:.1f}", f"{t.channel_range_ratio:.1f}",
         f"{t.mean_error_steps:.2f}", f"{t.max_error_steps:.1f}", f"{100 * t.clipped:.2f}%",
         f"{on_calibration[t.tensor]:.1f}" if t.tensor in on_calibration else "-"]
        for t in tensors
    ]  # fmt: skip
    headers = ["layer", "shape", "SQNR dB", "median channel dB", "widest / median range",
               "mean error (steps)", "max error (steps)", "clipped",
               "SQNR on calibration"]  # fmt: skip
    return table(headers, rows, numeric_from=2)
