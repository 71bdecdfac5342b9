"""Classify pictures with an exported model from a Python app.

    python examples/classify.py runs/latest/exports/model_int8.tflite shoe.png [more.png ...]

Needs only numpy, Pillow and one interpreter: pip install "edgecnn[litert,images]".
"""

import sys

from edgecnn.runtime import InferenceError, load_classifier


def main(model_path: str, pictures: list[str]) -> int:
    """Print the three most likely classes of each picture."""
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
            ranked = classifier.classify(picture)  # the 3 likeliest (or every class if fewer)
        except InferenceError as e:  # InputError: not a picture, unreadable, too large
            print(f"{picture}: {e}", file=sys.stderr)
            return 2
        label, probability = ranked[0]
        others = ", ".join(f"{name} {p:.3f}" for name, p in ranked[1:])
        print(f"{picture}: {label} ({probability:.1%}); then {others}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
