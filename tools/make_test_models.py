"""Make the small model files the fast tests run on: ``tests/data/tiny/``.

The tutorial network with fewer filters (4 and 8, dense 32), trained for one epoch on
20,000 real Fashion-MNIST images, then exported in every format through the real
exporter and its gates. The fast tests read these files with the runtime alone, so they
need neither TensorFlow nor training; ``full_integer/`` holds the int8 ``.tflite`` as
``--full-integer`` writes it. Run it again when the exported format changes:

    .venv/bin/python tools/make_test_models.py
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

from edgecnn import _atomic
from edgecnn.export.config import ExportConfig
from edgecnn.export.exporter import export_model
from edgecnn.run_folder import EXPORT_REPORT_FILE
from edgecnn.trainer.config import ModelConfig, TrainConfig
from edgecnn.trainer.train import train

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny"
CONFIG = TrainConfig(
    epochs=1,
    batch_size=64,
    train_subset=20_000,
    seed=7,
    model=ModelConfig(num_filters1=4, num_filters2=8, fc_size=32),
)


def main() -> None:
    """Train, export, and copy the files into tests/data/tiny."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        result = train(CONFIG, run, stream=io.StringIO())
        exports = run / "exports"
        # A network this small agrees less with itself in int8; these files only feed tests.
        config = ExportConfig(int8=True, min_agreement=0.97, max_accuracy_drop=1.0)
        report = export_model(run, config, out_dir=exports, stream=io.StringIO())
        if not report["passed"]:
            raise SystemExit("a tiny export failed its gate; see the report")
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        for row in report["files"]:
            for name in (row["file"], f"{row['file']}.json"):
                shutil.copy(exports / name, OUT / name)
        # The same int8 .tflite with every layer int8 (--full-integer), which the runtime
        # and the examples must read as well: int8 output, probabilities in steps of 1/256.
        full = ExportConfig(formats=("tflite",), int8=True, full_integer=True,
                            min_agreement=0.97, max_accuracy_drop=1.0)  # fmt: skip
        export_model(run, full, out_dir=run / "full", stream=io.StringIO())
        (OUT / "full_integer").mkdir()
        for name in ("model_int8.tflite", "model_int8.tflite.json"):
            shutil.copy(run / "full" / name, OUT / "full_integer" / name)
        # The report as the tests read it, without this machine's temporary paths.
        report = {**report, "source": "run/model.keras", "out_dir": "run/exports"}
        _atomic.write_json(OUT / EXPORT_REPORT_FILE, report)
    accuracy = 100 * result.metrics["test_accuracy"]
    print(f"wrote {OUT}: test accuracy {accuracy:.1f}%")
    for row in report["files"]:
        print(f"  {row['file']:22s} {row['size_bytes'] / 1024:6.1f} KiB  "
              f"agreement {100 * row['agreement']:.2f}%")  # fmt: skip


if __name__ == "__main__":
    main()
