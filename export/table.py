"""The export report as a table for people."""

from __future__ import annotations

from edgecnn.export.records import ExportReport

#: What the latency column holds, said under the table.
GATE_LATENCY = "latency: median of 200 single-image calls through edgecnn.runtime while verifying"


def format_table(
    report: ExportReport, latency_us: dict[str, float] | None = None, latency_note: str = ""
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
        f"Export of {report.source} ({report.dataset}, Keras accuracy "
        f"{100 * report.keras_accuracy:.2f}% on {report.test_images:,} test images"
        + _agreement_note(report)
        + ")",
        header,
        "-" * len(header),
    ]
    for r in report.files:
        gate = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        latency = r.latency_us if latency_us is None else latency_us.get(r.file)
        shown = f"{latency:7.0f}us" if latency is not None else f"{'-':>9s}"
        s = r.scores
        lines.append(
            f"{r.format:8s} {r.file:22s} {r.size_bytes / 1024:7.1f} "
            f"{r.size_ratio:6.3f} {100 * s.accuracy:8.2f}% {s.delta_pp:+6.2f}pp "
            f"{100 * s.agreement:7.2f}% {s.max_prob_diff:9.2e} {shown}  {gate}"
        )
    lines.append(
        f"{len(report.kept)} of {len(report.files)} files passed their gate; written to "
        f"{report.out_dir} in {report.seconds:.0f} s"
    )
    rejected = [r.file for r in report.files if not r.passed]
    if rejected:
        lines.append("Rejected (moved aside as *.rejected): " + ", ".join(rejected))
    lines += runtime_notes(report)
    lines += format_notes(report)
    lines.append(latency_note or GATE_LATENCY)
    return "\n".join(lines)


def _agreement_note(report: ExportReport) -> str:
    """``; agreement on 10,000 images`` when agreement was measured on more than the test set."""
    checked = report.agreement_images
    return f"; agreement on {checked:,} images" if checked != report.test_images else ""


def runtime_notes(report: ExportReport) -> list[str]:
    """Each file's verification on the ``--verify-with`` backends, a line per backend."""
    lines = []
    for r in report.files:
        for name, m in r.runtimes.items():
            if m.scores is None:
                lines.append(f"{r.file} on {name}: FAIL: {m.error}")
                continue
            gate = "pass" if not m.failures else "FAIL: " + "; ".join(m.failures)
            s = m.scores
            latency = "-" if m.latency_us is None else f"{m.latency_us:.0f}us"
            lines.append(
                f"{r.file} on {name}: accuracy {100 * s.accuracy:.2f}% "
                f"({s.delta_pp:+.2f}pp), agreement {100 * s.agreement:.2f}%, max |dp| "
                f"{s.max_prob_diff:.2e}, latency {latency}  {gate}"
            )
    return lines


def format_notes(report: ExportReport) -> list[str]:
    """What each format proved beyond the gate (its own words), and the formats left out."""
    lines = []
    for r in report.files:
        note = r.details.table_note(r.file) if r.details is not None else None
        if note:
            lines.append(note)
    for skipped in report.skipped:
        lines.append(f"{skipped.format}: skipped ({skipped.reason})")
    return lines
