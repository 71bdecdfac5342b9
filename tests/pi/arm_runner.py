"""Run inside an emulated Raspberry Pi OS: every model on the same images, outputs to .npy.

Usage: ``python3 arm_runner.py WORK_DIR MODEL_DIR FILE:BACKEND...``. ``WORK_DIR`` holds
``images.npy`` and receives ``<file>.npy`` per model (int8 ones also ``<file>.single.npy``,
classified one image at a time) and ``info.json``. Only the standard
library, numpy and edgecnn's runtime may be imported here: this is what a device has.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgecnn.runtime import InputError, ModelError, load_classifier

#: The interpreter module behind each backend name, for its version.
MODULES = {
    "litert": "ai_edge_litert",
    "tflite": "tflite_runtime",
    "onnxruntime": "onnxruntime",
    "numpy": "numpy",
}


def hwcap() -> int:
    """The CPU features the kernel (here qemu) reports: AT_HWCAP from the aux vector."""
    data = Path("/proc/self/auxv").read_bytes()
    size = 8 if sys.maxsize > 2**32 else 4
    words = np.frombuffer(data, dtype=np.uint64 if size == 8 else np.uint32)
    pairs = dict(zip(words[::2].tolist(), words[1::2].tolist(), strict=True))
    return pairs.get(16, 0)  # AT_HWCAP


def check_api(clf, images: np.ndarray) -> dict:
    """The rest of the API on this numpy and interpreter: classify, float input, bad input."""
    floats = clf.predict(images[:8].astype(np.float64) / 255)
    probs = clf.predict(images[:8])
    height, width, _ = clf.input_shape
    try:
        clf.predict(np.zeros((2, height - 1, width), np.uint8))
        refused = None
    except InputError as e:
        refused = str(e)
    return {
        "labels": list(clf.labels),
        "input_shape": list(clf.input_shape),
        "classify": clf.classify(images[0], top_k=3),
        "float_input_max_diff": float(np.abs(floats - probs[:8]).max()),
        "bad_shape_error": refused,
    }


def run_cli(model: Path, images: np.ndarray, work: Path) -> dict:
    """``edgecnn predict --json`` as a user would type it on the device."""
    np.save(work / "four.npy", images[:4])
    command = ["edgecnn", "predict", str(model), str(work / "four.npy"), "--json", "--top-k", "2"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"returncode": done.returncode, "stderr": done.stderr[-2000:]}
    return {"returncode": 0, **json.loads(done.stdout)}


def run_verify(model: Path) -> dict:
    """``edgecnn verify --json``: the file against what it gave on the exporting machine."""
    done = subprocess.run(["edgecnn", "verify", str(model), "--json"], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode not in (0, 1):
        return {"returncode": done.returncode, "stderr": done.stderr[-2000:]}
    return {"returncode": done.returncode, **json.loads(done.stdout)}


def verify_tampered(models: Path, work: Path) -> dict:
    """``edgecnn verify`` on a copy of model_int8.tflite with one byte changed: exit 1."""
    import shutil

    folder = work / "tampered"
    folder.mkdir(exist_ok=True)
    for suffix in ("", ".json", ".reference.npz"):
        shutil.copy(models / f"model_int8.tflite{suffix}", folder / f"model_int8.tflite{suffix}")
    data = bytearray((folder / "model_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model_int8.tflite").write_bytes(bytes(data))
    return run_verify(folder / "model_int8.tflite")


_LOAD = """
import sys
from edgecnn.runtime import ModelError, load_classifier
try:
    load_classifier(sys.argv[1], check_integrity=sys.argv[2] == "check")
except ModelError as e:
    print(e)
"""


def probe_corrupt(models: Path, work: Path) -> dict:
    """Load a .tflite with 200 bytes flipped mid-file in a child process, which may crash.

    Once as users do (the file's recorded SHA-256 is checked first), once without that
    check, so that the interpreter itself meets the damage.
    """
    data = (models / "model_int8.tflite").read_bytes()
    bad = work / "corrupt.tflite"
    bad.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:])
    result = {}
    for mode in ("check", "no-check"):
        command = [sys.executable, "-c", _LOAD, str(bad), mode]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            result[mode] = {"returncode": None, "output": "no answer in 60 s"}
            continue
        output = (done.stdout + done.stderr)[-500:]
        result[mode] = {"returncode": done.returncode, "output": output}
    return result


def main() -> None:
    work, models = Path(sys.argv[1]), Path(sys.argv[2])
    images = np.load(work / "images.npy")
    info = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "hwcap": hex(hwcap()),
        "runs": {},
        "refusals": {},
    }
    for item in sys.argv[3:]:
        name, expected = item.split(":")
        start = time.perf_counter()
        # "auto", as an app would load it: the backend it falls back to is part of the test.
        clf = load_classifier(models / name)
        loaded = time.perf_counter()
        probs = clf.predict(images)
        done = time.perf_counter()
        np.save(work / f"{name}.npy", probs)
        if "int8" in name:
            # One image per call, as a camera app classifies: int8 kernels may take
            # another path for a batch of one.
            single = np.concatenate([clf.predict(image) for image in images])
            np.save(work / f"{name}.single.npy", single)
        singles = time.perf_counter()
        module = sys.modules[MODULES[clf.backend_name]]
        info["runs"][name] = {
            "backend": clf.backend_name,
            "expected_backend": expected,
            "version": getattr(module, "__version__", None),
            "load_s": loaded - start,
            "predict_s": done - loaded,
            "single_images_s": singles - done,
            "api": check_api(clf, images),
        }
    # A format with no interpreter on this device must be refused in a sentence.
    if "model_float32.onnx" not in info["runs"]:
        try:
            load_classifier(models / "model_float32.onnx")
        except ModelError as e:
            info["refusals"]["model_float32.onnx"] = str(e)
    info["cli"] = run_cli(models / "model_int8.tflite", images, work)
    info["verify"] = {name.split(":")[0]: run_verify(models / name.split(":")[0])
                      for name in sys.argv[3:]}  # fmt: skip
    info["verify_tampered"] = verify_tampered(models, work)
    info["corrupt"] = probe_corrupt(models, work)
    heavy = ("tensorflow", "keras", "edgecnn.trainer", "edgecnn.export")
    info["forbidden_imports"] = sorted(m for m in heavy if m in sys.modules)
    (work / "info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
