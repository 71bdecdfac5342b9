"""The int8 QDQ ONNX file's activations against the float file's, tensor by tensor.

The fast tests run on the checked-in tiny files (no TensorFlow); the slow one on the
crafted model, whose one wide conv1 channel plain int8 calibration fails.
"""

from __future__ import annotations

import io
import math
import shutil

import onnx
import pytest
from onnx import numpy_helper
from shared import TINY

from edgecnn.export.doctor.onnx_tensors import onnx_tensor_errors
from edgecnn.trainer.dataset import to_float

#: The Keras model's layers, in order (the tiny model's too: fewer filters, same names).
LAYERS = ["conv1", "pool1", "relu1", "conv2", "pool2", "relu2", "flatten", "fc1", "logits"]
FLOAT, INT8 = TINY / "model_float32.onnx", TINY / "model_int8.onnx"


@pytest.fixture(scope="module")
def images(test_images):
    return to_float(test_images.x[:300])


@pytest.fixture(scope="module")
def tiny_errors(images):
    return onnx_tensor_errors(FLOAT, INT8, images, LAYERS)


def _activations(path):
    """The tensors QuantizeLinear reads in ``path``, weights left out, in node order."""
    graph = onnx.load(path).graph
    constants = {t.name for t in graph.initializer}
    return [
        n.input[0]
        for n in graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in constants
    ]


def test_every_quantized_activation_in_graph_order(tiny_errors):
    assert [e.tensor for e in tiny_errors] == _activations(INT8)
    # The image (tf2onnx's reshape of it to NCHW), each layer's output, then the copies
    # of relu2's requantized around the transpose to NHWC and the flatten.
    layers = [e.layer for e in tiny_errors]
    assert layers == ["image", "conv1", "relu1", "conv2", "relu2", "relu2", "flatten", "fc1"]
    for e in tiny_errors:
        assert e.images == 300 and e.dtype == "int8"
        assert math.isfinite(e.sqnr_db) and e.sqnr_db > 10, e
        assert math.isfinite(e.median_channel_sqnr_db) and e.median_channel_sqnr_db > 10, e
        assert 0 <= e.clipped <= 1 and 0 <= e.mean_error_steps <= e.max_error_steps, e
        assert e.channel_range_ratio >= 1 and e.scale > 0, e


def test_tensors_are_compared_channels_last(tiny_errors):
    """The graph holds conv and pool outputs NCHW; the records are NHWC like Keras's."""
    shapes = {e.layer: e.shape for e in tiny_errors}
    assert shapes["image"] == (28, 28, 1)
    assert shapes["conv1"] == (28, 28, 4) and shapes["relu1"] == (14, 14, 4)
    assert shapes["conv2"] == (14, 14, 8) and shapes["relu2"] == (7, 7, 8)
    assert shapes["flatten"] == (392,) and shapes["fc1"] == (32,)


def test_the_input_is_quantized_exactly(tiny_errors):
    """Pixels are k/255 and the input's scale is 1/255: int8 holds them exactly."""
    first = tiny_errors[0]
    assert first.layer == "image" and first.max_error_steps < 1e-3 and first.clipped == 0


def test_a_float_file_has_no_quantized_tensor(images):
    assert onnx_tensor_errors(FLOAT, FLOAT, images, LAYERS) == []


def test_batches_and_the_image_cap_do_not_change_the_numbers(images, tiny_errors):
    few = onnx_tensor_errors(FLOAT, INT8, images, LAYERS, max_images=50, batch_size=7)
    whole = onnx_tensor_errors(FLOAT, INT8, images[:50], LAYERS, batch_size=50)
    assert [e.images for e in few] == [50] * len(tiny_errors)
    for a, b in zip(few, whole, strict=True):
        assert a.tensor == b.tensor
        assert a.sqnr_db == pytest.approx(b.sqnr_db, abs=1e-6)
        assert a.median_channel_sqnr_db == pytest.approx(b.median_channel_sqnr_db, abs=1e-6)
        assert a.max_error_steps == pytest.approx(b.max_error_steps, abs=1e-6)


def test_a_coarser_scale_shows_on_its_tensor(tmp_path, images, tiny_errors):
    """conv2's output quantized with 16 times its scale: about 24 dB lost there, nothing
    changed before it, and less lost after it than there (the next layers' own rounding
    hides part of it). Nothing is written beside the files analysed."""
    model = onnx.load(INT8)
    tensor = "edgecnn_1/conv2_1/BiasAdd:0"
    (node,) = [
        n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor
    ]
    (init,) = [t for t in model.graph.initializer if t.name == node.input[1]]
    scale = numpy_helper.to_array(init) * 16
    init.CopyFrom(numpy_helper.from_array(scale, init.name))
    folder = tmp_path / "files"
    folder.mkdir()
    shutil.copy(FLOAT, folder / FLOAT.name)
    onnx.save(model, folder / "tampered.onnx")
    before = sorted(p.name for p in folder.iterdir())

    tampered = onnx_tensor_errors(folder / FLOAT.name, folder / "tampered.onnx", images, LAYERS)
    assert sorted(p.name for p in folder.iterdir()) == before
    drops = {a.tensor: a.sqnr_db - b.sqnr_db for a, b in zip(tiny_errors, tampered, strict=True)}
    at = [e.tensor for e in tampered].index(tensor)
    assert tampered[at].scale == pytest.approx(float(scale))
    assert all(drop == 0 for drop in list(drops.values())[:at]), drops
    assert drops[tensor] > 15, drops
    assert max(drops, key=lambda name: drops[name]) == tensor, drops


def test_crafted_conv1_channel_drowns_the_others(crafted_run, exported, tmp_path, fashion_dir):
    """One conv1 channel 100 times wider sets conv1's scale: as a whole the tensor keeps a
    fair SQNR, its median channel falls far below the unmodified model's."""
    from edgecnn.export.config import ExportConfig
    from edgecnn.export.exporter import export_model
    from edgecnn.trainer.idx import load_dataset

    config = ExportConfig(int8=True, formats=("onnx",))
    export_model(crafted_run.out_dir, config, out_dir=tmp_path, data_dir=fashion_dir,
                 stream=io.StringIO())  # fmt: skip
    # The gate may reject it: the analysis is for such a file.
    crafted = next(p for p in tmp_path.glob("model_int8.onnx*") if not p.name.endswith(".json"))
    images = to_float(load_dataset("fashion", fashion_dir).x_test[:500])

    def conv1(folder, int8):
        errors = onnx_tensor_errors(folder / "model_float32.onnx", int8, images, LAYERS)
        return next(e for e in errors if e.layer == "conv1")

    plain, bad = conv1(exported.out, exported.out / "model_int8.onnx"), conv1(tmp_path, crafted)
    assert plain.shape == bad.shape == (28, 28, 16)
    assert plain.median_channel_sqnr_db - bad.median_channel_sqnr_db > 20, (plain, bad)
    assert bad.channel_range_ratio > 20 * plain.channel_range_ratio, (plain, bad)
    assert bad.sqnr_db - bad.median_channel_sqnr_db > 15, bad
