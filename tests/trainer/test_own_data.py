"""Training on the user's own pictures: image folders and .npz arrays, any class count and size.

The datasets are written by the tests: real Fashion-MNIST images saved as a user's folder
(PNG and JPEG, some colour, some larger, classes renamed with spaces and non-ASCII), and a
colour .npz of drawn shapes where colour decides the class.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from own_data import RENAMED, folder_name, write_folder
from PIL import Image
from serve_helpers import call, npy_bytes, running_server
from shapes import write_npz

from edgecnn.errors import ConfigError, DataError
from edgecnn.runtime import load_classifier
from edgecnn.trainer import training_data
from edgecnn.trainer.cli import class_order
from edgecnn.trainer.config import TrainConfig

EXPORTED = ("model_float32.tflite", "model_int8.tflite", "model_float32.onnx",
            "model_int8.onnx", "weights.npz")  # fmt: skip


@pytest.fixture(scope="module")
def fashion_pictures(test_images):
    """5,000 real Fashion-MNIST test images and labels (as a user's own pictures)."""
    return test_images.x[:5000], test_images.y[:5000]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, fashion_pictures):
    """A folder dataset trained for 10 short epochs (3 s) and exported in every format."""
    root = tmp_path_factory.mktemp("own") / "my things"
    write_folder(root, *fashion_pictures)
    run = root.parent / "run"
    return (root, run, *_train_and_export(run, root, "--image-size", 28, "--epochs", 10))


def _train_and_export(run: Path, data: Path, *options) -> tuple:
    """``edgecnn train --data data ... --batch-size 32`` into ``run``, then ``export --int8``."""
    trained = invoke("train", "--data", data, *options, "--batch-size", 32, "--out", run)
    assert trained.exit_code == 0, trained.stderr
    return trained, invoke("export", run, "--int8")


@pytest.mark.slow
def test_a_folder_trains_exports_and_keeps_its_class_names(folder_run):
    root, run, trained, exported = folder_run
    names = sorted(p.name for p in root.iterdir())
    assert exported.exit_code == 0, exported.stdout + exported.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6  # ten classes: chance is 0.1
    assert list(metrics["per_class_accuracy"]) == names
    for renamed in RENAMED.values():
        assert renamed in names
    assert "images per class (train/val/test)" in trained.stdout
    assert "242,062 parameters" in trained.stdout and "flatten 1,764" in trained.stdout
    for name in EXPORTED:
        clf = load_classifier(run / "exports" / name)
        assert clf.labels == tuple(names) and clf.input_shape == (28, 28, 1)
        assert clf.metadata.light_on_dark  # Fashion-MNIST pictures: light on dark


@pytest.mark.slow
def test_the_split_is_recorded_and_reused(folder_run):
    root, run, _, _ = folder_run
    record = json.loads((run / "split.json").read_text())
    assert record["kind"] == "folder" and record["classes"] == sorted(
        p.name for p in root.iterdir()
    )
    splits = record["splits"]
    everything = [path for name in ("train", "val", "test") for path, _ in splits[name]]
    assert len(everything) == len(set(everything)) == 5000
    # About 1/6 held out for testing, in every class (stratified).
    for index, count in enumerate(record["counts"]["test"]):
        total = sum(record["counts"][s][index] for s in ("train", "val", "test"))
        assert abs(count - total / 6) <= 1
    # The same seed gives the same split; the recorded one is used as it is.
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    again = training_data.load(config, record=None, stream=io.StringIO())
    assert again.record.to_dict()["splits"] == splits


@pytest.mark.slow
def test_classify_through_cli_api_and_server(folder_run):
    root, run, _, _ = folder_run
    model = run / "exports" / "model_int8.tflite"
    boot = root / folder_name(9)
    pictures = sorted(boot.iterdir())[:20]
    result = invoke("predict", model, *pictures, "--json")
    assert result.exit_code == 0, result.stderr
    answers = [r["label"] for r in json.loads(result.stdout)["results"]]
    assert answers.count(folder_name(9)) >= 12  # most boots are boots
    clf = load_classifier(model)
    assert clf.classify(pictures[0])[0][0] in clf.labels
    with running_server(model, "--threads", 1) as server:
        status, reply, _ = call(server.port, "POST", "/classify", pictures[0].read_bytes())
        assert status == 200 and reply["label"] == clf.classify(pictures[0])[0][0]
        meta = call(server.port, "GET", "/metadata")[1]
        assert meta["labels"] == list(clf.labels) and meta["input"]["shape"] == [28, 28, 1]


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """12 classes of 32x32 colour shapes, trained until they are easy, exported."""
    folder = tmp_path_factory.mktemp("shapes")
    data = write_npz(folder / "shapes.npz")
    run = folder / "run"
    return (data, run, *_train_and_export(run, data, "--channels", 3, "--epochs", 30))


@pytest.mark.slow
def test_a_colour_npz_of_twelve_classes_passes_every_gate(colour_run):
    data, run, trained, exported = colour_run
    assert "network 32x32x3 in, flatten 2,304, 12 classes" in trained.stdout
    report = json.loads((run / "exports" / "export_report.json").read_text())
    assert [f["file"] for f in report["files"]] == [
        "model_float32.tflite", "model_float32.onnx", "model_int8.tflite", "model_int8.onnx",
        "weights.npz",
    ]  # fmt: skip
    assert report["passed"], exported.stdout
    assert report["keras_accuracy"] > 0.85
    with np.load(data) as z:
        x_test, y_test, names = z["x_test"], z["y_test"], list(z["class_names"])
    for name in EXPORTED:
        clf = load_classifier(run / "exports" / name)
        assert clf.input_shape == (32, 32, 3) and list(clf.labels) == names
        assert not clf.metadata.light_on_dark  # coloured shapes on grey: used as they are
        assert np.mean(clf.predict(x_test).argmax(1) == y_test) > 0.85


@pytest.mark.slow
def test_colour_pictures_and_arrays_through_the_cli(colour_run, tmp_path):
    data, run, _, _ = colour_run
    with np.load(data) as z:
        image, label, names = z["x_test"][5], int(z["y_test"][5]), list(z["class_names"])
    np.save(tmp_path / "one.npy", image)
    Image.fromarray(image).resize((96, 96)).save(tmp_path / "big.png")
    model = run / "exports" / "model_float32.onnx"
    result = invoke("predict", model, tmp_path / "one.npy", tmp_path / "big.png", "--json")
    assert result.exit_code == 0, result.stderr
    labels = [r["label"] for r in json.loads(result.stdout)["results"]]
    assert labels[0] == names[label]
    assert labels[1] in names
    with running_server(model, "--threads", 1) as server:
        status, reply, _ = call(server.port, "POST", "/classify", npy_bytes(image))
        assert status == 200 and reply["label"] == names[label]
        status, reply, _ = call(server.port, "POST", "/classify", npy_bytes(image[:, :, 0]))
        assert status == 400 and "(32, 32, 3)" in reply["error"]


@pytest.mark.slow
def test_evaluate_draws_the_users_classes(colour_run):
    _, run, _, _ = colour_run
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.stderr
    assert "green square" in result.stdout  # the text confusion matrix names the classes
    with Image.open(run / "confusion_matrix.png") as im:
        assert im.width > 500


@pytest.mark.slow
def test_a_model_file_without_its_run_takes_its_data_from_data(colour_run, tmp_path):
    data, run, _, _ = colour_run
    lone = tmp_path / "lone.keras"
    shutil.copy(run / "model.keras", lone)
    # Without its run's config.json the tutorial's data is assumed, which does not fit.
    result = invoke("evaluate", lone)
    assert_one_line_error(result, match="takes 32x32x3 images but Fashion-MNIST's are 28x28x1")
    result = invoke("export", lone, "--out", tmp_path / "exports")
    assert_one_line_error(result, match="takes 32x32x3 images")
    assert not (tmp_path / "exports").exists()  # nothing made for an export that never began
    result = invoke("evaluate", lone, "--data", data)
    assert result.exit_code == 0, result.stderr
    assert "green square" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85
    result = invoke("export", lone, "--data", data, "--formats", "onnx")
    assert result.exit_code == 0, result.stderr
    clf = load_classifier(tmp_path / "exports" / "model_float32.onnx")
    assert clf.input_shape == (32, 32, 3) and "green square" in clf.labels


@pytest.mark.slow
def test_a_two_class_model_answers_with_the_default_top_k(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 12, "dog": 12})
    assert _train("--data", root, "--out", tmp_path / "run").exit_code == 0
    exported = invoke("export", tmp_path / "run", "--formats", "onnx", "--min-agreement", 0)
    assert exported.exit_code == 0, exported.stderr
    model, picture = tmp_path / "run" / "exports" / "model_float32.onnx", root / "cat" / "0.png"
    ranked = load_classifier(model).classify(picture)
    assert sorted(label for label, _ in ranked) == ["cat", "dog"]  # 2 answers, not an error
    result = invoke("predict", model, picture, "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["results"][0]["top_k"]) == 2
    with running_server(model, "--threads", 1) as server:
        status, reply, _ = call(server.port, "POST", "/classify", picture.read_bytes())
        assert status == 200 and len(reply["top_k"]) == 2


# -- bad data: one line, exit 2, nothing trained --------------------------------------


def _folder(root: Path, counts: dict[str, int], size: int = 28) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 80, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _train(*args):
    return invoke("train", "--epochs", 1, *args)


@pytest.mark.slow
def test_unreadable_pictures_are_listed_and_can_be_skipped(tmp_path):
    root = _folder(tmp_path / "d", {"a": 10, "b": 10})
    for i in range(12):
        (root / "a" / f"broken{i:02d}.png").write_bytes(b"not a picture")
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    result = _train("--data", root, "--out", tmp_path / "run")
    assert_one_line_error(result, "13 pictures cannot be read")
    line = result.stderr
    assert line.count("broken") == 10 - ("cut.png" in line) and "and 3 more" in line
    assert "--skip-bad-images" in line and not (tmp_path / "run").exists()
    config = TrainConfig(data=str(root), skip_bad_images=True)
    config = training_data.sized(config)
    stream = io.StringIO()
    data = training_data.load(config, stream=stream)
    assert (
        "13 pictures cannot be read" in stream.getvalue()
        and len(data.record.to_dict()["skipped"]) == 13
    )
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 20


@pytest.mark.parametrize(
    "counts,match",
    [
        ({"only": 10}, "one class folder"),
        ({"a": 10, "b": 0}, "has no .png, .jpg or .bmp pictures"),
        pytest.param({"a": 10, "b": 4}, "class 'b' has 4 images", marks=pytest.mark.slow),
        ({}, "has no class folders"),
    ],
)
def test_impossible_folders_are_one_line(tmp_path, counts, match):
    root = _folder(tmp_path / "d", counts)
    root.mkdir(exist_ok=True)
    assert_one_line_error(_train("--data", root), match)


def test_pictures_of_different_sizes_need_an_image_size(tmp_path):
    root = _folder(tmp_path / "d", {"a": 6, "b": 6})
    _folder(root, {"c": 6}, size=40)
    assert_one_line_error(_train("--data", root), "2 different sizes")
    with pytest.raises(ConfigError, match="pass --image-size"):
        training_data.sized(TrainConfig(data=str(_folder(tmp_path / "e", {"a": 6, "b": 6}, 100))))
    config = training_data.sized(TrainConfig(data=str(root)), image_size=32, channels=3)
    assert config.model.input_shape == (32, 32, 3) and config.model.num_classes == 3


@pytest.mark.slow
def test_user_splits_are_kept_and_checked(tmp_path):
    root = tmp_path / "d"
    _folder(root / "train", {"x": 12, "y": 12})
    _folder(root / "test", {"x": 3, "y": 3})
    config = training_data.sized(TrainConfig(data=str(root)))
    data = training_data.load(config, stream=io.StringIO())
    assert len(data.x_test) == 6 and len(data.x_train) + len(data.x_val) == 24
    _folder(root / "test", {"z": 2})
    assert_one_line_error(_train("--data", root), "has class 'z'")
    shutil.rmtree(root / "test")
    assert_one_line_error(_train("--data", root), "has train/ but no test/")


def test_imbalance_and_duplicates_are_warned_about(tmp_path):
    root = _folder(tmp_path / "d", {"big": 120, "small": 6})
    rng = np.random.default_rng(9)
    for i in range(60):
        Image.fromarray(rng.integers(0, 80, (28, 28), dtype=np.uint8)).save(
            root / "big" / f"x{i}.png"
        )
    for i in range(30):  # the same picture many times: some land in test and in train
        shutil.copy(root / "big" / "0.png", root / "big" / f"copy{i}.png")
    stream = io.StringIO()
    training_data.load(training_data.sized(TrainConfig(data=str(root))), stream=stream)
    text = stream.getvalue()
    assert "heavily imbalanced" in text and "'big'" in text
    assert "byte-for-byte the same as a training or validation image" in text


def _npz(path: Path, **changes) -> Path:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 255, (60, 20, 20), dtype=np.uint8),
        "y_train": np.arange(60) % 3,
        "x_test": rng.integers(0, 255, (12, 20, 20), dtype=np.uint8),
        "y_test": np.arange(12) % 3,
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"y_test": np.full(12, 7)}, "outside 0..2"),
        ({"y_train": np.arange(59) % 3}, "for 60 images"),
        ({"x_train": np.zeros((60, 20, 20), np.float32)}, "must be uint8"),
        ({"x_test": np.zeros((12, 21, 20), np.uint8)}, "x_test images"),
        ({"x_test": None}, "lacks x_test"),
        ({"class_names": np.array(["a", "a", "b"])}, "repeat"),
        ({"y_train": np.zeros(60, np.int64), "y_test": np.zeros(12, np.int64)}, "1 class"),
        # A huge label with no class names: refused before any name is made up for it.
        ({"y_train": np.arange(60, dtype=np.uint64) % 3 + 2**63}, "at most 100 classes"),
        ({"class_names": np.array("abc")}, "class_names has shape ()"),
        ({"class_names": np.array([["a", "b", "c"]])}, "class_names has shape (1, 3)"),
        ({"class_names": np.array([f"c{i}" for i in range(101)])}, "at most 100"),
    ],
)
def test_impossible_arrays_are_one_line(tmp_path, changes, match):
    path = _npz(tmp_path / "d.npz", **changes)
    result = _train("--data", path)
    assert result.exit_code == 2, result.stdout
    assert_one_line_error(result)
    assert any(m in result.stderr for m in match.split("|")), result.stderr


def test_labels_shaped_n_by_1_are_taken(tmp_path):
    path = _npz(tmp_path / "d.npz", y_train=(np.arange(60) % 3)[:, None])
    data = training_data.load(
        training_data.sized(TrainConfig(data=str(path))), stream=io.StringIO()
    )
    assert data.y_train.ndim == 1 and len(data.labels) == 3


def test_a_changed_npz_is_refused_not_split_anew(tmp_path):
    path = _npz(tmp_path / "d.npz")
    config = training_data.sized(TrainConfig(data=str(path)))
    record = training_data.load(config, stream=io.StringIO()).record
    again = training_data.load(config, record=record, stream=io.StringIO())
    assert again.record.rows == record.rows
    _npz(path, x_train=np.zeros((30, 20, 20), np.uint8), y_train=np.arange(30) % 3)
    with pytest.raises(DataError, match="has changed since the model was trained"):
        training_data.load(config, record=record, stream=io.StringIO())
    # A record without a digest (written by hand, or damaged) must still fit the archive.
    record = dataclasses.replace(record, sha256=None)
    with pytest.raises(DataError, match="does not fit its 30 images"):
        training_data.load(config, record=record, stream=io.StringIO())


def test_a_training_subset_of_a_folder_keeps_every_class(tmp_path):
    root = _folder(tmp_path / "d", {"a": 30, "b": 30, "c": 30})
    config = training_data.sized(TrainConfig(data=str(root), train_subset=15))
    data = training_data.load(config, stream=io.StringIO())
    assert len(data.y_train) == 15 and sorted(np.bincount(data.y_train)) == [5, 5, 5]


@pytest.mark.slow
def test_the_users_own_three_splits_still_need_five_pictures_a_class(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "val", "test"):
        _folder(root / split, {"cat": 1, "dog": 2})
    assert_one_line_error(_train("--data", root), "class 'cat' has 3 images")


def test_skipping_bad_pictures_checks_what_is_left(tmp_path):
    root = _folder(tmp_path / "d", {"a": 10, "b": 6})
    for i in range(3):
        (root / "b" / f"{i}.png").write_bytes(b"broken")
    config = training_data.sized(TrainConfig(data=str(root), skip_bad_images=True))
    with pytest.raises(DataError, match="without its unreadable pictures: class 'b' has 3"):
        training_data.load(config, stream=io.StringIO())


def test_odd_entries_in_a_class_folder_are_counted_not_lost(tmp_path):
    root = _folder(tmp_path / "d", {"a": 6, "b": 6})
    (root / "a" / "nested").mkdir()
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "b" / "notes.txt").write_text("x")
    stream = io.StringIO()
    training_data.load(training_data.sized(TrainConfig(data=str(root))), stream=stream)
    assert "note: 3 entries" in stream.getvalue()


def test_an_unreadable_folder_and_undecodable_names_are_one_line(tmp_path):
    root = _folder(tmp_path / "d", {"a": 6, "b": 6})
    os.rename(root / "b", os.path.join(os.fsencode(root), b"d\xffog"))
    assert_one_line_error(_train("--data", root), "not text")


def test_a_class_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d", {"a": 6, "b": 6})
    listing = Path.iterdir

    def refused(self):  # CI runs as root, whom permissions do not stop
        if self.name == "b":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", refused)
    assert_one_line_error(_train("--data", root), f"cannot read {root / 'b'}: Permission denied")


def test_a_good_npz_is_sized_from_its_arrays(tmp_path):
    path = _npz(tmp_path / "d.npz", class_names=np.array(["cat", "dog", "owl"]))
    config = training_data.sized(TrainConfig(data=str(path)))
    assert config.model.input_shape == (20, 20, 1) and config.model.num_classes == 3
    data = training_data.load(config, stream=io.StringIO())
    assert data.labels == ("cat", "dog", "owl") and data.x_train.shape[1:] == (20, 20)
    with pytest.raises(DataError, match="has 3 classes; the network was built for 10"):
        training_data.load(TrainConfig(data=str(path)), stream=io.StringIO())


# -- --classes: the user's order of their classes -------------------------------------


@pytest.mark.slow
def test_the_class_order_reaches_the_model_and_its_exports(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 12, "dog": 12, "owl": 12})
    run = tmp_path / "run"
    trained = _train("--data", root, "--classes", "owl, cat,dog", "--out", run)
    assert trained.exit_code == 0, trained.stderr
    assert json.loads((run / "config.json").read_text())["classes"] == ["owl", "cat", "dog"]
    assert json.loads((run / "split.json").read_text())["classes"] == ["owl", "cat", "dog"]
    assert list(json.loads((run / "metrics.json").read_text())["per_class_accuracy"]) == [
        "owl", "cat", "dog"]  # fmt: skip
    exported = invoke("export", run, "--formats", "onnx", "--min-agreement", 0)
    assert exported.exit_code == 0, exported.stderr
    assert load_classifier(run / "exports" / "model_float32.onnx").labels == ("owl", "cat", "dog")
    # The file alone, away from its run, measured on the folder: in the file's class order.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model_float32.onnx", "model_float32.onnx.json"):
        shutil.copy(run / "exports" / name, bare / name)
    beside = invoke("evaluate", run / "exports" / "model_float32.onnx", "--data", root,
                    "--out", tmp_path / "e1")  # fmt: skip
    alone = invoke(
        "evaluate", bare / "model_float32.onnx", "--data", root, "--out", tmp_path / "e2"
    )
    assert beside.exit_code == 0 and alone.exit_code == 0, beside.stderr + alone.stderr
    measured = [json.loads((tmp_path / e / "metrics.json").read_text()) for e in ("e1", "e2")]
    assert [list(m["per_class_accuracy"]) for m in measured] == [["owl", "cat", "dog"]] * 2
    assert measured[1]["test_accuracy"] == measured[0]["test_accuracy"]


def test_classes_order_a_folder_and_survive_config_json(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 6, "dog": 6, "café": 6})
    # As --classes gives it, typed on a keyboard that decomposes é: the same name.
    classes = class_order("dog, cafe\u0301 ,cat", str(root))
    config = training_data.configure({"data": str(root), "classes": classes}, {})
    data = training_data.load(config, stream=io.StringIO())
    assert data.labels == ("dog", "café", "cat") == data.record.classes
    for path, label in data.record.files["train"]:
        assert path.split("/")[0] == data.labels[label]
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.classes == ("dog", "café", "cat")
    assert training_data.load(again, record=data.record, stream=io.StringIO()).labels == data.labels


def test_classes_renumber_an_npz(tmp_path):
    path = _npz(tmp_path / "d.npz", class_names=np.array(["cat", "dog", "owl"]))
    plain = training_data.load(
        training_data.sized(TrainConfig(data=str(path))), stream=io.StringIO()
    )
    config = training_data.sized(TrainConfig(data=str(path), classes=("owl", "cat", "dog")))
    data = training_data.load(config, stream=io.StringIO())
    assert data.labels == ("owl", "cat", "dog")
    assert (data.x_test == plain.x_test).all()  # the same images, each still its class
    names = np.array(plain.labels)[plain.y_test]
    assert (np.array(data.labels)[data.y_test] == names).all()
    unnamed = _npz(tmp_path / "u.npz")  # without class_names: "class 0", "class 1", ...
    config = training_data.sized(TrainConfig(data=str(unnamed), classes=("class 2", "class 0",
                                                                     "class 1")))  # fmt: skip
    assert training_data.load(config, stream=io.StringIO()).labels[0] == "class 2"


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize(
    "classes,match",
    [
        ("cat,dog", "--classes leaves out 'owl' of"),
        ("cat,dog,owl,emu", "--classes names 'emu', which"),
        ("cat,dog,cat,owl", "--classes names 'cat' twice"),
        ("cat,,dog,owl", "--classes takes class names separated by commas"),
        ("cat,dog,owl\u200b", "--classes names 'owl\\u200b', which"),
    ],
)
def test_impossible_class_orders_are_one_line(tmp_path, command, classes, match):
    root = _folder(tmp_path / "d", {"cat": 6, "dog": 6, "owl": 6})
    for data in (root, _npz(tmp_path / "d.npz", class_names=np.array(["cat", "dog", "owl"]))):
        result = invoke(command, "--data", data, "--classes", classes, "--out", tmp_path / "run")
        assert_one_line_error(result, match)
        assert (
            "(its classes: cat, dog, owl)" in result.stderr or "twice" in match or ",," in classes
        )
        assert not (tmp_path / "run").exists()


def test_classes_need_own_data(tmp_path):
    for command in ("train", "run"):
        result = invoke(command, "--classes", "a,b", "--out", tmp_path / "run")
        assert_one_line_error(result, "--classes orders the classes of your own data")


def test_a_class_spelled_two_ways_across_splits_is_one_class(tmp_path):
    """train/ made on Linux (NFC), test/ copied from a Mac (NFD): the same two classes."""
    root = tmp_path / "d"
    _folder(root / "train", {"caf\u00e9": 12, "dog": 12})
    _folder(root / "test", {"cafe\u0301": 3, "dog": 3})
    data = training_data.load(
        training_data.sized(TrainConfig(data=str(root))), stream=io.StringIO()
    )
    assert data.labels == ("caf\u00e9", "dog") and sorted(np.bincount(data.y_test)) == [3, 3]


def test_a_model_file_without_its_run_reads_data_in_its_own_class_order(tmp_path):
    """A file trained with --classes, evaluated with --data alone: its labels give the order."""
    from types import SimpleNamespace

    from edgecnn.trainer.model_source import ModelSource

    root = _folder(tmp_path / "d", {"cat": 6, "dog": 6, "owl": 6})
    model = SimpleNamespace(input_shape=(None, 28, 28, 1), output_shape=(None, 3))
    source = ModelSource(tmp_path / "model_float32.onnx", None, None)
    order = ("owl", "cat", "dog")
    data = training_data.for_model(model, source, data=root, labels=order)
    assert data.labels == order
    for path, label in data.record.files["test"]:
        assert path.split("/")[0] == order[label]
    with pytest.raises(DataError, match="names the classes owl, cat, emu; .* has cat, dog, owl"):
        training_data.for_model(model, source, data=root, labels=("owl", "cat", "emu"))
