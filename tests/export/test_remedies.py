"""Cross-layer equalization and bias correction (export/remedies.py) on real models and data:
the float function kept, the crafted int8 failure undone, the biases moved by the right
amount, and the weight quantization they assume checked against a real converted file."""

import numpy as np
import pytest
from int8_helpers import CRAFTED

from edgecnn.trainer.dataset import to_float
from edgecnn.trainer.idx import load_dataset

#: The plain int8 file's top-1 agreement with Keras the tests hold an equalized model to.
AGREEMENT = 0.99


@pytest.fixture(scope="module")
def data(fashion_dir):
    """500 training images to calibrate with (as the exporter draws them) and the 10,000
    test images, float32 NHWC."""
    dataset = load_dataset("fashion", fashion_dir)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(dataset.x_train), size=500, replace=False))
    return to_float(dataset.x_train[picked]), to_float(dataset.x_test)


def _load(path):
    import keras

    return keras.models.load_model(path)


def _ranges(model, first, second):
    """``first``'s output channel ranges and ``second``'s input channel ranges."""
    w1 = model.get_layer(first).get_weights()[0]
    w2 = model.get_layer(second).get_weights()[0]
    channels = w1.shape[-1]
    return (
        np.abs(w1.reshape(-1, channels)).max(0),
        np.abs(w2.reshape(-1, channels, w2.shape[-1])).max((0, 2)),
    )


def _int8_agreement(model, calibration, images):
    """Top-1 agreement of the plain int8 TFLite file of ``model`` with ``model``."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.export.formats.tflite import convert_model

    interpreter = Interpreter(model_content=convert_model(model, "int8", calibration))
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    interpreter.resize_tensor_input(detail["index"], images.shape)
    interpreter.allocate_tensors()
    quantized = np.clip(np.round(images / scale) + zero_point, -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], quantized)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model.predict(images, batch_size=1000, verbose=0).argmax(1)
    return float((out.argmax(1) == expected).mean())


def test_equalize_keeps_the_function_and_balances_every_pair(trained_run, data):
    from edgecnn.export.remedies import equalize

    _, images = data
    model = _load(trained_run.out_dir / "model.keras")
    before = [w.copy() for w in model.get_weights()]
    equalized, info = equalize(model, images)

    assert info.pairs == (("conv1", "conv2"), ("conv2", "fc1"), ("fc1", "logits"))
    assert info.skipped == ()
    assert info.max_logit_change < 1e-5
    assert 0 < info.scale_range[0] <= info.scale_range[1]
    # Settled: every pair's two ranges meet, all at once (a layer sits in two pairs).
    for first, second in info.pairs:
        out_range, in_range = _ranges(equalized, first, second)
        np.testing.assert_allclose(out_range, in_range, rtol=1e-4)
    assert all((a == b).all() for a, b in zip(before, model.get_weights(), strict=True))
    assert info.to_dict()["pairs"][0] == ["conv1", "conv2"]


def test_equalize_undoes_the_crafted_scale(crafted_run, data):
    from edgecnn.export.remedies import equalize

    calibration, images = data
    crafted = _load(crafted_run.model_path)
    equalized, info = equalize(crafted, images)

    assert info.max_logit_change < 1e-5
    assert info.scale_range[1] > CRAFTED["factor"] / 10  # channel 3 brought down
    ranges, _ = _ranges(equalized, CRAFTED["layer"], CRAFTED["next"])
    median = np.median(ranges)
    assert median / 2 <= ranges[CRAFTED["channel"]] <= 2 * median
    # The crafted model fails plain int8 (its one wide channel sets conv1's output scale);
    # equalized, it passes.
    assert _int8_agreement(crafted, calibration, images) < AGREEMENT
    assert _int8_agreement(equalized, calibration, images) >= AGREEMENT


@pytest.mark.slow
def test_equalize_skips_and_names_what_breaks_a_pair():
    import keras

    from edgecnn.export.remedies import equalize

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, padding="same", name="a"),
            layers.BatchNormalization(name="bn"),
            layers.ReLU(name="relu"),
            layers.Conv2D(4, 3, activation="sigmoid", name="b"),
            layers.Flatten(name="flatten"),
            layers.Dense(6, name="c"),
            layers.Activation("sigmoid", name="squash"),
            layers.Dense(5, activation="relu", name="d"),
            layers.Dropout(0.5, name="drop"),
            layers.Dense(3, name="e"),
        ]
    )
    images = np.random.default_rng(0).random((64, 8, 8, 2), dtype=np.float32)
    equalized, info = equalize(model, images)

    assert info.pairs == (("d", "e"),)
    assert len(info.skipped) == 3
    a_b, b_c, c_d = info.skipped
    assert a_b.startswith("a -> b:") and "BatchNormalization 'bn'" in a_b
    assert b_c.startswith("b -> c:") and "'sigmoid'" in b_c
    assert c_d.startswith("c -> d:") and "'squash'" in c_d
    assert info.max_logit_change < 1e-5
    np.testing.assert_allclose(*_ranges(equalized, "d", "e"), rtol=1e-5)
    for name in ("a", "b", "c"):
        for new, old in zip(
            equalized.get_layer(name).get_weights(),
            model.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(new, old)


def test_quantized_weights_are_the_converted_files(trained_run, data):
    """The weight quantization bias correction assumes is what the int8 file holds, for
    CONV_2D and FULLY_CONNECTED: per output channel, symmetric, max|w| / 127."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.export.formats.tflite import convert_model
    from edgecnn.export.remedies import quantized_weights

    calibration, _ = data
    model = _load(trained_run.out_dir / "model.keras")
    interpreter = Interpreter(model_content=convert_model(model, "int8", calibration))
    weights = {
        tuple(t["shape"]): t
        for t in interpreter.get_tensor_details()
        if t["dtype"] == np.int8
        and len(t["shape"]) > 1
        and len(t["quantization_parameters"]["scales"]) > 1
    }
    for name in ("conv1", "conv2", "fc1"):  # the plain int8 file keeps logits in float
        kernel = model.get_layer(name).get_weights()[0]
        stored = np.moveaxis(kernel, -1, 0)  # TFLite puts the output channel first
        detail = weights[stored.shape]
        params = detail["quantization_parameters"]
        assert params["quantized_dimension"] == 0
        assert not params["zero_points"].any()
        expected_scale = np.abs(stored.reshape(len(stored), -1)).max(1) / 127
        np.testing.assert_allclose(params["scales"], expected_scale, rtol=1e-6)
        in_file = interpreter.get_tensor(detail["index"]) * params["scales"].reshape(
            -1, *[1] * (stored.ndim - 1)
        )
        np.testing.assert_allclose(
            np.moveaxis(quantized_weights(kernel), -1, 0), in_file, rtol=1e-6, atol=1e-9
        )


def test_bias_corrected_moves_only_biases_to_cancel_the_mean_error(trained_run, data):
    import keras

    from edgecnn.export.remedies import bias_corrected, quantized_weights

    calibration, _ = data
    model = _load(trained_run.out_dir / "model.keras")
    before = [w.copy() for w in model.get_weights()]
    corrected, info = bias_corrected(model, calibration)

    assert info.layers == ("conv1", "conv2", "fc1", "logits")
    assert info.max_shift > 0
    for name in info.layers:
        (kernel, bias), (new_kernel, new_bias) = (
            model.get_layer(name).get_weights(),
            corrected.get_layer(name).get_weights(),
        )
        np.testing.assert_array_equal(new_kernel, kernel)
        assert not np.array_equal(new_bias, bias)
    assert all((a == b).all() for a, b in zip(before, model.get_weights(), strict=True))

    # conv2 ('same' padding: the border positions see zeros) with its weights quantized
    # and its bias corrected has, per channel, the float layer's mean output.
    only_conv2, _ = bias_corrected(model, calibration, layers=["conv2"])
    kernel, bias = only_conv2.get_layer("conv2").get_weights()
    only_conv2.get_layer("conv2").set_weights([quantized_weights(kernel), bias])

    def mean_output(m):
        probe = keras.Model(m.inputs, m.get_layer("conv2").output)
        return probe.predict(calibration, verbose=0).astype(np.float64).mean((0, 1, 2))

    float_mean, quantized_mean = mean_output(model), mean_output(only_conv2)
    uncorrected = np.abs(
        mean_output(_with_kernel(model, "conv2", quantized_weights(kernel))) - float_mean
    ).max()
    assert np.abs(quantized_mean - float_mean).max() < uncorrected / 100


def _with_kernel(model, name, kernel):
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.get_layer(name).set_weights([kernel, model.get_layer(name).get_weights()[1]])
    return copy


@pytest.mark.slow
def test_bias_correction_on_a_dense_layer_worked_by_hand():
    import keras

    from edgecnn.export.remedies import bias_corrected

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")])
    kernel = np.array([[1.0, 0.5], [0.3, -0.01]], np.float32)  # (in, out)
    bias = np.array([0.1, -0.2], np.float32)
    model.get_layer("dense").set_weights([kernel, bias])
    calibration = np.array([[1.0, 1.0], [3.0, 3.0]], np.float32)  # mean input (2, 2)

    corrected, info = bias_corrected(model, calibration)

    # Output 0: scale 1/127, 0.3 -> 38 steps; output 1: scale 0.5/127, -0.01 -> -3 steps.
    # 1.0 and 0.5 are exact, so each error is the second weight's times the mean input 2.
    error = np.array([38 / 127 - 0.3, -3 * 0.5 / 127 + 0.01])
    shift = 2.0 * error  # both negative: the quantized weights give smaller outputs
    new_kernel, new_bias = corrected.get_layer("dense").get_weights()
    np.testing.assert_array_equal(new_kernel, kernel)
    np.testing.assert_allclose(new_bias, bias - shift, rtol=1e-6)
    assert (new_bias > bias).all()
    assert info.layers == ("dense",)
    assert info.max_shift == pytest.approx(np.abs(shift).max(), rel=1e-6)
