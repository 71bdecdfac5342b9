"""Classify pictures with an exported model from a Python app.

    python examples/classify.py runs/latest/exports/model_int8.tflite shoe.png [more.png ...]

Needs only numpy, Pillow and one interpreter: pip install "edgecnn[litert,images]".
"""

import sys

from edgecnn.runtime import InferenceError, load_classifier


def main(model_path: str, pictures: list[str]) -> int:
    """Print each picture's answer ("unknown" if none of the classes) and its top classes."""
    try:
        classifier = load_classifier(model_path)  # the backend follows the file's suffix
    except InferenceError as e:  # ModelError: missing, corrupt or foreign model file
        print(f"cannot load the model: {e}", file=sys.stderr)
        return 2
    meta = classifier.metadata
    print(f"{model_path}: {meta.precision} {classifier.backend_name}, {len(meta.labels)} classes")
    for picture in pictures:
        try:
            # Any size or colour mode; dark-on-light photos are inverted automatically.
            answer = classifier.answer(picture)  # the 3 likeliest (or every class if fewer)
        except InferenceError as e:  # InputError: not a picture, unreadable, too large
            print(f"{picture}: {e}", file=sys.stderr)
            return 2
        # Calibrated confidence; "unknown" below the threshold fitted at export, where the
        # picture is likely none of the classes (load_classifier(reject=False): never).
        label = answer.label
        if answer.unknown:
            label = f"unknown, most like {answer.top_label}"
        others = ", ".join(f"{name} {p:.3f}" for name, p in answer.top_k[1:])
        print(f"{picture}: {label} ({answer.confidence:.1%}); then {others}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
