"""Shared fixtures: the real Fashion-MNIST files and a briefly trained model, built once."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

# Tests never download anything: a missing dataset must fail loudly, not fetch.
os.environ["EDGECNN_OFFLINE"] = "1"

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


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
def keras_reference(trained_run, fashion_dir):
    """The Keras model's probabilities on the 10,000 test images, and the labels."""
    import keras
    import numpy as np

    from edgecnn.trainer.data import load_dataset, to_float

    model = keras.models.load_model(trained_run.out_dir / "model.keras")
    data = load_dataset("fashion", fashion_dir)
    logits = model.predict(to_float(data.x_test), batch_size=1000, verbose=0)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return SimpleNamespace(probs=probs / probs.sum(1, keepdims=True), x=data.x_test, y=data.y_test)
