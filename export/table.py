"""The export report as a table for people."""

from __future__ import annotations

from typing import Any

#: What the latency column holds, said under the table.
GATE_LATENCY = "latency: median of 200 single-image calls through edgecnn.runtime while verifying"


def format_table(
    report: dict[str, Any], latency_us: dict[str, float] | None = None, latency_note: str = ""
) -> str:
    """One row per exported file: size, accuracy, agreement, latency, gate.

    ``latency_us`` replaces the verification's own single-image latency (say, by a
    benchmark's p50); ``latency_note`` then says what it is.
    """
    header = (
        f"{'format':8s} {'file':22s} {'KiB':>7s} {'ratio':>6s} {'accuracy':>9s} "
        f"{'delta':>7s} {'agree':>8s} {'max |dp|':>9s} {'latency':>9s}  gate"
    )
    lines = [
        f"Export of {report['source']} ({report['dataset']}, Keras accuracy "
        f"{100 * report['keras_accuracy']:.2f}% on {report['test_images']:,} test images"
        + _agreement_note(report)
        + ")",
        header,
        "-" * len(header),
    ]
    for r in report["files"]:
        gate = "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        latency = r["latency_us"] if latency_us is None else latency_us.get(r["file"])
        shown = f"{latency:7.0f}us" if latency is not None else f"{'-':>9s}"
        lines.append(
            f"{r['format']:8s} {r['file']:22s} {r['size_bytes'] / 1024:7.1f} "
            f"{r['size_ratio']:6.3f} {100 * r['accuracy']:8.2f}% {r['delta_pp']:+6.2f}pp "
            f"{100 * r['agreement']:7.2f}% {r['max_prob_diff']:9.2e} {shown}  {gate}"
        )
    kept = sum(r["passed"] for r in report["files"])
    lines.append(
        f"{kept} of {len(report['files'])} files passed their gate; written to "
        f"{report['out_dir']} in {report['seconds']:.0f} s"
    )
    rejected = [r["file"] for r in report["files"] if not r["passed"]]
    if rejected:
        lines.append("Rejected (moved aside as *.rejected): " + ", ".join(rejected))
    lines += runtime_notes(report)
    lines += folder_notes(report)
    lines.append(latency_note or GATE_LATENCY)
    return "\n".join(lines)


def _agreement_note(report: dict[str, Any]) -> str:
    """``; agreement on 10,000 images`` when agreement was measured on more than the test set."""
    checked = report.get("agreement_images", report["test_images"])
    return f"; agreement on {checked:,} images" if checked != report["test_images"] else ""


def runtime_notes(report: dict[str, Any]) -> list[str]:
    """Each file's verification on the ``--verify-with`` backends, a line per backend."""
    lines = []
    for r in report["files"]:
        for name, m in r.get("runtimes", {}).items():
            if "error" in m:
                lines.append(f"{r['file']} on {name}: FAIL: {m['error']}")
                continue
            gate = "pass" if not m["failures"] else "FAIL: " + "; ".join(m["failures"])
            lines.append(
                f"{r['file']} on {name}: accuracy {100 * m['accuracy']:.2f}% "
                f"({m['delta_pp']:+.2f}pp), agreement {100 * m['agreement']:.2f}%, max |dp| "
                f"{m['max_prob_diff']:.2e}, latency {m['latency_us']:.0f}us  {gate}"
            )
    return lines


def folder_notes(report: dict[str, Any]) -> list[str]:
    """What the microcontroller rows proved beyond the gate, and the formats left out."""
    lines = []
    for r in report["files"]:
        if r["format"] == "c" and "reference_identical" in r:
            n = r["reference_images"]
            line = (
                f"{r['file']}: int8 scores bit-identical to TFLite's reference kernels on "
                f"{100 * r['reference_identical']:.2f}% of {n:,} images; work buffer "
                f"{r['c']['work_bytes']:,} B"
            )
            mcu = r.get("mcu", {})
            if "library_flash" in mcu:
                line += f"; Cortex-M4 -Os: flash {mcu['library_flash'] / 1024:.1f} KiB"
            if "stack_bytes" in mcu:
                line += (
                    f", stack {mcu['stack_bytes']:,} B, {mcu['instructions'] / 1e6:.1f}M "
                    "instructions per image, test vectors equal under QEMU"
                )
            elif "skipped" in mcu or "run" in mcu:
                line += f" (Cortex-M4 not measured: {mcu.get('skipped') or mcu['run']})"
            lines.append(line)
        if r["format"] == "tflm" and "tflm" in r:
            lines.append(
                f"{r['file']}: TFLM's kernels give the reference kernels' top-1 on "
                f"{100 * r['reference_top1']:.2f}% of {r['reference_images']:,} images; "
                f"tensor arena {r['tflm']['arena_bytes']:,} B"
            )
    for skipped in report.get("skipped", []):
        lines.append(f"{skipped['format']}: skipped ({skipped['reason']})")
    return lines
