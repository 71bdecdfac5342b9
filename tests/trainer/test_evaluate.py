import io
import json

import numpy as np
import pytest
from PIL import Image

from edgecnn.run_folder import FIGURE_FILES as FIGURES

EXPECTED_SIZES = {  # (min width, min height) in pixels: each figure really has its content
    "samples.png": (400, 400),
    "errors.png": (400, 400),
    "confusion_matrix.png": (500, 450),
    "conv1_weights.png": (300, 300),
    "conv2_weights.png": (400, 400),
    "conv1_outputs.png": (300, 300),
    "conv2_outputs.png": (400, 400),
}


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory, fashion_dir):
    from edgecnn.trainer.evaluate import evaluate

    out = tmp_path_factory.mktemp("eval")
    log = io.StringIO()
    metrics = evaluate(
        trained_run.out_dir, out_dir=out, data_dir=fashion_dir, image_index=3, stream=log
    )
    return out, metrics, log.getvalue()


def test_metrics_match_training(evaluated, trained_run):
    out, metrics, _ = evaluated
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(trained_run.metrics["test_accuracy"])
    assert np.array(saved["confusion_matrix"]).sum() == 10_000
    assert np.array(saved["confusion_matrix"]).trace() == saved["test_correct"]
    assert set(saved["per_class_accuracy"]) == set(trained_run.metrics["per_class_accuracy"])


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_decodes_and_is_not_blank(evaluated, name):
    out, _, _ = evaluated
    with Image.open(out / name) as im:
        im.load()
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    w_min, h_min = EXPECTED_SIZES[name]
    assert pixels.shape[1] >= w_min and pixels.shape[0] >= h_min, pixels.shape
    assert pixels.std() > 20, "figure is (nearly) blank"
    assert (pixels < 128).mean() > 0.01, "figure has almost no dark content"


def test_weight_figures_use_the_seismic_map(evaluated):
    out, _, _ = evaluated
    with Image.open(out / "conv1_weights.png") as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 2] < 100)
    blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 100)
    assert red.sum() > 50 and blue.sum() > 50  # positive and negative weights both shown


def test_confusion_matrix_printed_as_text(evaluated):
    _, metrics, log = evaluated
    assert "Confusion matrix" in log
    assert "Ankle boot" in log
    first_row = next(line for line in log.splitlines() if line.startswith("(0) T-shirt/top"))
    assert [int(v) for v in first_row.split()[2:]] == metrics["confusion_matrix"][0]
    assert "Accuracy on Test-Set:" in log


def test_merges_into_the_run_metrics(trained_run, fashion_dir):
    from edgecnn.trainer.evaluate import evaluate

    evaluate(trained_run.out_dir, data_dir=fashion_dir, stream=io.StringIO())
    merged = json.loads((trained_run.out_dir / "metrics.json").read_text())
    assert "train_seconds" in merged and "confusion_matrix" in merged
    for name in FIGURES:
        assert (trained_run.out_dir / name).is_file()


#: Class names and titles matplotlib would read as mathtext or TeX if it were let to.
HOSTILE_LABELS = ["$^{$ bad", "$x$", r"\frac{", "a_b^c $", "$$", "100%", "}{"]


def test_user_text_reaches_every_figure_as_plain_text(tmp_path):
    """A class named "$^{$ bad" used to stop evaluate (and every run --resume) with an error."""
    from edgecnn.trainer import plots

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 28, 28), dtype=np.uint8)
    y = np.arange(9) % len(HOSTILE_LABELS)
    title = "$^{$ bad.tflite: confusion $\\alpha"
    figures = {
        "images.png": plots.plot_images(images, HOSTILE_LABELS, y, y[::-1], title),
        "matrix.png": plots.plot_confusion_matrix(np.eye(7, dtype=int), HOSTILE_LABELS, title),
        "weights.png": plots.plot_conv_weights(rng.normal(size=(5, 5, 1, 4)), title),
        "outputs.png": plots.plot_layer_outputs(rng.random((7, 7, 4)), title, images[0]),
    }
    for name, fig in figures.items():
        texts = [t.get_text() for t in fig.findobj(plots.Text)]
        plots.save_figure(fig, tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert im.width > 200 and im.height > 200
        assert any("$^{$" in t for t in texts), name  # drawn as written, not as maths
    # A figure drawn elsewhere (the report's charts) is saved as plain text too.
    fig, ax = plots.plt.subplots()
    ax.set_yticks([0, 1], HOSTILE_LABELS[:2])
    ax.set_title("$^{$")
    plots.save_figure(fig, tmp_path / "other.png")
    assert (tmp_path / "other.png").stat().st_size > 1000


# ---- an exported file against the Keras model --------------------------------------------


def _run_with(trained_run, tmp_path, name="model_int8.tflite"):
    """A copy of the trained run with a tiny file in its ``exports/``: another model's, so
    that it disagrees with this Keras model often enough to be measured."""
    import shutil

    from shared import TINY

    run = tmp_path / "run"
    shutil.copytree(trained_run.out_dir, run)
    (run / "exports").mkdir(exist_ok=True)
    for f in (name, f"{name}.json"):
        shutil.copy(TINY / f, run / "exports" / f)
    return run / "exports" / name


def test_an_exported_file_is_compared_with_keras_by_the_gates_measure(
    trained_run, fashion_dir, tmp_path
):
    """In a run, the Keras model is run; given its outputs, they are used instead: the same
    numbers, which are :func:`edgecnn.runtime.gate.compare`'s."""
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.gate import predicted, top1_agreement
    from edgecnn.trainer.evaluate import evaluate_exported, load_keras_model, predict_probs
    from edgecnn.trainer.idx import load_arrays

    target = _run_with(trained_run, tmp_path)
    ran = io.StringIO()
    measured = evaluate_exported(target, out_dir=tmp_path / "a", data_dir=fashion_dir,
                                 stream=ran)  # fmt: skip
    (_, _, x_test, _), _ = load_arrays("fashion", fashion_dir)
    keras_probs = predict_probs(load_keras_model(trained_run.out_dir / "model.keras"), x_test)
    probs = load_classifier(target).predict(x_test)
    assert measured["keras_agreement"] == top1_agreement(probs, keras_probs)
    differ = np.flatnonzero(predicted(probs) != predicted(keras_probs))
    assert measured["differs_from_keras"] == differ.tolist() and len(differ) > 0
    assert f"{len(differ):,} of 10,000 test images differ" in ran.getvalue()
    # Rows past the test images (the export's other agreement images) are left out.
    extra = np.concatenate([keras_probs, keras_probs[:7]])
    given = evaluate_exported(target, out_dir=tmp_path / "b", data_dir=fashion_dir,
                              stream=io.StringIO(), keras_probs=extra)  # fmt: skip
    assert given == measured


@pytest.mark.slow  # edgecnn.trainer.evaluate imports Keras
def test_keras_outputs_given_for_a_file_outside_a_run(fashion_dir, tmp_path):
    """Away from its run, a file is compared only with the outputs it is given."""
    import shutil

    from shared import TINY

    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.gate import top1_agreement
    from edgecnn.trainer.evaluate import evaluate_exported
    from edgecnn.trainer.idx import load_arrays

    for f in ("model_int8.tflite", "model_int8.tflite.json"):
        shutil.copy(TINY / f, tmp_path / f)
    target = tmp_path / "model_int8.tflite"
    alone = evaluate_exported(target, data_dir=fashion_dir, stream=io.StringIO())
    assert "keras_agreement" not in alone  # as `edgecnn evaluate FILE` has always done
    (_, _, x_test, _), _ = load_arrays("fashion", fashion_dir)
    keras_probs = load_classifier(TINY / "model_float32.tflite").predict(x_test)
    log = io.StringIO()
    metrics = evaluate_exported(target, out_dir=tmp_path / "given", data_dir=fashion_dir,
                                stream=log, keras_probs=keras_probs)  # fmt: skip
    probs = load_classifier(target).predict(x_test)
    assert metrics["keras_agreement"] == top1_agreement(probs, keras_probs)
    assert "Top-1 agreement with Keras: " in log.getvalue()
    assert (tmp_path / "given" / "differs_from_keras.png").is_file()
    for wrong in (keras_probs[:100], keras_probs[:, :3], keras_probs[0]):
        with pytest.raises(ValueError, match="keras_probs of shape"):
            evaluate_exported(target, out_dir=tmp_path / "bad", data_dir=fashion_dir,
                              stream=io.StringIO(), keras_probs=wrong)  # fmt: skip


# ---- calibration: ECE before and after, "unknown", the reliability diagram ---------------

ECE_LINE = (
    r"Calibration error \(ECE, 15 bins\) on the 10,000 test images: ([\d.]+)% before, "
    r"([\d.]+)% after \(temperature ([\d.]+), (.+)\)"
)


def _assert_reliability_png(path):
    """A real PNG, with content: the diagram and its bin counts."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 450 and pixels.shape[1] >= 400, pixels.shape
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01


def test_evaluate_measures_calibration_before_and_after(evaluated, trained_run, keras_reference):
    """The Keras model's temperature is fitted on its validation softmax; ECE is measured
    on the test split at T = 1 and at that temperature, and written, typed, to metrics.json."""
    import re

    from edgecnn.pipeline.results import Metrics
    from edgecnn.records import Fields
    from edgecnn.runtime import confidence as C
    from edgecnn.trainer.calibration_metrics import CalibrationMetrics

    out, metrics, log = evaluated
    found = re.search(ECE_LINE, log)
    assert found, log
    before, after, temperature = (float(v) for v in found.groups()[:3])
    assert found.group(4) == "fitted on 5,000 validation images"
    saved = json.loads((out / "metrics.json").read_text())
    record = CalibrationMetrics.from_fields(Fields(saved["calibration"]))
    assert Metrics.from_fields(Fields(saved)).calibration == record  # the run's reader too
    # The numbers are runtime.confidence's, on the Keras model's softmax.
    assert record.ece_before == pytest.approx(
        C.expected_calibration_error(keras_reference.probs, keras_reference.y), abs=1e-5
    )
    assert record.images == 10_000 and record.confidence is not None
    assert record.confidence.images == 5_000 and record.confidence.fitted_on == "validation"
    assert before == pytest.approx(100 * record.ece_before, abs=0.006)
    assert after == pytest.approx(100 * record.ece_after, abs=0.006)
    assert temperature == pytest.approx(record.temperature, rel=1e-3)
    calibrated = C.calibrate(keras_reference.probs.astype(np.float32), record.temperature)
    assert record.ece_after == pytest.approx(
        C.expected_calibration_error(calibrated, keras_reference.y), abs=1e-5
    )
    assert record.ece_after < record.ece_before or record.ece_before < 0.01
    assert sum(record.before.counts) == sum(record.after.counts) == 10_000
    # "unknown": the validation threshold rejects about 5% of the test pictures, and the
    # accepted ones are answered more accurately than all of them.
    unknown = C.rejected(calibrated, record.reject_below)
    assert record.rejected == pytest.approx(unknown.mean())
    assert 0.02 < record.rejected < 0.10
    assert record.accepted_accuracy > record.accuracy == pytest.approx(saved["test_accuracy"])
    assert f'"unknown" below {record.reject_below:.4f}: {100 * record.rejected:.2f}%' in log
    _assert_reliability_png(out / "reliability.png")
    assert "Wrote metrics.json and 8 figures" in log
