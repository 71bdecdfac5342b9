"""The doctor's diagnosis as text: tensor tables, sensitivity, sweep, verdict."""

from __future__ import annotations

from edgecnn.export.doctor.diagnosis import Diagnosis
from edgecnn.export.doctor.tensors import TensorError

_HEADER = (
    f"  {'layer':10s} {'shape':>12s} {'SQNR dB':>8s} {'median ch':>9s} {'range x':>8s} "
    f"{'mean st':>8s} {'max st':>7s} {'clipped':>8s} {'calib SQNR':>10s}"
)


def tensor_rows(
    tensors: tuple[TensorError, ...], calibration: tuple[TensorError, ...]
) -> list[str]:
    """One line per tensor, the calibration images' SQNR beside the test images' figures."""
    on_calibration = {t.tensor: t for t in calibration}
    rows = [_HEADER]
    for t in tensors:
        shape = "x".join(str(d) for d in t.shape)
        other = on_calibration.get(t.tensor)
        calib = f"{other.sqnr_db:10.1f}" if other else f"{'':>10s}"
        rows.append(
            f"  {t.layer:10s} {shape:>12s} {t.sqnr_db:8.1f} {t.median_channel_sqnr_db:9.1f} "
            f"{t.channel_range_ratio:8.1f} {t.mean_error_steps:8.2f} {t.max_error_steps:7.1f} "
            f"{100 * t.clipped:7.2f}% {calib}"
        )
    return rows


def format_diagnosis(d: Diagnosis) -> str:
    """The whole diagnosis, for a terminal."""
    lines = [f"{d.file}: top-1 agreement with Keras {100 * d.agreement:.2f}%", ""]
    images = d.test[0].images if d.test else 0
    lines.append(f"int8 .tflite, each quantized tensor against Keras ({images} test images):")
    lines += tensor_rows(d.test, d.calibration)
    if d.onnx:
        lines += ["", f"int8 ONNX ({d.onnx_file}):"]
        lines += tensor_rows(d.onnx, ())
    lines += ["", "Sensitivity: agreement with one layer's output kept in float:"]
    for t in d.sensitivity:
        group = ", ".join(t.float_layers)
        lines.append(f"  {t.layer:10s} {100 * t.agreement:6.2f}%  (float: {group})")
    lines += ["", "Calibration sweep: agreement by calibration images:"]
    for p in d.sweep:
        lines.append(f"  {p.images:>6d} {100 * p.agreement:6.2f}%")
    lines += ["", d.finding, f"({d.seconds:.1f} s)"]
    return "\n".join(lines)
