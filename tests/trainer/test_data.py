import gzip

import numpy as np
import pytest
from idx_files import STEMS, idx_bytes, write_dataset, write_idx

from edgecnn.errors import DataError
from edgecnn.runtime.labels import FASHION_MNIST_LABELS
from edgecnn.trainer import dataset, idx


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No EDGECNN_DATA_DIR and an empty Keras home, so only what a test sets up is found."""
    monkeypatch.delenv("EDGECNN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path


def test_real_fashion_mnist_split_as_the_tutorial(fashion_dir):
    ds = idx.load_dataset("fashion", fashion_dir)
    assert ds.x_train.shape == (55_000, 28, 28)
    assert ds.x_val.shape == (5_000, 28, 28)
    assert ds.x_test.shape == (10_000, 28, 28)
    assert ds.x_train.dtype == np.uint8
    assert ds.labels == FASHION_MNIST_LABELS
    assert ds.labels[0] == "T-shirt/top" and ds.labels[-1] == "Ankle boot"
    # Validation is the *first* 5,000 training images, training the other 55,000.
    (x_all, y_all, _, _), _ = idx.load_arrays("fashion", fashion_dir)
    np.testing.assert_array_equal(ds.x_val, x_all[:5000])
    np.testing.assert_array_equal(ds.x_train[0], x_all[5000])
    np.testing.assert_array_equal(ds.y_train, y_all[5000:])
    # Every class is present in every split, roughly balanced.
    for y in (ds.y_train, ds.y_val, ds.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() > 0.8 * len(y) / 10


def test_train_subset_keeps_the_first_images(fashion_dir):
    ds = idx.load_dataset("fashion", fashion_dir, train_subset=1000)
    assert len(ds.x_train) == 1000 and len(ds.x_val) == 5000 and len(ds.x_test) == 10_000


@pytest.mark.parametrize("gz", [True, False])
def test_small_idx_files_gzipped_or_not(tmp_path, clean_env, gz):
    arrays = write_dataset(tmp_path / "d", gz=gz)
    ds = idx.load_dataset("mnist", tmp_path / "d")
    np.testing.assert_array_equal(ds.x_val, arrays["train_images"][:5000])
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"][5000:])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.labels == tuple("0123456789")


def test_dotted_file_names_are_accepted(tmp_path, clean_env):
    folder = tmp_path / "d"
    write_dataset(folder, gz=False)
    for stem in STEMS.values():
        (folder / stem).rename(folder / stem.replace("-idx", ".idx"))
    assert len(idx.load_dataset("fashion", folder).x_test) == 50


def test_data_dir_beats_environment_which_beats_debian(
    tmp_path, clean_env, monkeypatch, fashion_dir
):
    write_dataset(tmp_path / "a", n_test=11)
    write_dataset(tmp_path / "b", n_test=22)
    monkeypatch.setenv("EDGECNN_DATA_DIR", str(tmp_path / "b"))
    assert len(idx.load_dataset("fashion", tmp_path / "a").x_test) == 11
    assert len(idx.load_dataset("fashion").x_test) == 22
    monkeypatch.delenv("EDGECNN_DATA_DIR")
    if not (idx.DEBIAN_DIRS["fashion"] / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed: the Debian step cannot be checked")
    _, source = idx.load_arrays("fashion")
    assert source == str(idx.DEBIAN_DIRS["fashion"])


def test_keras_cache_folder_and_mnist_npz(tmp_path, clean_env):
    home = tmp_path / "keras-home" / "datasets"
    write_dataset(home / "mnist", n_test=33)
    assert len(idx.load_dataset("mnist").x_test) == 33
    for f in (home / "mnist").iterdir():
        f.unlink()
    rng = np.random.default_rng(1)
    np.savez(
        home / "mnist.npz",
        x_train=rng.integers(0, 255, (5010, 28, 28), np.uint8),
        y_train=np.zeros(5010, np.uint8),
        x_test=np.zeros((44, 28, 28), np.uint8),
        y_test=np.ones(44, np.uint8),
    )
    ds = idx.load_dataset("mnist")
    assert len(ds.x_test) == 44 and ds.source.endswith("mnist.npz")


def test_nothing_found_names_every_way_to_get_the_data(clean_env):
    with pytest.raises(DataError) as e:
        idx.load_dataset("mnist")
    msg = str(e.value)
    assert "\n" not in msg
    for hint in ("--data-dir", "EDGECNN_DATA_DIR", "keras-home", "internet"):
        assert hint in msg


def test_fashion_hint_names_the_debian_package(tmp_path, clean_env):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        idx.load_dataset("fashion", tmp_path / "empty")


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        idx.load_dataset("fashion", tmp_path / "nope")


def test_too_few_training_images_for_the_split(tmp_path, clean_env):
    write_dataset(tmp_path / "d", n_train=5000)
    with pytest.raises(DataError, match="needs more than 5000"):
        idx.load_dataset("fashion", tmp_path / "d")


def _corrupt(tmp_path, key, payload: bytes, name_suffix=".gz"):
    folder = tmp_path / "d"
    write_dataset(folder)
    path = folder / (STEMS[key] + name_suffix)
    path.write_bytes(payload)
    return folder, path


@pytest.mark.parametrize(
    "key,payload,match",
    [
        ("train_images", b"not gzip at all", "cannot read"),
        ("test_labels", gzip.compress(b"\x01\x02\x03\x04rest"), "bad magic"),
        (
            "test_labels",
            gzip.compress(idx_bytes(np.zeros(50, np.uint8), type_code=0x0D)),
            "type code 0x0d",
        ),
        (
            "test_images",
            gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8))[:-100]),
            "truncated",
        ),
        (
            "test_images",
            gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)) + b"x"),
            "longer than its header",
        ),
        ("test_images", gzip.compress(b"\x00\x00\x08\x03\x00"), "header is truncated"),
        (
            "test_images",
            gzip.compress(idx_bytes(np.zeros((50, 32, 32), np.uint8))),
            r"expected \(N, 28, 28\)",
        ),
        ("test_labels", gzip.compress(idx_bytes(np.zeros(49, np.uint8))), "49 labels for 50"),
        ("test_labels", gzip.compress(idx_bytes(np.full(50, 10, np.uint8))), "out of range"),
        ("train_labels", b"", "is empty"),
    ],
)
def test_corrupt_files_get_a_clear_error_naming_the_file(tmp_path, clean_env, key, payload, match):
    folder, path = _corrupt(tmp_path, key, payload)
    with pytest.raises(DataError, match=match) as e:
        idx.load_dataset("fashion", folder)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_cut_off_gzip_stream(tmp_path, clean_env):
    folder = tmp_path / "d"
    write_dataset(folder)
    path = folder / (STEMS["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="cut off") as e:
        idx.load_dataset("fashion", folder)
    assert str(path) in str(e.value)


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "x.gz", arr)), arr)
    np.testing.assert_array_equal(idx.read_idx(write_idx(tmp_path / "x", arr, gz=False)), arr)


def test_to_float_is_the_model_input():
    x = dataset.to_float(np.array([[[0, 255]]], dtype=np.uint8))
    assert x.dtype == np.float32 and x.shape == (1, 1, 2, 1)
    assert x.min() == 0.0 and x.max() == 1.0
