"""Arguments given to the runtime's API and commands: wrong types, absurd values, paths
that are devices, pipes, huge files or names with a line break.

Each is refused at once with an error naming the argument (InputError or ModelError in the
API, one line and exit 2 on the command line); nothing waits on a pipe or reads a device.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import PICTURE, TINY

from edgecnn.runtime import InferenceError, InputError, ModelError, load_classifier

TINY_FLOAT = TINY / "model_float32.tflite"


def test_errors_share_one_base():
    assert issubclass(ModelError, InferenceError) and issubclass(InputError, InferenceError)
    assert issubclass(InputError, ValueError)


# -- load_classifier's arguments -------------------------------------------------------------


def test_unknown_suffix_backend_and_threads(tmp_path):
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown model format"):
        load_classifier(tmp_path / "m.pb")
    with pytest.raises(ModelError, match="unknown backend"):
        load_classifier(TINY / "model_int8.tflite", backend="tensorrt")
    with pytest.raises(ModelError, match="cannot run .tflite"):
        load_classifier(TINY / "model_int8.tflite", backend="onnxruntime")
    with pytest.raises(InputError, match="num_threads"):
        load_classifier(TINY / "model_int8.tflite", num_threads=0)
    (tmp_path / "folder.tflite").mkdir()
    with pytest.raises(ModelError, match="directory"):
        load_classifier(tmp_path / "folder.tflite")


def test_model_paths_of_any_form():
    """None is refused, a bytes path loads, a backend of None is unknown."""
    with pytest.raises(InputError, match="must be a file path"):
        load_classifier(None)
    assert load_classifier(os.fsencode(TINY_FLOAT)).labels[9] == "Ankle boot"
    with pytest.raises(ModelError, match="unknown backend"):
        load_classifier(TINY_FLOAT, backend=None)


@pytest.mark.parametrize("value", [0, 100000, 2**31, -1])
def test_thread_counts_beyond_the_cap_are_refused(value):
    """In the API, and as ``--threads`` of predict, bench and serve."""
    with pytest.raises(InputError, match="num_threads must be in 1.."):
        load_classifier(TINY_FLOAT, num_threads=value)
    if value < 1:
        return  # Typer's own range check answers first
    for command in ("predict", "bench", "serve"):
        args = [
            command,
            TINY_FLOAT,
            *([PICTURE] if command == "predict" else []),
            "--threads",
            value,
        ]
        assert_one_line_error(invoke(*args), "--threads")


@pytest.mark.parametrize("value", ["2", 2.0, True])
def test_thread_counts_of_the_wrong_type_are_refused(value):
    with pytest.raises(InputError, match="num_threads must be an integer"):
        load_classifier(TINY_FLOAT, num_threads=value)


# -- classify's and bench's arguments ----------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, "3", True, " 3"])
def test_top_k_of_the_wrong_type_is_an_input_error(value):
    with pytest.raises(InputError, match="top_k must be an integer"):
        load_classifier(TINY_FLOAT).classify(np.zeros((28, 28), np.uint8), top_k=value)


def test_top_k_none_is_the_default_of_three():
    clf = load_classifier(TINY_FLOAT)
    image = np.zeros((28, 28), np.uint8)
    assert clf.classify(image, top_k=None) == clf.classify(image) == clf.classify(image, top_k=3)


def test_bench_refuses_absurd_batch_sizes():
    assert_one_line_error(
        invoke("bench", TINY_FLOAT, "--batch-sizes", "100000000"), "--batch-sizes"
    )


# -- paths -----------------------------------------------------------------------------------


def test_devices_pipes_and_oversized_files_are_refused_at_once(tmp_path):
    """/dev/zero as a model, /dev/urandom as a picture, FIFOs as either, a 300 MiB model:
    each refused without being read (a fresh interpreter, bounded by a timeout)."""
    (tmp_path / "zero.tflite").symlink_to("/dev/zero")
    (tmp_path / "random.png").symlink_to("/dev/urandom")
    os.mkfifo(tmp_path / "fifo.png")
    os.mkfifo(tmp_path / "fifo.tflite")
    with open(tmp_path / "giant.tflite", "wb") as f:  # sparse: no disk used
        f.truncate(300 << 20)
    code = (
        "import sys\n"
        "from edgecnn.runtime import InferenceError, load_classifier\n"
        "from edgecnn.runtime.images import load_image\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        (load_image if name.endswith('.png') else load_classifier)(name)\n"
        "    except InferenceError as e:\n"
        "        print(e)\n"
    )
    names = ["zero.tflite", "random.png", "fifo.png", "fifo.tflite", "giant.tflite"]
    done = subprocess.run(
        [sys.executable, "-c", code, *[str(tmp_path / n) for n in names]],
        capture_output=True,
        text=True,
        timeout=60,  # a FIFO must not be waited on, /dev/zero not read forever
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5, done.stdout + done.stderr
    assert all("not a regular file" in line for line in lines[:4]), lines
    assert "may be at most 256.0 MiB" in lines[4]
    result = invoke("predict", TINY_FLOAT, tmp_path / "random.png")
    assert_one_line_error(result, "not a regular file")


def test_a_file_name_with_a_newline_stays_one_line(tmp_path):
    odd = tmp_path / "two\nlines.png"
    assert_one_line_error(invoke("predict", TINY_FLOAT, odd), "two\\nlines.png")
