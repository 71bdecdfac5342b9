"""Shared fixtures: the real Fashion-MNIST files, small checked-in models, and (for the slow
tests) a briefly trained model and its exports, built once per session.

``pytest -m "not slow and not pi"`` is the fast loop: the runtime on the files in
``tests/data/tiny``, no TensorFlow. Which tests are ``slow`` is checked, not remembered: a
test not marked ``slow`` (or ``pi``) that imports TensorFlow or Keras while it runs (its
fixtures included) fails, saying so (:func:`pytest_runtest_makereport`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from shared import TINY

# Tests never download anything: a missing dataset must fail loudly, not fetch.
os.environ["EDGECNN_OFFLINE"] = "1"

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
#: Modules only the slow tests may import: loading them takes seconds and gigabytes.
HEAVY_MODULES = ("tensorflow", "keras")
_HEAVY_BEFORE = pytest.StashKey[set]()  # those loaded before a test's setup
_HEAVY_REPORTED = pytest.StashKey[bool]()  # a test is failed for it once
#: Session fixtures that train a model or export one. A test using one is marked ``slow``
#: at collection: the import check below would catch it only when the fixture is set up
#: (the first test using it), and a test ``-m "not slow"`` deselects should not wait for a
#: model to be trained to be told. Fixtures local to one module are marked there.
SLOW_FIXTURES = {"trained_run", "exported", "keras_reference", "pipeline_run", "crafted_run"}


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a slow fixture (or cross-compiles: ``mcu``) as ``slow``."""
    for item in items:
        slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if slow_fixture or item.get_closest_marker("mcu"):
            item.add_marker(pytest.mark.slow)


def _heavy_loaded() -> set[str]:
    return {name for name in HEAVY_MODULES if name in sys.modules}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    """Note which heavy modules were loaded before this test's fixtures were set up."""
    item.stash[_HEAVY_BEFORE] = _heavy_loaded()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Fail a test not marked ``slow`` (or ``pi``) that imported TensorFlow or Keras.

    Every test runs in this one process, so once a slow test has imported TensorFlow the
    ones after it find it loaded: what counts is whether it was imported during this test
    (its setup, call or teardown). In the fast loop no slow test runs, so there the check
    is exact; in the whole suite it catches a test that happens to run before any slow one.
    """
    report = yield
    before = item.stash.get(_HEAVY_BEFORE, None)
    if before is None or report.failed or _marked_heavy(item):
        return report
    imported = sorted(_heavy_loaded() - before)
    if imported and not item.stash.get(_HEAVY_REPORTED, False):
        item.stash[_HEAVY_REPORTED] = True
        report.outcome = "failed"
        report.longrepr = f"imported {' and '.join(imported)}: mark it slow"
    return report


def _marked_heavy(item) -> bool:
    return any(item.get_closest_marker(name) for name in ("slow", "pi"))


@pytest.fixture(scope="session")
def tiny() -> Path:
    """The folder of small checked-in models (see tests/data/README.md)."""
    return TINY


@pytest.fixture(scope="session")
def test_images(fashion_dir):
    """The 10,000 real Fashion-MNIST test images (uint8) and labels; no TensorFlow."""
    from edgecnn.trainer.idx import load_arrays

    (_, _, x_test, y_test), _ = load_arrays("fashion", fashion_dir)
    return SimpleNamespace(x=x_test, y=y_test)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder holding the real Fashion-MNIST IDX files."""
    folder = Path(os.environ.get("EDGECNN_DATA_DIR", DEBIAN_FASHION))
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"the real Fashion-MNIST files are not in {folder}: run "
            "'apt-get install dataset-fashion-mnist' (tools/bootstrap.sh does) or set "
            "EDGECNN_DATA_DIR",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def quick_config():
    """A few hundred real training steps: enough to clear 80% test accuracy in seconds."""
    from edgecnn.trainer.config import TrainConfig

    return TrainConfig(epochs=1, batch_size=64, train_subset=20_000, seed=7)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fashion_dir, quick_config):
    """A run directory with a model trained on real Fashion-MNIST (once per session)."""
    import dataclasses
    import io

    from edgecnn.trainer.train import train

    out = tmp_path_factory.mktemp("run")
    log = io.StringIO()
    result = train(quick_config, out, data_dir=fashion_dir, stream=log)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return SimpleNamespace(**fields, log=log.getvalue())


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory, fashion_dir):
    """Every export of the trained fixture (int8, float16, dynamic too), verified, once."""
    import io

    from edgecnn.export.config import ExportConfig
    from edgecnn.export.exporter import export_model

    out = tmp_path_factory.mktemp("exports")
    log = io.StringIO()
    config = ExportConfig(int8=True, fp16=True, dynamic=True)
    report = export_model(
        trained_run.out_dir, config, out_dir=out, data_dir=fashion_dir, stream=log
    )
    return SimpleNamespace(
        out=out, report=report, log=log.getvalue(), model_path=trained_run.out_dir / "model.keras"
    )


@pytest.fixture(scope="session")
def crafted_run(trained_run, tmp_path_factory, fashion_dir):
    """The trained fixture's run with conv1's channel 3 scaled up 100x and conv2's weights
    from it scaled down 100x (:data:`int8_helpers.CRAFTED`): the same float function (its
    logits checked equal to 1e-5 of their span on the test images), which plain per-tensor
    int8 calibration fails. ``out_dir`` is a run folder like ``trained_run``'s."""
    import shutil

    import keras
    from int8_helpers import CRAFTED, craft, float_change

    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.idx import load_dataset

    out = tmp_path_factory.mktemp("crafted") / "run"
    shutil.copytree(trained_run.out_dir, out)
    original = keras.models.load_model(trained_run.out_dir / "model.keras")
    model = craft(keras.models.load_model(trained_run.out_dir / "model.keras"), **CRAFTED)
    images = to_float(load_dataset("fashion", fashion_dir).x_test)
    change = float_change(original, model, images)
    assert change < 1e-5, change
    (out / "model.keras").unlink()
    model.save(out / "model.keras")
    return SimpleNamespace(out_dir=out, model_path=out / "model.keras", float_change=change)


@pytest.fixture(scope="session")
def keras_reference(trained_run, fashion_dir):
    """The Keras model's probabilities on the 10,000 test images, and the labels."""
    import keras
    import numpy as np

    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.idx import load_dataset

    model = keras.models.load_model(trained_run.out_dir / "model.keras")
    data = load_dataset("fashion", fashion_dir)
    logits = model.predict(to_float(data.x_test), batch_size=1000, verbose=0)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return SimpleNamespace(probs=probs / probs.sum(1, keepdims=True), x=data.x_test, y=data.y_test)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, fashion_dir):
    """``edgecnn run`` on a small budget whose export stage fails once, then ``--resume``.

    The failure is injected into the real exporter: the third file's conversion raises
    "No space left on device" (a condition of the machine), after two files were converted
    and verified.
    """
    import hashlib
    import json

    from cli_helpers import invoke

    from edgecnn.export import exporter

    out = tmp_path_factory.mktemp("pipeline") / "run"
    args = ["--out", out, "--data-dir", fashion_dir]
    real_convert, calls = exporter._convert, []

    def failing_convert(*a, **kw):
        calls.append(a[:2])
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_convert(*a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exporter, "_convert", failing_convert)
        # Two epochs: after one, a few hundred near-ties make int8 agreement a coin toss
        # around the 99% gate on some CPUs.
        failed = invoke("run", "--epochs", 2, "--train-subset", 20_000, "--bench-runs", 50, *args)
    # A failed export leaves no exports/ (or the earlier one, whole): never a mix.
    exports = out / "exports"
    exports_after_failure = sorted(p.name for p in exports.iterdir()) if exports.exists() else []
    leftovers = sorted(p.name for p in out.iterdir() if ".partial-" in p.name or ".old-" in p.name)
    model_sha = hashlib.sha256((out / "model.keras").read_bytes()).hexdigest()
    state_after_failure = json.loads((out / "run.json").read_text())
    resumed = invoke("run", "--resume", *args)
    return SimpleNamespace(
        out=out,
        failed=failed,
        failed_state=state_after_failure,
        model_sha_after_failure=model_sha,
        resumed=resumed,
        exports_tried_before_failure=list(calls),
        exports_after_failure=exports_after_failure,
        export_leftovers=leftovers,
    )
