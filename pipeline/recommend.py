"""Which exported file to use where: one recommendation per target, with its reasons.

A file can only be recommended for a target that can load it (onnxruntime and
ai-edge-litert publish no 32-bit ARM wheels; phones run LiteRT; a microcontroller runs
C). Among those, this machine gets the fastest file as measured here by the bench stage
(within 10%, the smaller); the other targets, whose speed was not measured here, get the
smallest file, int8 first, that passed its gate. Every reason is a number from the run.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from edgecnn.export.formats import FORMATS

#: Latencies within this factor of the fastest count as a tie, broken by size.
SAME_SPEED = 1.10


@dataclass(frozen=True)
class Target:
    """Where a file will run, and which exported formats load there."""

    key: str
    name: str
    formats: tuple[str, ...]
    why_loadable: str


TARGETS = (
    Target("here", "this machine", ("tflite", "onnx", "numpy"), ""),
    Target("pi64", "Raspberry Pi, 64-bit OS", ("tflite", "onnx", "numpy"),
           "LiteRT and onnxruntime publish aarch64 wheels"),
    Target("pi32", "Raspberry Pi, 32-bit OS", ("tflite", "numpy"),
           "tflite-runtime 2.14 on bookworm (no wheel for trixie's Python 3.13: use "
           "weights.npz there)"),
    Target("mobile", "Android / iOS app", ("tflite",), "LiteRT is the phones' runtime"),
    Target("mcu", "microcontroller", ("c", "tflm"), "C99, no operating system needed"),
)  # fmt: skip


def best_file(
    files: list[dict[str, Any]], latency_us: dict[str, float] | None = None
) -> dict[str, Any] | None:
    """The file for this machine.

    The fastest measured here that passed (within 10%, the smaller); without
    measurements, an int8 file (``.tflite`` first, then best agreement), else the smallest
    file that passed.
    """
    rec = recommend(files, latency_us or {}, (TARGETS[0],))
    return rec[0]["row"] if rec else None


def recommend(
    files: list[dict[str, Any]],
    latency_us: dict[str, float],
    targets: tuple[Target, ...] = TARGETS,
) -> list[dict[str, Any]]:
    """One entry per target that some passed file can serve: target, file, reason, row."""
    out = []
    for target in targets:
        usable = [f for f in files if f["passed"] and f["format"] in target.formats]
        if not usable:
            continue
        measured = {f["file"]: latency_us[f["file"]] for f in usable if f["file"] in latency_us}
        if target.key == "here" and measured:
            fastest = min(measured.values())
            near = [
                f for f in usable if measured.get(f["file"], float("inf")) <= fastest * SAME_SPEED
            ]
            row = min(near, key=lambda f: (f["size_bytes"], -f["agreement"]))
        else:
            row = _smallest_int8_first(usable, target)
        out.append({"target": target.name if target.key != "here" else _here(),
                    "key": target.key, "file": row["file"], "row": row,
                    "reason": _reason(row, target, measured.get(row["file"]))})  # fmt: skip
    return out


def _smallest_int8_first(usable: list[dict[str, Any]], target: Target) -> dict[str, Any]:
    """int8 files before others (best agreement, then size); microcontrollers: C first."""
    if target.key == "mcu":
        order = {"c": 0, "tflm": 1}
        return min(usable, key=lambda f: order.get(f["format"], 2))
    int8 = [f for f in usable if f["precision"] == "int8"]
    if int8:
        # tflite before onnx at equal footing: it runs on every ARM system we test.
        return max(int8, key=lambda f: (f["format"] == "tflite", f["agreement"], -f["size_bytes"]))
    return min(usable, key=lambda f: f["size_bytes"])


def _here() -> str:
    machine = platform.machine() or "unknown"
    return f"this machine ({machine})"


def _reason(row: dict[str, Any], target: Target, latency: float | None) -> str:
    parts = []
    if latency is not None and target.key == "here":
        parts.append(f"{latency:,.0f} us per image here (fastest)")
    if FORMATS[row["format"]].folder and "c" in row and target.key == "mcu":
        mcu = row.get("mcu", {})
        ram = row["c"]["work_bytes"] + mcu.get("stack_bytes", 0)
        flash = mcu.get("library_flash", row["size_bytes"])
        parts.append(f"{flash / 1024:,.1f} KiB flash, {ram:,} B RAM")
        parts.append("scores bit-identical to TFLite's reference kernels")
    else:
        parts.append(f"{row['size_bytes'] / 1024:,.0f} KiB ({row['size_ratio']:.2f}x float32)")
        parts.append(f"{100 * row['agreement']:.2f}% agreement with Keras")
    if target.why_loadable:
        parts.append(target.why_loadable)
    return "; ".join(parts)
