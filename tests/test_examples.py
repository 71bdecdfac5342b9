"""The examples in examples/ run as documented, on real exports, and agree with the API."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from calibrated_files import FIT_IMAGES, calibrated_npz
from PIL import Image
from serve_helpers import running_server
from shared import TINY, TINY_FILES

from edgecnn.runtime import load_classifier

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PICTURE = Path(__file__).parent / "data" / "ankle_boot.png"


def run_example(name, *args):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_tested():
    tested = {
        "classify.py", "batch_and_threads.py", "http_client.py", "mobile_style.py", "shapes.py"
    }  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


#: Every kind of file the runtime loads (the C library needs a compiler: tests/export).
EVERY_FILE = [*TINY_FILES, "full_integer/model_int8.tflite"]


@pytest.mark.parametrize("model", EVERY_FILE)
def test_classify_prints_what_the_api_says(model):
    path = TINY / model
    label, probability = load_classifier(path).classify(PICTURE, top_k=3)[0]
    out = run_example("classify.py", path, PICTURE)
    assert f"{PICTURE}: {label} ({probability:.1%})" in out


def test_classify_explains_a_bad_model_in_one_line(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a model")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "classify.py"), str(bad), str(PICTURE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("cannot load the model:") and "Traceback" not in done.stderr


@pytest.mark.parametrize("model", EVERY_FILE)
def test_batch_and_threads_agree(test_images, tmp_path, model):
    images = tmp_path / "images.npy"
    np.save(images, test_images.x[:200])
    out = run_example("batch_and_threads.py", TINY / model, images)
    assert "200 images" in out and "same answers: True" in out


def test_mobile_style_matches_the_runtime_without_importing_edgecnn(tmp_path):
    model = TINY / "model_int8.tflite"
    # A dark-on-light photo of the same boot: the example must invert it as the runtime does.
    from PIL import Image, ImageOps

    photo = tmp_path / "photo.png"
    with Image.open(PICTURE) as im:
        ImageOps.invert(im.convert("L")).resize((200, 200)).save(photo)
    clf = load_classifier(model)
    label, probability = clf.classify(PICTURE)[0]
    out = run_example("mobile_style.py", model, PICTURE)
    assert f"{PICTURE}: {label} ({probability:.1%})" in out  # 28x28: bit-identical input
    # A resized photo: the example resizes plainly, the runtime with Pillow's reducing_gap
    # (as an app's own resizer would differ): the same class, nearly the same probability.
    label, probability = clf.classify(photo)[0]
    found = re.search(r": (.+) \((\d+\.\d)%\)", run_example("mobile_style.py", model, photo))
    assert found.group(1) == label
    assert abs(float(found.group(2)) / 100 - probability) < 0.02
    source = (EXAMPLES / "mobile_style.py").read_text()
    assert "edgecnn" not in source.split('"""', 2)[2].replace("edgecnn serve", "")


@pytest.mark.parametrize(
    "model", ["model_int8.tflite", "full_integer/model_int8.tflite", "model_float32.tflite"]
)
def test_mobile_style_runs_int8_and_float_files(model):
    """The recipe works for every .tflite: int8 input with float or int8 output, float."""
    label, probability = load_classifier(TINY / model).classify(PICTURE)[0]
    out = run_example("mobile_style.py", TINY / model, PICTURE)
    assert f"{PICTURE}: {label} ({probability:.1%})" in out


def test_http_client_says_in_one_line_that_no_server_answers():
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "http_client.py"), "http://127.0.0.1:9", str(PICTURE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("cannot reach http://127.0.0.1:9")


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.onnx", "weights.npz"])
def test_http_client_gets_the_api_answer_from_a_running_server(name):
    model = TINY / name
    label, probability = load_classifier(model).classify(PICTURE, top_k=3)[0]
    with running_server(model, "--threads", "1") as server:
        out = run_example("http_client.py", f"http://127.0.0.1:{server.port}", PICTURE)
    assert f"{PICTURE}: {label} ({probability:.1%}) by {name}" in out
    assert json.dumps(label)  # the reply's label is the API's label, not a transformed one


def shown(picture, answer):
    """How the examples print an answer: "unknown, most like X" when it is unknown."""
    label = f"unknown, most like {answer.top_label}" if answer.unknown else answer.label
    return f"{picture}: {label} ({answer.confidence:.1%})"


def sure_and_unsure(classifier, images, folder):
    """A picture ``classifier`` answers with a class, and one it answers "unknown"."""
    unknown = classifier.unknown(classifier.predict(images))
    paths = [folder / "sure.png", folder / "unsure.png"]
    for path, image in zip(paths, (images[~unknown][0], images[unknown][0]), strict=True):
        Image.fromarray(image).save(path)
    return paths


def test_classify_and_the_http_client_say_unknown_as_the_api(test_images, tmp_path):
    model = calibrated_npz(tmp_path, test_images.x, test_images.y)
    clf = load_classifier(model)
    pictures = sure_and_unsure(clf, test_images.x[FIT_IMAGES : FIT_IMAGES + 200], tmp_path)
    answers = [clf.answer(picture) for picture in pictures]
    assert [a.unknown for a in answers] == [False, True]
    out = run_example("classify.py", model, *pictures)
    assert all(shown(p, a) in out for p, a in zip(pictures, answers, strict=True))
    with running_server(model, "--threads", "1") as server:
        for picture, answer in zip(pictures, answers, strict=True):
            out = run_example("http_client.py", f"http://127.0.0.1:{server.port}", picture)
            assert f"{shown(picture, answer)} by weights.npz" in out


def test_mobile_style_calibrates_and_says_unknown_as_the_runtime(exported, test_images, tmp_path):
    """The exporter's fitted temperature and threshold, applied from the metadata alone."""
    images = test_images.x[:1000]
    for model in sorted(exported.out.glob("model_*.tflite")):
        clf = load_classifier(model)
        assert clf.metadata.confidence is not None, model
        folder = tmp_path / model.stem
        folder.mkdir()
        for picture in sure_and_unsure(clf, images, folder):
            assert shown(picture, clf.answer(picture)) in run_example(
                "mobile_style.py", model, picture
            ), model


def test_shapes_writes_a_folder_and_an_npz_that_edgecnn_reads(tmp_path):
    from shapes import CLASSES

    from edgecnn.trainer import training_data
    from edgecnn.trainer.config import TrainConfig

    assert "12 classes" in run_example("shapes.py", tmp_path / "pictures")
    info = training_data.inspect(TrainConfig(data=str(tmp_path / "pictures")))
    assert info.labels == tuple(sorted(CLASSES)) and info.shape == (32, 32, 1)
    assert {len(list((tmp_path / "pictures" / c).glob("*.png"))) for c in CLASSES} == {190}
    run_example("shapes.py", tmp_path / "shapes.npz")
    info = training_data.inspect(TrainConfig(data=str(tmp_path / "shapes.npz")))
    assert info.labels == CLASSES and info.shape == (32, 32, 3)
    again = subprocess.run(
        [sys.executable, str(EXAMPLES / "shapes.py"), str(tmp_path / "pictures")],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "not empty" in again.stderr


def readme_block(heading: str) -> list[str]:
    """The commands of the first ``sh`` block under ``heading`` in the README."""
    text = (EXAMPLES.parent / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_own_images_commands_work_as_written(tmp_path):
    """Train on your own images: the README's three commands, in a fresh folder."""
    bin_dir = Path(sys.executable).parent
    commands = readme_block("Train on your own images")
    assert len(commands) == 3
    outputs = []
    for command in commands:
        command = command.replace(".venv/bin/edgecnn", str(bin_dir / "edgecnn"))
        command = re.sub(r"^python ", f"{sys.executable} ", command)
        command = command.replace("examples/", f"{EXAMPLES}/")
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        outputs.append(done.stdout)
    assert "9 of 9 files passed their gate" in outputs[1]  # the C library and TFLM too
    assert "c/: int8 scores bit-identical to TFLite's reference kernels on 100.00%" in outputs[1]
    report = (tmp_path / "runs" / "shapes" / "report.html").read_text()
    assert "images (train/val/test)" in report and "142/16/32" in report  # 190 a class
    assert outputs[2].split()[2:4] == ["green", "cross"]  # the picture's own class


def readme_python() -> str:
    """The README's Python example."""
    text = (EXAMPLES.parent / "README.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_example_runs_as_written(tmp_path):
    """Its model path and picture swapped for real ones; top_k=3 in the model's order."""
    code = readme_python()
    assert 'load_classifier("runs/latest/exports/model_int8.tflite")' in code
    code = code.replace("runs/latest/exports/model_int8.tflite", str(TINY / "model_int8.tflite"))
    code = code.replace('"shoe.jpg"', repr(str(PICTURE)))
    lines = code.strip().splitlines()
    lines[-1] = "result = " + lines[-1].split("  #")[0]
    namespace: dict = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - the README's own lines
    result = namespace["result"]
    assert len(result) == 3 and result[0][0] == "Ankle boot"
    probabilities = [p for _, p in result]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[1] > 0
