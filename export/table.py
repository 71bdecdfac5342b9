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
    lines.append(latency_note or GATE_LATENCY)
    return "\n".join(lines)


def _agreement_note(report: dict[str, Any]) -> str:
    """``; agreement on 10,000 images`` when agreement was measured on more than the test set."""
    checked = report.get("agreement_images", report["test_images"])
    return f"; agreement on {checked:,} images" if checked != report["test_images"] else ""
