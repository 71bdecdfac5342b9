"""Shared fixtures: the real Fashion-MNIST files and a briefly trained model, built once."""

from __future__ import annotations

import os
from pathlib import Path

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
    from types import SimpleNamespace

    from edgecnn.trainer.train import train

    out = tmp_path_factory.mktemp("run")
    log = io.StringIO()
    result = train(quick_config, out, data_dir=fashion_dir, stream=log)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return SimpleNamespace(**fields, log=log.getvalue())
