import json

import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without


def test_help_lists_commands_without_importing_tensorflow():
    done = run_cli_without(["--help"], ("tensorflow", "keras"))
    for command in ("train", "evaluate"):
        assert command in done.stdout


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("edgecnn ")


@pytest.mark.parametrize(
    "args,match",
    [
        (["--epochs", "-1"], "--epochs"),
        (["--epochs", "0"], "--epochs"),
        (["--num-filters1", "0"], "--num-filters1"),
        (["--fc-size", "0"], "--fc-size"),
        (["--batch-size", "0"], "--batch-size"),
        (["--learning-rate", "-0.1"], "learning_rate"),
        (["--lr-schedule", "wavy"], "lr_schedule"),
        (["--filter-size1", "40"], "filter_size1"),
        (["--dataset", "cifar"], "--dataset"),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_train_bad_options(args, match):
    assert_one_line_error(invoke("train", *args), match=match)


def test_train_missing_data_dir(tmp_path):
    assert_one_line_error(invoke("train", "--data-dir", tmp_path / "nope"), match="does not exist")


def test_train_data_dir_without_files(tmp_path):
    assert_one_line_error(invoke("train", "--data-dir", tmp_path), match="not found")


def test_train_unwritable_out_dir(tmp_path, fashion_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder cannot be created under a file, even by root
    result = invoke("train", "--data-dir", fashion_dir, "--out", blocker / "run")
    assert_one_line_error(result, match="cannot write to output folder")


def test_resume_without_checkpoint(tmp_path):
    assert_one_line_error(invoke("train", "--resume", "--out", tmp_path), match="nothing to resume")


def test_resume_refuses_changed_options(trained_run):
    result = invoke("train", "--resume", "--out", trained_run.out_dir, "--epochs", "5")
    assert_one_line_error(result, match="--epochs")


@pytest.mark.slow
def test_train_and_evaluate_commands(tmp_path, fashion_dir):
    out = tmp_path / "run"
    result = invoke(
        "train",
        "--data-dir",
        fashion_dir,
        "--train-subset",
        "3000",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stderr
    assert "epoch 1/1" in result.stdout
    assert "img/s" in result.stdout and "ETA" in result.stdout
    assert "Accuracy on Test-Set:" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["test_total"] == 10_000

    result = invoke("evaluate", out, "--data-dir", fashion_dir, "--image-index", "5")
    assert result.exit_code == 0, result.stderr
    assert "Confusion matrix" in result.stdout
    assert (out / "conv2_outputs.png").is_file()

    assert_one_line_error(invoke("evaluate", out, "--image-index", "10000"), match="--image-index")


def test_evaluate_missing_path(tmp_path):
    assert_one_line_error(invoke("evaluate", tmp_path / "nope.keras"), match="does not exist")


def test_evaluate_run_dir_without_model(tmp_path):
    assert_one_line_error(invoke("evaluate", tmp_path), match="no model.keras")


@pytest.mark.slow
@pytest.mark.parametrize(
    "payload", [b"", b"random bytes that are not a zip archive", b"PK\x03\x04 truncated zip"]
)
def test_evaluate_corrupt_model(tmp_path, payload):
    bad = tmp_path / "model.keras"
    bad.write_bytes(payload)
    assert_one_line_error(invoke("evaluate", bad), match=str(bad))


@pytest.mark.slow
def test_evaluate_a_network_that_is_not_edgecnns(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.save(tmp_path / "other.keras")
    result = invoke("evaluate", tmp_path / "other.keras")
    assert_one_line_error(result, match="not an edgecnn network: it has no layer named conv1")


def test_evaluate_unwritable_out(trained_run, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert_one_line_error(
        invoke("evaluate", trained_run.out_dir, "--out", blocker / "o"), match="cannot write"
    )
