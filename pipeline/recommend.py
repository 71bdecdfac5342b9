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
from collections.abc import Sequence
from dataclasses import dataclass

from edgecnn.export.formats import FORMATS
from edgecnn.export.records import ExportedFile
from edgecnn.pipeline.devices import HERE, RECOMMENDED, Device

#: Latencies within this factor count as a tie: another file must be faster than the int8
#: file by more than this to replace it here (and among faster files, ties go to the
#: smaller).
SAME_SPEED = 1.10
MARGIN = f"{100 * (SAME_SPEED - 1):.0f}%"


@dataclass(frozen=True)
class Recommendation:
    """The file recommended for one target, and why, in numbers."""

    #: How the target is named to the reader ("this machine (x86_64)").
    target: str
    #: The target's :class:`~edgecnn.pipeline.devices.Device` key.
    key: str
    exported: ExportedFile
    reason: str

    @property
    def file(self) -> str:
        """The recommended file's name in the export folder."""
        return self.exported.file


def best_file(
    files: Sequence[ExportedFile], latency_us: dict[str, float] | None = None
) -> ExportedFile | None:
    """The file for this machine.

    The int8 file (``.tflite`` first, then best agreement) unless another file that
    passed measured more than 10% faster here, then the fastest of those (within 10%, the
    smaller); without int8 measurements, the fastest measured (within 10%, the smaller);
    without any, the int8 file, else the smallest file that passed.
    """
    rec = recommend(files, latency_us or {}, (HERE,))
    return rec[0].exported if rec else None


def recommend(
    files: Sequence[ExportedFile],
    latency_us: dict[str, float],
    targets: tuple[Device, ...] = RECOMMENDED,
) -> list[Recommendation]:
    """One recommendation per target that some passed file can serve."""
    out = []
    for target in targets:
        usable = [f for f in files if f.passed and f.format in target.formats]
        if not usable:
            continue
        measured = {f.file: latency_us[f.file] for f in usable if f.file in latency_us}
        why = ""
        if target.key == HERE.key and measured:
            row, why = _pick_here(usable, measured)
        else:
            row = _smallest_int8_first(usable, target)
        name = target.name if target.key != HERE.key else _here()
        out.append(Recommendation(name, target.key, row, _reason(row, target, why)))
    return out


def _pick_here(usable: list[ExportedFile], measured: dict[str, float]) -> tuple[ExportedFile, str]:
    """This machine's file and why, in numbers: int8 unless another is clearly faster."""
    int8 = [f for f in usable if f.precision == "int8" and f.file in measured]
    if not int8:  # --no-int8: the fastest measured, ties to the smaller
        row = _fastest(usable, measured)
        if measured[row.file] == min(measured.values()):
            return row, f"{measured[row.file]:,.0f} us per image here (fastest)"
        return row, (
            f"{measured[row.file]:,.0f} us per image here, within {MARGIN} of the "
            "fastest, and smaller"
        )
    base = _smallest_int8_first(int8, HERE)
    base_us = measured[base.file]
    faster = [f for f in usable if measured.get(f.file, base_us) * SAME_SPEED < base_us]
    if faster:
        row = _fastest(faster, measured)
        return row, (
            f"{measured[row.file]:,.0f} us per image here, more than {MARGIN} faster "
            f"than {base.file} ({base_us:,.0f} us)"
        )
    fastest = min(measured, key=measured.__getitem__)
    if measured[fastest] == base_us:
        return base, f"{base_us:,.0f} us per image here (fastest)"
    return base, (
        f"{base_us:,.0f} us per image here, within {MARGIN} of the fastest "
        f"({fastest}, {measured[fastest]:,.0f} us): ties go to int8"
    )


def _fastest(files: list[ExportedFile], measured: dict[str, float]) -> ExportedFile:
    """The fastest measured of ``files``; within 10% of it, the smaller."""
    best_us = min(measured[f.file] for f in files if f.file in measured)
    near = [f for f in files if measured.get(f.file, float("inf")) <= best_us * SAME_SPEED]
    return min(near, key=lambda f: (f.size_bytes, -f.agreement))


def _smallest_int8_first(usable: list[ExportedFile], target: Device) -> ExportedFile:
    """int8 files before others (best agreement, then size).

    A target that loads only folder formats (a microcontroller) takes them in the order
    its :attr:`Device.formats` prefers.
    """
    if all(FORMATS[fmt].folder for fmt in target.formats):
        return min(usable, key=lambda f: target.formats.index(f.format))
    int8 = [f for f in usable if f.precision == "int8"]
    if int8:
        # tflite before onnx at equal footing: it runs on every ARM system we test.
        return max(int8, key=lambda f: (f.format == "tflite", f.agreement, -f.size_bytes))
    return min(usable, key=lambda f: f.size_bytes)


def _here() -> str:
    machine = platform.machine() or "unknown"
    return f"this machine ({machine})"


def _reason(row: ExportedFile, target: Device, why_here: str) -> str:
    parts = [why_here] if why_here else []
    facts = row.details.device_facts(row.size_bytes) if row.details is not None else []
    if facts:
        parts += facts
    else:
        parts.append(f"{row.size_bytes / 1024:,.0f} KiB ({row.size_ratio:.2f}x float32)")
        parts.append(f"{100 * row.agreement:.2f}% agreement with Keras")
    if target.why_loadable:
        parts.append(target.why_loadable)
    return "; ".join(parts)
