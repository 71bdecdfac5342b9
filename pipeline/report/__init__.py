"""``report.html``: one self-contained page about a run, readable on a laptop or a phone.

``html`` builds the page from parts, ``sections`` describes the run itself (summary,
training, accuracy, the network), ``exports`` the exported files (gates, benchmark,
microcontrollers, usage), ``int8`` what the int8 files changed against Keras, ``doctor``
why int8 lost agreement (when it did), ``calibration`` how far each file's confidence can
be trusted (temperature, ECE before and after, "unknown"), ``charts`` draws the report's
own figures, ``style`` is its stylesheet.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn import _atomic
from edgecnn.run_folder import CHART_FILES, DOCTOR_CHART, REPORT_FILE


def write_report(run_dir: Path) -> Path:
    """Draw the report's charts into ``run_dir`` and write ``report.html`` beside them."""
    from edgecnn.pipeline.report import calibration, charts, doctor, exports, int8, sections
    from edgecnn.pipeline.report.html import page, section
    from edgecnn.pipeline.results import RunData
    from edgecnn.trainer.plots import save_figure

    parts_of_page = [
        ("summary", "Summary", sections.summary),
        ("training", "Training", sections.training),
        ("accuracy", "Test accuracy", sections.accuracy),
        ("network", "Inside the network", sections.network),
        ("exports", "Exported models", exports.exports),
        ("benchmark", "Benchmark", exports.benchmark),
        ("int8", "What int8 changed", int8.int8_changes),
        ("doctor", "int8 doctor", doctor.doctor),
        ("confidence", "Confidence", calibration.calibration),
        ("mcu", "On a microcontroller", exports.microcontrollers),
        ("use", "Use it", exports.usage),
    ]
    run = RunData.load(run_dir)
    curves, sizes = CHART_FILES
    save_figure(charts.plot_history(run.history), run_dir / curves)
    save_figure(charts.plot_exports(run.export.files, run.latency_by_file()), run_dir / sizes)
    diagnosis = doctor.read_diagnosis(run_dir)
    if diagnosis is not None:
        save_figure(charts.plot_doctor(diagnosis), run_dir / DOCTOR_CHART)
    parts = [(anchor, title, build(run)) for anchor, title, build in parts_of_page]
    document = page(
        f"edgecnn run {run.name}",
        [(anchor, title) for anchor, title, _ in parts],
        "".join(section(anchor, title, body) for anchor, title, body in parts),
    )
    path = run_dir / REPORT_FILE
    _atomic.write_text(path, document)
    return path
