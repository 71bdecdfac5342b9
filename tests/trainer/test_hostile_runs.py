"""What hostile or unlucky input used to do to training, evaluation and export."""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import struct

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from idx_files import STEMS, write_dataset

from edgecnn.errors import DataError
from edgecnn.trainer import idx


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- edgecnn train never silently replaces a model ---------------------------------------


def test_train_refuses_a_folder_with_a_trained_model(trained_run, tmp_path, fashion_dir):
    run = tmp_path / "run"
    shutil.copytree(trained_run.out_dir, run)
    before = {p.name: _sha(p) for p in run.iterdir() if p.is_file()}
    result = invoke("train", "--out", run, "--data-dir", fashion_dir, "--epochs", 1)
    assert_one_line_error(result, "already holds a trained model.keras")
    assert "--force" in result.stderr
    assert {p.name: _sha(p) for p in run.iterdir() if p.is_file()} == before


def test_train_never_touches_a_folder_of_edgecnn_run(tmp_path, fashion_dir):
    run = tmp_path / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "model.keras").write_text("the pipeline's model")
    (tmp_path / "runs" / "latest").symlink_to(run.name)
    for out in (run, tmp_path / "runs" / "latest"):
        for extra in ([], ["--force"], ["--resume"]):
            result = invoke("train", "--out", out, "--data-dir", fashion_dir, *extra)
            assert_one_line_error(result, "is a run of 'edgecnn run'")
    assert (run / "model.keras").read_text() == "the pipeline's model"


def test_an_interrupted_training_is_not_started_over_by_accident(tmp_path, fashion_dir):
    (tmp_path / "checkpoint.json").write_text("{}")
    result = invoke("train", "--out", tmp_path, "--data-dir", fashion_dir)
    assert_one_line_error(result, "holds an interrupted training")


@pytest.mark.slow
def test_default_train_writes_a_new_folder_and_force_replaces(tmp_path, fashion_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--data-dir", fashion_dir, "--epochs", 1, "--train-subset", 500, "--batch-size", 64]
    first = invoke("train", *args)
    assert first.exit_code == 0, first.stderr
    second = invoke("train", *args, "--seed", 3)
    assert second.exit_code == 0, second.stderr
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and all((r / "model.keras").is_file() for r in runs)
    assert (tmp_path / "runs" / "latest").resolve() == runs[1].resolve()
    old = _sha(runs[0] / "model.keras")
    forced = invoke("train", *args, "--seed", 4, "--out", runs[0], "--force")
    assert forced.exit_code == 0, forced.stderr
    assert _sha(runs[0] / "model.keras") != old


@pytest.mark.slow
def test_a_failed_train_leaves_no_empty_folder(tmp_path, fashion_dir):
    broken = tmp_path / "data"
    write_dataset(broken)
    (broken / (STEMS["train_images"] + ".gz")).write_bytes(b"not gzip")
    out = tmp_path / "new-run"
    assert_one_line_error(invoke("train", "--out", out, "--data-dir", broken), "cannot read")
    assert not out.exists()


# -- checkpoints, IDX headers, layer names, full disks, NaN gates ------------------------


@pytest.mark.parametrize(
    "state,match",
    [
        ({"checkpoint": "checkpoint-e001.keras", "epoch": -5}, "not a completed epoch"),
        ({"checkpoint": "../../etc/passwd", "epoch": 1}, "not a checkpoint file"),
        ({"checkpoint": "/etc/passwd", "epoch": 1}, "not a checkpoint file"),
        ([1, 2], "unreadable"),
    ],
)
def test_impossible_checkpoint_records_are_refused(tmp_path, state, match):
    (tmp_path / "checkpoint.json").write_text(json.dumps(state))
    (tmp_path / "config.json").write_text("{}")
    assert_one_line_error(invoke("train", "--resume", "--out", tmp_path), match)


def test_a_truncated_checkpoint_says_it_is_damaged(trained_run, tmp_path, fashion_dir):
    run = tmp_path / "run"
    shutil.copytree(trained_run.out_dir, run)
    state = json.loads((run / "checkpoint.json").read_text())
    checkpoint = run / state["checkpoint"]
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    result = invoke("train", "--resume", "--out", run, "--data-dir", fashion_dir)
    assert_one_line_error(result, "is damaged")


def test_idx_dimensions_whose_product_wraps_are_refused(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4)  # 2**64: 0 in int64
    (tmp_path / "x.idx").write_bytes(header)
    with pytest.raises(DataError, match="truncated"):
        idx.read_idx(tmp_path / "x.idx")


def test_a_folder_missing_one_idx_file_names_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECNN_DATA_DIR", raising=False)
    write_dataset(tmp_path / "d")
    (tmp_path / "d" / (STEMS["test_labels"] + ".gz")).unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        idx.load_dataset("fashion", tmp_path / "d")


def test_idx_files_that_are_devices_are_refused(tmp_path):
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="not a regular file"):
        idx.read_idx(tmp_path / "zero")


@pytest.fixture(scope="module")
def renamed_layers(tmp_path_factory):
    """A Keras model of the right shapes whose layers are not named as edgecnn's."""
    import keras

    out = tmp_path_factory.mktemp("renamed") / "model.keras"
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 5, padding="same", name="first"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="last"),
        ]
    )
    model.save(out)
    return out


@pytest.mark.slow
def test_export_refuses_a_foreign_network_before_writing_anything(renamed_layers, tmp_path):
    out = tmp_path / "exports"
    result = invoke("export", renamed_layers, "--out", out)
    assert_one_line_error(result, "not an edgecnn network: it has no layer named conv1")
    assert not out.exists() or not list(out.iterdir())
    assert_one_line_error(invoke("evaluate", renamed_layers), "no layer named conv1")


@pytest.mark.parametrize("option", ["--max-accuracy-drop", "--min-agreement"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_gates_that_could_never_fail_are_refused(trained_run, option, value):
    assert_one_line_error(invoke("export", trained_run.out_dir, option, value), option)


def test_a_full_disk_during_export_is_said_plainly(trained_run, tmp_path, monkeypatch, fashion_dir):
    from edgecnn import _atomic

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic, "write_synced", full)
    out = tmp_path / "exports"
    result = invoke(
        "export", trained_run.out_dir, "--formats", "onnx", "--out", out, "--data-dir", fashion_dir
    )
    assert_one_line_error(result, "no space left on the device")
    assert not out.exists()  # nothing could be written, so the folder it made is gone


def test_a_killed_exports_temporaries_are_cleaned_up(trained_run, tmp_path, fashion_dir):
    out = tmp_path / "exports"
    out.mkdir()
    stale = [out / ".model_float32.k3j2h1.tmp.onnx", out / ".model_int8.x8y7z6.tmp.tflite"]
    for path in stale:
        path.write_bytes(os.urandom(100))
    result = invoke(
        "export", trained_run.out_dir, "--formats", "onnx", "--out", out, "--data-dir", fashion_dir
    )
    assert result.exit_code == 0, result.stderr
    assert not any(p.exists() for p in stale)


def test_two_exports_into_one_folder_do_not_mix(trained_run, tmp_path):
    import fcntl

    from edgecnn.export.staging import lock_path

    out = tmp_path / "exports"
    out.mkdir()
    with open(lock_path(out), "w") as held:  # as a running export holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("export", trained_run.out_dir, "--formats", "onnx", "--out", out)
    assert_one_line_error(result, "being written by another")
    assert list(out.iterdir()) == []


def test_exported_files_never_hold_nan_json(exported):
    for path in exported.out.glob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path
        json.loads(text)
    assert np.isfinite([r.scores.max_prob_diff for r in exported.report.files]).all()


# -- checkpoint.json edited by hand ------------------------------------------------------


@pytest.mark.parametrize(
    "config,match",
    [
        ({"epochs": "abc"}, "epochs must be a whole number of at least 1, got 'abc'"),
        ({"epochs": 1.5}, "epochs must be a whole number of at least 1, got 1.5"),
        ({"seed": 2**80}, "seed must be a whole number from 0 to 4294967295"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"model": {"num_filters1": True}}, "num_filters1 must be a positive integer"),
        ({"model": None}, "model must be an object"),
    ],
)
def test_a_hand_edited_checkpoint_configuration_is_refused(tmp_path, config, match):
    from edgecnn.trainer.config import TrainConfig

    saved = TrainConfig().to_dict()
    saved.update(config)
    state = {"checkpoint": "checkpoint-e001.keras", "epoch": 1, "history": [{}],
             "best_val_accuracy": 0.5, "train_seconds": 1.0, "config": saved}  # fmt: skip
    (tmp_path / "checkpoint.json").write_text(json.dumps(state))
    (tmp_path / "checkpoint-e001.keras").write_bytes(b"PK")
    (tmp_path / "config.json").write_text("{}")
    assert_one_line_error(invoke("train", "--resume", "--out", tmp_path), match)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,match",
    [
        ({"num_filters1": 7}, "conv1/kernel: 5x5x1x16 in the checkpoint, 5x5x1x7 by the"),
        ({"fc_size": 64}, "fc1/kernel: 1764x128 in the checkpoint, 1764x64 by the"),
        ({"num_classes": 9}, "logits/kernel: 128x10 in the checkpoint, 128x9 by the"),
    ],
)
def test_resume_refuses_a_checkpoint_whose_architecture_was_edited(
    trained_run, tmp_path, fashion_dir, model, match
):
    run = tmp_path / "run"
    shutil.copytree(trained_run.out_dir, run)
    state = json.loads((run / "checkpoint.json").read_text())
    state["config"]["model"].update(model)
    (run / "checkpoint.json").write_text(json.dumps(state))
    before = {p.name: _sha(p) for p in run.iterdir() if p.is_file()}
    result = invoke("train", "--resume", "--out", run, "--data-dir", fashion_dir)
    assert_one_line_error(result, match)
    assert "does not match checkpoint-e001.keras" in result.stderr
    # config.json still says what model.keras is: 16 filters.
    assert {p.name: _sha(p) for p in run.iterdir() if p.is_file()} == before


# -- split.json edited by hand ------------------------------------------------------------


def _own_folder(root, classes=("a", "b", "c"), per_class=6):
    """A tiny image folder of noise pictures, one sub-folder per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _recorded_run(tmp_path):
    """A run folder whose config.json and split.json are what training on a folder writes."""
    import io

    from edgecnn import _atomic
    from edgecnn.trainer import splits, training_data

    data = _own_folder(tmp_path / "my data")
    config = training_data.configure({"data": str(data.resolve())}, {}, False, None)
    loaded = training_data.load(config, None, None, io.StringIO())
    run = tmp_path / "run"
    run.mkdir()
    _atomic.write_json(run / "config.json", config.to_dict())
    splits.write_record(run, loaded.record)
    return run, config


def _edit_split(run, change):
    path = run / "split.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(record):
        target = record
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


HOSTILE_SPLITS = [
    (_set("splits", "train", 0, 1, 99), "splits.train[0]: class must be 0 to 2, got 99"),
    (_set("splits", "train", 0, 1, -1), "splits.train[0]: class must be 0 to 2, got -1"),
    (_set("splits", "val", 0, 1, "a"), "splits.val[0]: class must be 0 to 2, got 'a'"),
    (_set("splits", "test", 1, 1, True), "splits.test[1]: class must be 0 to 2, got True"),
    (_set("splits", "test", 0, 1, 1.0), "splits.test[0]: class must be 0 to 2, got 1.0"),
    (_set("splits", "train", 0, ["a/0.png"]), "splits.train[0] must be a [path, class] pair"),
    (_set("splits", "train", 0, "a/0.png"), "splits.train[0] must be a [path, class] pair"),
    (_set("splits", "train", 0, 0, 5), "splits.train[0]: path must be a file name"),
    (_set("splits", "train", 0, 0, ""), "splits.train[0]: path must be a file name"),
    (_set("splits", "val", None), "splits.val must be a list"),
    (_set("splits", []), "splits must be an object"),
    (_set("classes", "abc"), "classes must be a list of class names"),
    (_set("classes", ["a"]), "classes must name 2 to 100 classes"),
    (_set("kind", "zip"), "kind must be 'folder' or 'npz'"),
    (_set("root", "relative/folder"), "root must be an absolute path"),
    (_set("root", "/somewhere/else"), "is not the data config.json names"),
    (_set("counts", "train", [1]), "counts.train must be 3 image counts"),
    (_set("warnings", [None]), "warnings must be a list of text"),
    (_set("splits", "train", 0, 0, "../outside.png"), "is not inside the data folder"),
    (_set("splits", "train", 0, 0, "a/../../outside.png"), "is not inside the data folder"),
    (_set("splits", "train", 0, 0, "/etc/passwd"), "is not inside the data folder"),
]


@pytest.mark.parametrize("change,match", HOSTILE_SPLITS)
def test_a_hand_edited_split_record_is_refused_naming_the_field(tmp_path, change, match):
    from edgecnn.trainer import splits

    run, _ = _recorded_run(tmp_path)
    assert splits.read_record(run).kind == "folder"  # as written, it reads back
    _edit_split(run, change)
    with pytest.raises(DataError, match=re.escape(match)) as caught:
        splits.read_record(run)
    assert "split.json is unreadable: " in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text", ["[NaN]", '{"kind": "folder", "x": Infinity}', "[" * 100_000, "{not json", '"x"']
)
def test_a_split_record_that_is_not_json_is_refused(tmp_path, text):
    from edgecnn.trainer import splits

    (tmp_path / "split.json").write_text(text)
    with pytest.raises(DataError, match="split.json is unreadable"):
        splits.read_record(tmp_path)


def test_links_the_user_put_in_the_data_folder_are_part_of_it(tmp_path):
    """A class folder linked to where the photos are stored is a common layout: the scan
    takes it, so its split record reads back. Only names can escape: ``..``, absolute."""
    from edgecnn.trainer import splits

    run, config = _recorded_run(tmp_path)
    data = tmp_path / "my data"
    (tmp_path / "stored.png").write_bytes((data / "a" / "0.png").read_bytes())
    (tmp_path / "elsewhere").mkdir()
    (data / "a" / "link.png").symlink_to(tmp_path / "stored.png")
    (data / "a" / "folder").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for path in ("a/link.png", "a/folder/x.png"):
        _edit_split(run, _set("splits", "train", 0, 0, path))
        assert splits.read_record(run).files["train"][0][0] == path
    for path in ("a/../../stored.png", str(tmp_path / "stored.png")):
        _edit_split(run, _set("splits", "train", 0, 0, path))
        with pytest.raises(DataError, match="is not inside the data folder"):
            splits.read_record(run)


def test_a_hand_edited_npz_split_is_refused(tmp_path):
    from edgecnn.trainer import splits

    record = {
        "kind": "npz",
        "path": str(tmp_path / "data.npz"),
        "sha256": "0" * 64,
        "x_train_rows": 10,
        "classes": ["a", "b"],
        "splits": {"train": [0, 1, 2], "val": [3]},
    }
    for rows, match in [
        ([0, -1], r"splits.train\[1\] must be a row number, got -1"),
        ([0, 10], r"splits.train\[1\] must be a row number, got 10"),
        ([0, "1"], r"splits.train\[1\] must be a row number, got '1'"),
        ([0, 2**80], r"splits.train\[1\] must be a row number"),
    ]:
        edited = {**record, "splits": {"train": rows, "val": [3]}}
        (tmp_path / "split.json").write_text(json.dumps(edited))
        with pytest.raises(DataError, match=match):
            splits.read_record(tmp_path)


@pytest.fixture(scope="module")
def untrained_own_run(tmp_path_factory):
    """A run of 'edgecnn run' on a small folder, trained and evaluated on paper only.

    Its model.keras is built and saved untrained (no training: TensorFlow, seconds), its
    run.json records the train stage done, so 'run --resume' starts at evaluate.
    """
    from edgecnn import _atomic
    from edgecnn.pipeline.state import RunOptions, StageRecord, start_state
    from edgecnn.trainer.model import build_model

    tmp_path = tmp_path_factory.mktemp("own-run")
    run, config = _recorded_run(tmp_path)
    build_model(config.model).save(run / "model.keras")
    _atomic.write_json(run / "history.json", [])
    _atomic.write_json(run / "metrics.json", {})
    state = start_state(run, RunOptions(data=config.data, epochs=1), None)
    state = dataclasses.replace(state, stages={"train": StageRecord("done", 1.0)})
    _atomic.write_json(run / "run.json", state.to_dict())
    return run


@pytest.mark.slow
@pytest.mark.parametrize("change,match", [HOSTILE_SPLITS[i] for i in (0, 3, 5, 18, 20)])
def test_evaluate_and_run_resume_refuse_a_hand_edited_split(
    untrained_own_run, tmp_path, change, match
):
    run = tmp_path / "run"
    shutil.copytree(untrained_own_run, run)
    _edit_split(run, change)
    assert_one_line_error(invoke("evaluate", run), match)
    result = invoke("run", "--resume", "--out", run)
    assert_one_line_error(result, "stage 'evaluate' failed: ")
    assert match in result.stderr and "unexpected" not in result.stderr
