"""``edgecnn verify``: is this file, on this device, the file the exporter proved?

Each exported file gets ``<file>.reference.npz`` beside it: a few hundred test images,
their classes, the Keras model's probabilities and the exporting machine's for that
file, and the gate the file passed. On the device, :func:`verify` runs the file through
the runtime on those images and applies the same gate: top-1 agreement with Keras (and
for float32 files the largest probability difference). It also says how far this
device's outputs are from the exporting machine's, in int8 steps for int8 files: ARM
kernels round a few values otherwise, which is expected, and flips a near-tie now and
then, which the gate measures. Only numpy and the runtime are needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn._files import read_regular_file
from edgecnn.runtime.errors import IntegrityError, ModelError
from edgecnn.runtime.npy import ARCHIVE_ERRORS, read_member

#: Suffix of the reference written beside each exported file.
REFERENCE_SUFFIX = ".reference.npz"
#: Test images in a reference (fewer for large inputs: at most MAX_PIXEL_BYTES of pixels).
REFERENCE_IMAGES = 500
MAX_PIXEL_BYTES = 4 * 1024 * 1024
#: What a reference may weigh when read.
MAX_REFERENCE_BYTES = 64 * 1024 * 1024
#: Array name -> numpy kinds it may hold.
KINDS = {"images": "u", "labels": "iu", "keras": "f", "exported": "f", "meta": "U"}


def reference_path(model: str | Path) -> Path:
    """``model_int8.tflite`` -> ``model_int8.tflite.reference.npz``."""
    path = Path(model)
    return path.with_name(path.name.rstrip("/") + REFERENCE_SUFFIX)


def reference_count(image_shape: tuple[int, ...], available: int) -> int:
    """How many images a reference holds for inputs of ``image_shape``."""
    per_image = int(np.prod(image_shape))
    return max(1, min(available, REFERENCE_IMAGES, MAX_PIXEL_BYTES // per_image))


def reference_bytes(images: np.ndarray, labels: np.ndarray, keras: np.ndarray,
                    exported: np.ndarray, gate: dict[str, Any]) -> bytes:  # fmt: skip
    """The ``.reference.npz`` document for one exported file."""
    meta = {
        **gate,
        "exported_on": f"{platform.system()} {platform.machine()}",
        "edgecnn_version": __version__,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images=np.ascontiguousarray(images, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        keras=np.asarray(keras, dtype=np.float32),
        exported=np.asarray(exported, dtype=np.float32),
        meta=np.array(json.dumps(meta, allow_nan=False)),
    )
    return buffer.getvalue()


def read_reference(path: Path) -> dict[str, Any]:
    """The arrays and the gate of a reference, each checked before it is read.

    Raises:
        ModelError: missing, not a reference, or damaged.
    """
    data = read_regular_file(path, MAX_REFERENCE_BYTES, ModelError, "a reference file")
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
            for key, kinds in KINDS.items():
                info = members.get(f"{key}.npy")
                if info is None:
                    raise ModelError(f"{path}: not an edgecnn reference (no {key})")
                with archive.open(info) as stream:
                    out[key] = read_member(stream, info.file_size, MAX_REFERENCE_BYTES, kinds)
        out["meta"] = json.loads(str(out["meta"]))
    except ModelError:
        raise
    except ARCHIVE_ERRORS as e:  # NpyError is a ValueError
        raise ModelError(f"{path}: not a readable reference ({type(e).__name__}: {e})") from None
    n = len(out["images"])
    if not (len(out["labels"]) == len(out["keras"]) == len(out["exported"]) == n > 0):
        raise ModelError(f"{path}: its arrays disagree in length; not a reference")
    if not isinstance(out["meta"], dict) or not isinstance(out["meta"].get("min_agreement"), float):
        raise ModelError(f"{path}: its gate is missing or damaged")
    return out


def verify(
    model: str | Path,
    reference: str | Path | None = None,
    backend: str = "auto",
    num_threads: int | None = None,
) -> dict[str, Any]:
    """Run ``model`` on its reference images here and apply its export gate.

    A file whose bytes no longer match their recorded SHA-256 fails (it is not the file
    that was proven) rather than raising.

    Raises:
        ModelError: the model or the reference cannot be read, or they do not belong
            together (another shape, another class count).
    """
    from edgecnn.runtime import load_classifier

    model = Path(model)
    ref_path = Path(reference) if reference is not None else reference_path(model)
    if not ref_path.is_file() and reference is None:
        raise ModelError(
            f"{model} has no {ref_path.name} beside it; export again with this edgecnn, or "
            "name one with --reference"
        )
    ref = read_reference(ref_path)
    gate = ref["meta"]
    result: dict[str, Any] = {"model": str(model), "reference": str(ref_path),
                              "images": len(ref["images"]), "gate": gate}  # fmt: skip
    try:
        clf = load_classifier(model, backend=backend, num_threads=num_threads)
    except IntegrityError as e:
        return {**result, "passed": False, "failures": [str(e)]}
    if tuple(ref["images"].shape[1:]) not in (clf.input_shape, clf.input_shape[:2]):
        raise ModelError(f"{ref_path}: its images are not {clf.input_shape}; another model's")
    if ref["keras"].shape[1] != len(clf.labels):
        raise ModelError(f"{ref_path}: {ref['keras'].shape[1]} classes, the model has "
                         f"{len(clf.labels)}; another model's")  # fmt: skip
    probs = clf.predict(ref["images"])
    top, keras_top, export_top = probs.argmax(1), ref["keras"].argmax(1), ref["exported"].argmax(1)
    diff_export = float(np.abs(probs - ref["exported"]).max())
    result.update(
        backend=clf.backend_name,
        machine=f"{platform.system()} {platform.machine()}",
        accuracy=float(np.mean(top == ref["labels"])),
        keras_accuracy=float(np.mean(keras_top == ref["labels"])),
        agreement=float(np.mean(top == keras_top)),
        agreement_with_export=float(np.mean(top == export_top)),
        max_prob_diff=float(np.abs(probs - ref["keras"]).max()),
        max_diff_from_export=diff_export,
    )
    step = (clf.metadata.quantization.get("output") or {}).get("scale")
    # The C backend answers with the softmax of its int8 logits, not its int8 scores.
    if step and clf.backend_name != "c":
        result["max_steps_from_export"] = int(round(diff_export / float(step)))
    failures = []
    recorded = gate.get("file_sha256")
    if recorded and model.is_file() and hashlib.sha256(model.read_bytes()).hexdigest() != recorded:
        failures.append(f"the reference was made for another export of {gate.get('file')} "
                        "(its SHA-256 differs); export again")  # fmt: skip
    if gate.get("precision") not in (None, clf.metadata.precision):
        failures.append(f"the reference was made for {gate.get('file')} ({gate['precision']}), "
                        f"this file is {clf.metadata.precision}")  # fmt: skip
    # The gate was passed on thousands of images; these few hundred are a sample of them,
    # so the file must reach the gate here or what it reached on this sample at export.
    at_export = float(np.mean(export_top == keras_top))
    threshold = min(gate["min_agreement"], at_export)
    result.update(agreement_at_export=at_export, agreement_threshold=threshold)
    if not result["agreement"] >= threshold:
        failures.append(f"top-1 agreement with Keras {100 * result['agreement']:.2f}% < "
                        f"{100 * threshold:.2f}%")  # fmt: skip
    limit = gate.get("max_prob_diff")
    if isinstance(limit, float) and not result["max_prob_diff"] <= limit:
        failures.append(f"max probability difference {result['max_prob_diff']:.2e} > {limit:.0e}")
    result.update(passed=not failures, failures=failures)
    return result


def format_result(r: dict[str, Any]) -> str:
    """What ``edgecnn verify`` prints."""
    if "agreement" not in r:
        return f"{r['model']}: FAIL: {'; '.join(r['failures'])}"
    lines = [
        f"{r['model']} on {r['backend']} ({r['machine']}), {r['images']:,} reference images "
        f"exported on {r['gate'].get('exported_on', '?')}:",
        f"  top-1 agreement with Keras       {100 * r['agreement']:7.2f}%   "
        f"(gate >= {100 * r['agreement_threshold']:.2f}%; at export "
        f"{100 * r['agreement_at_export']:.2f}%)",
        f"  top-1 agreement with the export  {100 * r['agreement_with_export']:7.2f}%",
        f"  accuracy                         {100 * r['accuracy']:7.2f}%   "
        f"(Keras {100 * r['keras_accuracy']:.2f}%)",
        f"  largest difference from Keras    {r['max_prob_diff']:.2e}",
    ]
    steps = r.get("max_steps_from_export")
    lines.append(
        f"  largest difference from export   {r['max_diff_from_export']:.2e}"
        + (f" ({steps} int8 steps)" if steps is not None else "")
    )
    lines.append("PASS" if r["passed"] else "FAIL: " + "; ".join(r["failures"]))
    return "\n".join(lines)
