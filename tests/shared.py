"""Names the tests share: where the small models are, which files an export writes."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

from edgecnn.export.config import ExportConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
#: Models made by tools/make_test_models.py: every format, small, sealed, with sidecars.
TINY = DATA / "tiny"
TINY_FILES = (
    "model_float32.tflite",
    "model_int8.tflite",
    "model_float32.onnx",
    "model_int8.onnx",
    "weights.npz",
)
#: A picture of Fashion-MNIST test image 0, an ankle boot, and the same as an array.
PICTURE = DATA / "ankle_boot.png"
ARRAY = DATA / "ankle_boot.npy"
#: What the session's export (and edgecnn run) writes, in order.
EXPORTED_FILES = tuple(ExportConfig(int8=True, fp16=True, dynamic=True).file_names())


def bench_module(stem: str) -> ModuleType:
    """``bench/<stem>.py``, loaded once (bench/ is not a package).

    Registered in ``sys.modules`` as ``bench_<stem>``, as its dataclasses need.
    """
    name = f"bench_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def source_copy(folder: Path) -> Path:
    """The checkout as git would clone it, without build leftovers, caches or the venv.

    Building from a copy leaves no build/ or *.egg-info in the checkout.
    """
    src = folder / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,  # edgecnn/runtime and friends stay links to the stage folders
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "*.egg-info", "build", "__pycache__", ".*_cache"
        ),
    )
    return src


def tiny_exports_with_references(folder, images, labels, names=None):
    """Copy the tiny files into ``folder``, each with a verify reference as the exporter
    writes it (Keras stood in for by the float32 .tflite, which matches it to 1e-6), and
    the export report. Returns ``folder``."""
    import shutil

    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.verify import reference_bytes, reference_path

    names = names or ("model_int8.tflite", "model_float32.onnx", "weights.npz", "model_int8.onnx")
    keras = load_classifier(TINY / "model_float32.tflite").predict(images)
    gates = {"float32": (0.999, 1e-4), "int8": (0.99, None)}
    shutil.copy(TINY / "export_report.json", folder / "export_report.json")
    for name in names:
        for f in (name, f"{name}.json"):
            shutil.copy(TINY / f, folder / f)
        clf = load_classifier(folder / name)
        precision = clf.metadata.precision
        min_agreement, max_diff = gates[precision]
        gate = {"file": name, "precision": precision, "backend": clf.backend_name,
                "min_agreement": min_agreement, "max_prob_diff": max_diff}  # fmt: skip
        reference_path(folder / name).write_bytes(
            reference_bytes(images, labels, keras, clf.predict(images), gate)
        )
    return folder


def export_record(file: str, fmt: str, passed: bool = True, **changes: object):
    """A record of ``file`` as an export writes one: the tiny float32 .tflite's, renamed.

    A folder format's record gets its format's details (made-up sizes).
    """
    import dataclasses

    from edgecnn.export.formats import FORMATS

    report = _tiny_report()
    details = None
    if FORMATS[fmt].folder:
        from edgecnn.export.formats.c import Details as CDetails
        from edgecnn.export.formats.tflm import Details as TflmDetails

        details = (
            CDetails(4900, 40_000, 500, 60_000, 1.0, 100, 0.99, 32)
            if fmt == "c"
            else TflmDetails(20_000, ("CONV_2D",), 1.0, 100, 1.0, 0)
        )
    return dataclasses.replace(
        report.files[0], file=file, format=fmt, passed=passed, details=details,
        precision="int8" if FORMATS[fmt].folder else report.files[0].precision,
        **changes,
    )  # fmt: skip


def export_report_document(records=(), source_sha256: str | None = None) -> dict:
    """``export_report.json`` as an export writes it, holding ``records``."""
    import dataclasses

    report = _tiny_report()
    source = source_sha256 if source_sha256 is not None else report.source_sha256
    return dataclasses.replace(report, files=tuple(records), source_sha256=source).to_dict()


def _tiny_report():
    import json

    from edgecnn.export.records import ExportReport

    return ExportReport.from_dict(json.loads((TINY / "export_report.json").read_text()))
