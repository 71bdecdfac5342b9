"""Ways to quantize the network to int8 TFLite, side by side, on one trained model.

    python bench/int8_options.py [RUN_DIR] [--calibration]   (default: runs/latest)

For each option: top-1 agreement with Keras on the export's 10,000 images, how often the
top two classes come in Keras's order, how often the top two scores tie exactly (the
runner-up then follows label order), the 1-image p50 latency on LiteRT (2 threads, the
options interleaved round by round so a busy machine slows them alike) and the size.
``--calibration`` adds full integer with 1,000, 2,000 and 5,000 calibration images.
docs/export-design.md keeps the numbers.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from edgecnn.export.config import ExportConfig
from edgecnn.export.exporter import agreement_images, calibration_images
from edgecnn.export.formats import tflite
from edgecnn.runtime.preprocess import softmax
from edgecnn.trainer import model_source, training_data
from edgecnn.trainer.dataset import to_float
from edgecnn.trainer.evaluate import load_keras_model

tf = tflite.tf
ROUNDS, PER_ROUND = 10, 50


def converted(model: Any, calibration: np.ndarray, option: str) -> bytes:
    if option == "full":
        return tflite.convert_model(model, "int8", calibration, full_integer=True)
    if option == "float-tail":
        return tflite.convert_model(model, "int8", calibration)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tflite._saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [tflite.SIGNATURE_KEY])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = tflite._representative(calibration)
        if option == "16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            converter.inference_input_type = tf.int16
            converter.inference_output_type = tf.int16
            return bytes(converter.convert())
        assert option == "float-softmax"  # int8 logits, softmax in float
        from tensorflow.lite.python import convert

        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
        return bytes(
            convert.mlir_quantize(
                calibrated, input_data_type=tf.int8, output_data_type=tf.float32,
                denylisted_ops=["SOFTMAX"],
            )
        )  # fmt: skip


class Runner:
    def __init__(self, data: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.data = data
        self.interpreter = Interpreter(model_content=data, num_threads=2)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.interpreter.allocate_tensors()

    def codes(self, images: np.ndarray) -> np.ndarray:
        scale, zero = self.input["quantization"]
        info = np.iinfo(self.input["dtype"])
        x = np.round(to_float(images) / scale + zero)
        return np.clip(x, info.min, info.max).astype(self.input["dtype"])

    def outputs(self, images: np.ndarray) -> np.ndarray:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=self.data, num_threads=2)
        codes = self.codes(images)
        it.resize_tensor_input(self.input["index"], list(codes.shape))
        it.allocate_tensors()
        it.set_tensor(self.input["index"], codes)
        it.invoke()
        y = it.get_tensor(self.output["index"]).astype(np.float32)
        scale, zero = self.output["quantization"]
        return (y - zero) * scale if scale else y

    def time_one(self, codes: np.ndarray) -> list[float]:
        it, index, out = self.interpreter, self.input["index"], self.output["index"]
        times = []
        for i in range(len(codes)):
            start = time.perf_counter()
            it.set_tensor(index, codes[i : i + 1])
            it.invoke()
            it.get_tensor(out)
            times.append(time.perf_counter() - start)
        return times


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    source = model_source.resolve_model(args[0] if args else "runs/latest")
    model = load_keras_model(source.model_path)
    data = training_data.for_model(model, source, whole_train=True)
    images = agreement_images(data)
    keras = softmax(model.predict(to_float(images), batch_size=1000, verbose=0))
    calibration, _ = calibration_images(data, ExportConfig())
    options = {"full integer (500 images)": ("full", calibration),
               "full int8, float softmax": ("float-softmax", calibration),
               "int8, float logits layer + softmax": ("float-tail", calibration),
               "16-bit activations (16x8)": ("16x8", calibration)}  # fmt: skip
    if "--calibration" in argv:
        for n in (1000, 2000, 5000):
            more, _ = calibration_images(data, ExportConfig(calib_samples=n))
            options[f"full integer ({n:,} images)"] = ("full", more)
    runners = {name: Runner(converted(model, cal, kind)) for name, (kind, cal) in options.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(ROUNDS):
        batch = images[r * PER_ROUND : (r + 1) * PER_ROUND]
        for name, runner in runners.items():
            times[name] += runner.time_one(runner.codes(batch))
    keras_top2 = np.argsort(-keras, axis=1, kind="stable")[:, :2]
    print(f"{len(images):,} images; 1-image latency: LiteRT, 2 threads, p50 of "
          f"{ROUNDS * PER_ROUND} calls interleaved")  # fmt: skip
    print(f"{'option':38s} {'agreement':>9s} {'top-2 order':>11s} {'top ties':>8s} "
          f"{'p50 us':>7s} {'bytes':>8s}")  # fmt: skip
    for name, runner in runners.items():
        probs = runner.outputs(images)
        top2 = np.argsort(-probs, axis=1, kind="stable")[:, :2]
        ordered = np.sort(probs, axis=1)
        print(
            f"{name:38s} {100 * np.mean(probs.argmax(1) == keras.argmax(1)):8.2f}% "
            f"{100 * np.mean(np.all(top2 == keras_top2, axis=1)):10.1f}% "
            f"{100 * np.mean(ordered[:, -1] == ordered[:, -2]):7.2f}% "
            f"{1e6 * np.median(times[name]):7.0f} {len(runner.data):8,d}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
