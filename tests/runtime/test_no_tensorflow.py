"""The runtime must never pull in TensorFlow, Keras, or the trainer and exporter."""

import subprocess
import sys

import pytest
from shared import TINY, TINY_FILES

FORBIDDEN = (
    "tensorflow",
    "keras",
    "tf2onnx",
    "onnx",
    "matplotlib",
    "edgecnn.trainer",
    "edgecnn.export",
    "edgecnn.pipeline",
)


def test_runtime_predicts_every_format_without_tensorflow():
    files = [TINY / n for n in TINY_FILES]
    code = (
        "import sys, numpy as np\n"
        "from edgecnn.runtime import load_classifier\n"
        f"for path in {[str(f) for f in files]!r}:\n"
        "    clf = load_classifier(path)\n"
        "    assert clf.predict(np.zeros((3, 28, 28), np.uint8)).shape == (3, 10)\n"
        "    assert clf.classify(np.zeros((28, 28), np.uint8))[0][0] in clf.labels\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_openvino_backend_imports_no_tensorflow():
    pytest.importorskip("openvino")
    files = [TINY / n for n in TINY_FILES if n.endswith((".onnx", ".tflite"))]
    code = (
        "import sys, numpy as np\n"
        "from edgecnn.runtime import load_classifier\n"
        f"for path in {[str(f) for f in files]!r}:\n"
        "    clf = load_classifier(path, backend='openvino')\n"
        "    assert clf.predict(np.zeros((3, 28, 28), np.uint8)).shape == (3, 10)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
