"""The TFLite exports carry ``serving_default(image) -> probabilities``, as apps call them."""

import numpy as np
import pytest

from edgecnn.runtime import load_classifier
from edgecnn.trainer.idx import load_dataset

SIGNATURE = {"serving_default": {"inputs": ["image"], "outputs": ["probabilities"]}}


@pytest.fixture(scope="module")
def images(fashion_dir):
    return load_dataset("fashion", fashion_dir).x_test[:300]


@pytest.mark.parametrize(
    "name",
    ["model_float32.tflite", "model_float16.tflite", "model_dynamic.tflite", "model_int8.tflite"],
)
def test_signature_runner_answers_like_the_runtime(exported, images, name):
    from ai_edge_litert.interpreter import Interpreter

    path = exported.out / name
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_signature_list() == SIGNATURE
    runner = interpreter.get_signature_runner("serving_default")
    image = runner.get_input_details()["image"]
    output = runner.get_output_details()["probabilities"]
    assert list(image["shape_signature"]) == [-1, 28, 28, 1]

    clf = load_classifier(path, calibrated=False)  # what the bare interpreter computes
    x = images[..., None].astype(np.float32) / 255
    if image["dtype"] == np.int8:
        # What an Android app does: the scale and zero-point come from the model's metadata
        # (the same numbers the interpreter reports), and it quantizes the pixels itself.
        quant = clf.metadata.quantization
        scale, zero_point = quant["input"]["scale"], quant["input"]["zero_point"]
        assert (scale, zero_point) == pytest.approx(image["quantization"])
        x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    y = runner(image=x)["probabilities"]
    assert y.shape == (len(images), 10)

    expected = clf.predict(images)
    if output["dtype"] == np.int8:
        quant = clf.metadata.quantization["output"]
        scale, zero_point = quant["scale"], quant["zero_point"]
        assert (scale, zero_point) == pytest.approx(output["quantization"])
        probs = (y.astype(np.float32) - zero_point) * np.float32(scale)
        # The runtime renormalises int8 rows to sum to 1; otherwise the numbers are the same.
        np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), expected, rtol=1e-6)
    else:
        np.testing.assert_allclose(y, expected, atol=1e-6)
    assert (y.argmax(1) == expected.argmax(1)).all()
