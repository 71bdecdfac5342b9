"""Which exported file to use where: one recommendation per target, with its reasons.

A file can only be recommended for a target that can load it (onnxruntime and
ai-edge-litert publish no 32-bit ARM wheels; phones run LiteRT; a microcontroller runs
C). Among those, this machine gets the int8 file unless another one measured here by
the bench stage is more than 10% faster: a p50 of a few hundred calls moves by several
per cent from one run to the next, and a pick that flips with that noise tells a
newcomer nothing. The other targets, whose speed was not measured here, get the
smallest file, int8 first, that passed its gate. Every reason is a number from the run.
"""

from __future__ import annotations

import platform
from typing import Any

from edgecnn.export.formats import FORMATS
from edgecnn.pipeline.devices import HERE, RECOMMENDED, Device

#: Latencies within this factor count as a tie: another file must be faster than the int8
#: file by more than this to replace it here (and among faster files, ties go to the
#: smaller).
SAME_SPEED = 1.10
MARGIN = f"{100 * (SAME_SPEED - 1):.0f}%"


def best_file(
    files: list[dict[str, Any]], latency_us: dict[str, float] | None = None
) -> dict[str, Any] | None:
    """The file for this machine.

    The int8 file (``.tflite`` first, then best agreement) unless another file that
    passed measured more than 10% faster here, then the fastest of those (within 10%, the
    smaller); without int8 measurements, the fastest measured (within 10%, the smaller);
    without any, the int8 file, else the smallest file that passed.
    """
    rec = recommend(files, latency_us or {}, (HERE,))
    return rec[0]["row"] if rec else None


def recommend(
    files: list[dict[str, Any]],
    latency_us: dict[str, float],
    targets: tuple[Device, ...] = RECOMMENDED,
) -> list[dict[str, Any]]:
    """One entry per target that some passed file can serve: target, file, reason, row."""
    out = []
    for target in targets:
        usable = [f for f in files if f["passed"] and f["format"] in target.formats]
        if not usable:
            continue
        measured = {f["file"]: latency_us[f["file"]] for f in usable if f["file"] in latency_us}
        why = ""
        if target.key == "here" and measured:
            row, why = _pick_here(usable, measured)
        else:
            row = _smallest_int8_first(usable, target)
        out.append({"target": target.name if target.key != "here" else _here(),
                    "key": target.key, "file": row["file"], "row": row,
                    "reason": _reason(row, target, why)})  # fmt: skip
    return out


def _pick_here(
    usable: list[dict[str, Any]], measured: dict[str, float]
) -> tuple[dict[str, Any], str]:
    """This machine's file and why, in numbers: int8 unless another is clearly faster."""
    int8 = [f for f in usable if f["precision"] == "int8" and f["file"] in measured]
    if not int8:  # --no-int8: the fastest measured, ties to the smaller
        row = _fastest(usable, measured)
        if measured[row["file"]] == min(measured.values()):
            return row, f"{measured[row['file']]:,.0f} us per image here (fastest)"
        return row, (
            f"{measured[row['file']]:,.0f} us per image here, within {MARGIN} of the "
            "fastest, and smaller"
        )
    base = _smallest_int8_first(int8, HERE)
    base_us = measured[base["file"]]
    faster = [f for f in usable if measured.get(f["file"], base_us) * SAME_SPEED < base_us]
    if faster:
        row = _fastest(faster, measured)
        return row, (
            f"{measured[row['file']]:,.0f} us per image here, more than {MARGIN} faster "
            f"than {base['file']} ({base_us:,.0f} us)"
        )
    fastest = min(measured, key=measured.__getitem__)
    if measured[fastest] == base_us:
        return base, f"{base_us:,.0f} us per image here (fastest)"
    return base, (
        f"{base_us:,.0f} us per image here, within {MARGIN} of the fastest "
        f"({fastest}, {measured[fastest]:,.0f} us): ties go to int8"
    )


def _fastest(files: list[dict[str, Any]], measured: dict[str, float]) -> dict[str, Any]:
    """The fastest measured of ``files``; within 10% of it, the smaller."""
    best_us = min(measured[f["file"]] for f in files if f["file"] in measured)
    near = [f for f in files if measured.get(f["file"], float("inf")) <= best_us * SAME_SPEED]
    return min(near, key=lambda f: (f["size_bytes"], -f["agreement"]))


def _smallest_int8_first(usable: list[dict[str, Any]], target: Device) -> dict[str, Any]:
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


def _reason(row: dict[str, Any], target: Device, why_here: str) -> str:
    parts = [why_here] if why_here else []
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
