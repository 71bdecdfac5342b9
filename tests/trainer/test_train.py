import io
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import interruptible

from edgecnn.errors import ConfigError
from edgecnn.trainer.config import TrainConfig

pytestmark = pytest.mark.slow  # every test trains, or loads Keras


def test_a_few_hundred_steps_clear_80_percent(trained_run):
    assert trained_run.metrics["test_accuracy"] > 0.80
    assert "Accuracy on Test-Set: " in trained_run.log
    assert f"({trained_run.metrics['test_correct']} / 10000)" in trained_run.log


def test_run_directory_contents(trained_run, quick_config):
    out = trained_run.out_dir
    for name in ("model.keras", "config.json", "history.json", "metrics.json", "checkpoint.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if ".tmp" in p.name], "temporary files left behind"
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == quick_config
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    assert {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
        "images_per_second",
        "learning_rate",
    } <= set(history[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_total"] == 10_000
    assert 0.8 < metrics["val_accuracy"] <= 1
    assert metrics["train_seconds"] > 0
    assert metrics["parameters"] == 242_062
    assert len(metrics["per_class_accuracy"]) == 10
    assert "Ankle boot" in metrics["per_class_accuracy"]
    assert np.array(metrics["confusion_matrix"]).sum() == 10_000
    # Output files get the usual permissions, not mkstemp's owner-only 0600.
    assert (out / "metrics.json").stat().st_mode & 0o044


def test_model_keras_is_the_best_validation_epoch(trained_run):
    import keras

    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.idx import load_dataset

    model = keras.models.load_model(trained_run.out_dir / "model.keras")
    ds = load_dataset("fashion")
    pred = model.predict(to_float(ds.x_val), verbose=0).argmax(1)
    assert np.mean(pred == ds.y_val) == pytest.approx(trained_run.metrics["val_accuracy"])


def test_model_keras_keeps_the_best_epoch_not_the_last(tmp_path):
    """Three epochs whose validation accuracy peaks in the middle: model.keras is epoch 2."""
    import keras

    from edgecnn.trainer import train as training
    from edgecnn.trainer.config import ModelConfig
    from edgecnn.trainer.model import build_model

    config = TrainConfig(epochs=3, model=ModelConfig(num_filters1=2, num_filters2=2, fc_size=4))
    model = build_model(config.model)
    training.compile_model(model, config, steps_per_epoch=1)
    session = training.Session(tmp_path, config, data=None, model=model, steps_per_epoch=1)
    weights_at = {}
    for epoch, val_accuracy in enumerate([0.5, 0.8, 0.6]):
        kernel, bias = model.get_layer("logits").get_weights()
        model.get_layer("logits").set_weights([kernel + epoch, bias])  # each epoch differs
        logs = {"loss": [1.0], "accuracy": [0.5], "val_loss": [1.0], "val_accuracy": [val_accuracy]}
        training._record_epoch(session, epoch, logs, 1.0, 100, lambda line: None)
        weights_at[epoch + 1] = model.get_weights()
    saved = keras.models.load_model(tmp_path / "model.keras", compile=False).get_weights()
    for kept, best in zip(saved, weights_at[2], strict=True):
        np.testing.assert_array_equal(kept, best)
    assert session.best_val == 0.8 and [h["epoch"] for h in session.history] == [1, 2, 3]
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["epoch"] == 3 and state["checkpoint"] == "checkpoint-e003.keras"
    assert sorted(p.name for p in tmp_path.glob("checkpoint-e*.keras")) == ["checkpoint-e003.keras"]


def _weights(path):
    import keras

    return keras.models.load_model(path).get_weights()


def test_same_seed_same_result(tmp_path, fashion_dir):
    from edgecnn.trainer.train import train

    cfg = TrainConfig(epochs=1, train_subset=3000, seed=3)
    a = train(cfg, tmp_path / "a", data_dir=fashion_dir, stream=io.StringIO())
    b = train(cfg, tmp_path / "b", data_dir=fashion_dir, stream=io.StringIO())
    for wa, wb in zip(
        _weights(tmp_path / "a/model.keras"), _weights(tmp_path / "b/model.keras"), strict=True
    ):
        np.testing.assert_array_equal(wa, wb)
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    train(
        TrainConfig(epochs=1, train_subset=3000, seed=4),
        tmp_path / "c",
        data_dir=fashion_dir,
        stream=io.StringIO(),
    )
    assert not np.array_equal(
        _weights(tmp_path / "c/model.keras")[0], _weights(tmp_path / "a/model.keras")[0]
    )


def _edgecnn(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "edgecnn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
        **kwargs,
    )


#: Epochs of about half a second each here: the first checkpoint appears with several still
#: to go, so Ctrl-C lands in training even when this machine is busy (with 3, a loaded CI
#: machine once let the run finish before the signal arrived).
INTERRUPTED_EPOCHS = 8


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes_identically(tmp_path, fashion_dir):
    from edgecnn.trainer.train import train

    args = [
        "train",
        "--data-dir",
        str(fashion_dir),
        "--train-subset",
        "6000",
        "--epochs",
        str(INTERRUPTED_EPOCHS),
        "--seed",
        "5",
    ]
    proc = _edgecnn(*args, "--out", str(tmp_path / "run"))
    state = tmp_path / "run" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while not state.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "last good checkpoint" in err and "--resume" in err
    assert "Traceback" not in err
    saved = json.loads(state.read_text())
    assert 1 <= saved["epoch"] < INTERRUPTED_EPOCHS
    assert (tmp_path / "run" / saved["checkpoint"]).is_file()
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]

    resumed = _edgecnn(
        "train", "--resume", "--out", str(tmp_path / "run"), "--data-dir", str(fashion_dir)
    )
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "Resuming from" in out and "Accuracy on Test-Set" in out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, INTERRUPTED_EPOCHS + 1))

    # The interrupted-and-resumed run ends exactly where an uninterrupted one does.
    cfg = TrainConfig(train_subset=6000, epochs=INTERRUPTED_EPOCHS, seed=5)
    train(cfg, tmp_path / "straight", data_dir=fashion_dir, stream=io.StringIO())
    for a, b in zip(
        _weights(tmp_path / "run/model.keras"),
        _weights(tmp_path / "straight/model.keras"),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    from edgecnn.trainer.train import read_checkpoint_state

    with pytest.raises(ConfigError, match="nothing to resume"):
        read_checkpoint_state(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{broken")
    with pytest.raises(ConfigError, match="unreadable"):
        read_checkpoint_state(tmp_path)


def test_a_fresh_run_clears_an_old_run_in_the_same_folder(tmp_path, fashion_dir):
    from edgecnn.trainer.train import train

    out = tmp_path / "run"
    out.mkdir()
    for stale in ("model.keras", "checkpoint-e007.keras", "metrics.json", "history.json"):
        (out / stale).write_text("from an older run")
    train(TrainConfig(epochs=1, train_subset=500), out, data_dir=fashion_dir, stream=io.StringIO())
    assert not (out / "checkpoint-e007.keras").exists()
    assert json.loads((out / "history.json").read_text())[0]["epoch"] == 1
    assert (out / "model.keras").read_bytes()[:2] == b"PK"
