"""What an Android or iOS app does with a .tflite file (int8 or float), written in Python.

    python examples/mobile_style.py runs/latest/exports/model_int8.tflite shoe.png

No edgecnn import: only LiteRT, numpy, Pillow and the model's metadata (the JSON beside
the file, which is also embedded in it). Each step maps to a line of Kotlin or Swift;
see docs/embedding.md.
"""

import json
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image


def main(model_path: str, picture: str) -> int:
    """Preprocess, quantize, run the signature by name, dequantize, calibrate, pick the label."""
    with open(model_path + ".json") as f:
        meta = json.load(f)
    height, width, channels = meta["input"]["shape"]  # 28, 28, 1 for Fashion-MNIST

    # 1. The model's size and mode (greyscale or RGB). For a model of light objects on a
    #    dark background (Fashion-MNIST's), a picture whose border is light (a dark object
    #    on white paper) is inverted. Then 0..1, as in training.
    mode = "L" if channels == 1 else "RGB"
    im = Image.open(picture).convert(mode).resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(im, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if meta["preprocessing"]["light_on_dark"] and border.mean() > 127:
        pixels = 255 - pixels
    x = pixels * meta["preprocessing"]["pixel_scale"]

    # 2. An int8 file takes int8: q = round(x / scale) + zero_point, from the model's own
    #    numbers. A float file (no input quantization recorded) takes x as it is.
    q_in = meta.get("quantization", {}).get("input")
    if q_in:
        q = np.clip(np.round(x / q_in["scale"]) + q_in["zero_point"], -128, 127).astype(np.int8)
    else:
        q = x.astype(np.float32)

    # 3. Call the model by its signature and tensor names, as mobile LiteRT code does.
    interpreter = Interpreter(model_path=model_path)
    runner = interpreter.get_signature_runner("serving_default")
    out = runner(**{meta["input"]["name"]: q.reshape(1, height, width, channels)})
    q_out = out[meta["output"]["name"]][0]

    # 4. int8 output back to probabilities: p = scale * (q - zero_point); a float file
    #    gives them directly.
    q_out_params = meta.get("quantization", {}).get("output")
    if q_out_params:
        scale, zero_point = q_out_params["scale"], q_out_params["zero_point"]
        probabilities = scale * (q_out.astype(np.float32) - zero_point)
        probabilities /= probabilities.sum()  # int8 steps of 1/256 need not sum to exactly 1
    else:
        probabilities = q_out.astype(np.float32)

    # 5. Calibrate, then answer "unknown" below the threshold, with the file's own numbers
    #    (fitted at export; a file without them: neither). softmax(log(p) / T) is the
    #    temperature-scaled softmax of the logits; a top probability below reject_below
    #    means the picture is likely none of the classes.
    confidence = meta.get("confidence") or {}
    temperature = confidence.get("temperature", 1.0)
    if temperature != 1.0:
        z = np.log(np.maximum(probabilities, 1e-30), dtype=np.float64) / temperature
        e = np.exp(z - z.max())
        probabilities = (e / e.sum()).astype(np.float32)
    best = int(np.argmax(probabilities))
    label = meta["labels"][best]
    threshold = confidence.get("reject_below")
    if threshold is not None and probabilities[best] < threshold:
        label = f"unknown, most like {label}"
    print(f"{picture}: {label} ({probabilities[best]:.1%})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
