"""The C generator on networks unlike the tutorial's, against TFLite's reference kernels.

The default network takes the kernels' fast paths (a grey first layer, 16 input channels
in groups of 4, 2x2 pools, layer sizes that are multiples of 4). These networks take the
others: colour input, channel counts that are not multiples of 4 (value-by-value
patches), an odd number of output channels and rows (padding channels and rows), 3x3
pools of stride 2 (a pair of positions spans two pooled outputs), overlapping pools,
strided 'valid' convolutions without a pool, inputs of a dense layer that are not a
multiple of 4. Each is built with Keras, converted by the real TFLite converter to
full-integer int8, generated as C, and held byte for byte against LiteRT's reference
kernels on both the portable path and the DSP path (its intrinsics in C).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edgecnn.export.mcu import cgen, graph, reference, toolchain

pytestmark = pytest.mark.slow

#: (name, input shape, layers): ("conv", filters, kernel, stride, padding),
#: ("pool", size, stride), ("dense", units).
NETWORKS = {
    "colour, odd channels, 3x3 pools": (
        (20, 20, 3),
        [("conv", 5, 3, 1, "same"), ("pool", 3, 2), ("conv", 7, 3, 1, "same"), ("pool", 3, 2),
         ("dense", 9)],
    ),
    "strided valid convs, overlapping pool, 6 channels": (
        (17, 15, 1),
        [("conv", 6, 5, 2, "valid"), ("conv", 8, 3, 1, "valid"), ("pool", 2, 1),
         ("dense", 13)],
    ),
    "groups of 4 and a dense input not of 4": (
        (12, 12, 1),
        [("conv", 4, 5, 1, "same"), ("pool", 2, 2), ("conv", 12, 3, 1, "valid"),
         ("dense", 6)],
    ),
    "a dense layer of more than 32,767 inputs": (
        (28, 28, 1), [("conv", 48, 3, 1, "same"), ("dense", 4)],
    ),
    "no dense layer: a convolution gives the classes": (
        (10, 10, 5), [("conv", 8, 3, 2, "same"), ("pool", 2, 2), ("classes", 2)],
    ),
}  # fmt: skip
CLASSES = 5


def _keras_model(shape: tuple[int, int, int], layers: list[tuple]):
    import tensorflow as tf

    keras = tf.keras
    model = keras.Sequential([keras.Input(shape)])
    for kind, *args in layers:
        if kind == "conv":
            filters, kernel, stride, padding = args
            model.add(keras.layers.Conv2D(filters, kernel, stride, padding, activation="relu"))
        elif kind == "pool":
            size, stride = args
            model.add(keras.layers.MaxPooling2D(size, stride))
        elif kind == "classes":  # a last convolution over the whole map, one per class
            model.add(keras.layers.Conv2D(CLASSES, args[0], padding="valid"))
            model.add(keras.layers.Flatten())
            model.add(keras.layers.Softmax())
            return model
        else:
            if len(model.output_shape) > 2:
                model.add(keras.layers.Flatten())
            model.add(keras.layers.Dense(args[0], activation="relu"))
    model.add(keras.layers.Dense(CLASSES))
    model.add(keras.layers.Softmax())
    return model


def _full_integer(model, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for image in calibration:
            yield [image[None].astype(np.float32)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def _library(folder: Path, source: Path, flags: tuple[str, ...]) -> ctypes.CDLL:
    lib = folder / f"lib{abs(hash(flags))}.so"
    toolchain.build_shared([source], lib, ("-O2", f"-I{folder}", *flags))
    handle = ctypes.CDLL(str(lib))
    pointers = [ctypes.c_void_p] * 4
    handle.edgecnn_classify.argtypes = pointers[:3]
    handle.edgecnn_infer.argtypes = pointers
    handle.edgecnn_preprocess.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int32,
                                          ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                                          ctypes.c_int, ctypes.c_void_p]  # fmt: skip
    return handle


@pytest.mark.parametrize("name", list(NETWORKS))
def test_unusual_networks_are_bit_identical_on_both_paths(name, tmp_path):
    shape, layers = NETWORKS[name]
    rng = np.random.default_rng(len(name))
    model = _keras_model(shape, layers)
    # Weights a little larger than Keras's initial ones, so that int8 steps matter.
    model.set_weights([w * 1.5 for w in model.get_weights()])
    pictures = rng.integers(0, 256, (120, *shape), dtype=np.uint8)
    data = _full_integer(model, pictures[:60].astype(np.float32) / 255)
    g = graph.read(data)
    library = cgen.generate(g, cgen.sha256(data), "test",
                            tuple(f"class {i}" for i in range(CLASSES)), True)  # fmt: skip
    for file, text in library.files.items():
        (tmp_path / file).write_text(text)
    assert g.input.quant is not None
    inputs = reference.int8_inputs(pictures, g.input.quant.scale, g.input.quant.zero_point)
    expected = reference.run(data, inputs, library.logits_tensor, library.output_tensor)
    for flags in ((), ("-DEDGECNN_DSP_IN_C",)):
        lib = _library(tmp_path, tmp_path / cgen.SOURCE, flags)
        work = ctypes.create_string_buffer(library.work_bytes + 1)
        scores = np.zeros(CLASSES, np.int8)
        logits = np.zeros(CLASSES, np.int8)
        for i in range(len(pictures)):
            # Through the pixel table (edgecnn_classify) and from int8 (edgecnn_infer), the
            # work buffer one byte off its alignment for the second.
            lib.edgecnn_classify(
                pictures[i].ctypes.data, ctypes.addressof(work), scores.ctypes.data
            )
            np.testing.assert_array_equal(scores, expected.scores[i], err_msg=f"{flags} {i}")
            buffer = ctypes.addressof(work) + 1
            lib.edgecnn_infer(inputs[i].ctypes.data, buffer, logits.ctypes.data,
                              scores.ctypes.data)  # fmt: skip
            np.testing.assert_array_equal(logits, expected.logits[i], err_msg=f"{flags} {i}")
            np.testing.assert_array_equal(scores, expected.scores[i], err_msg=f"{flags} {i}")
        # Camera frames are grey or RGB: a model of other channels is refused, not misread.
        frame, pixels = np.full((24, 32, 3), 200, np.uint8), np.zeros(shape, np.uint8)
        status = lib.edgecnn_preprocess(frame.ctypes.data, 2, 32, 24, 96, None, 2,
                                        pixels.ctypes.data)  # fmt: skip
        assert status == (0 if shape[2] in (1, 3) else -1)


def test_a_softmax_over_more_than_one_row_is_refused():
    """TFLite normalises each row; the C code has one softmax per image: say so."""
    import tensorflow as tf

    from edgecnn.export.mcu.graph import UnsupportedModel

    keras = tf.keras
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.Flatten(), keras.layers.Dense(6),
                              keras.layers.Reshape((2, 3)), keras.layers.Softmax()])  # fmt: skip
    rng = np.random.default_rng(0)
    data = _full_integer(model, rng.random((20, 8, 8, 1), dtype=np.float32))
    with pytest.raises(UnsupportedModel, match="one row of scores per image"):
        cgen.generate(graph.read(data), cgen.sha256(data), "test", ("a", "b", "c"), True)
