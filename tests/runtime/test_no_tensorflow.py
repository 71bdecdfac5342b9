"""The runtime must never pull in TensorFlow, Keras, or the trainer and exporter."""

import subprocess
import sys

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "edgecnn.trainer", "edgecnn.export")


def test_runtime_predicts_every_format_without_tensorflow(exported):
    files = [exported.out / n for n in ("model_int8.tflite", "model_float32.onnx", "weights.npz")]
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
