"""Near out-of-distribution on the real data: the network trained on 8 Fashion-MNIST
classes (an ``.npz`` through ``--data``, as bench/confidence.py makes it), and the test
pictures of the 2 held out answered "unknown" far more often than the 8 kept."""

import numpy as np
import pytest
from cli_helpers import invoke
from shared import bench_module

from edgecnn.runtime import load_classifier
from edgecnn.runtime.confidence import auroc


def test_far_families_are_pictures_of_no_class(test_images):
    families = bench_module("confidence").far_families(test_images.x, 30)
    assert set(families) == {"uniform noise", "blank", "inverted", "font glyphs", "stripes"}
    for name, x in families.items():
        assert x.shape == (30, 28, 28) and x.dtype == np.uint8, name
    assert all(len(np.unique(p)) == 1 for p in families["blank"])
    glyphs = families["font glyphs"]
    assert (glyphs.reshape(30, -1).max(1) >= 160).all()  # drawn, light on dark
    assert (glyphs.reshape(30, -1).mean(1) < 80).all()
    assert all(len(np.unique(p)) > 8 for p in families["stripes"])


@pytest.mark.slow
def test_a_network_trained_on_8_classes_rejects_the_other_2(fashion_dir, tmp_path):
    bench = bench_module("confidence")
    from edgecnn.trainer.idx import LABELS, load_arrays

    (x_train, y_train, x_test, y_test), _ = load_arrays("fashion", fashion_dir)
    arrays = (x_train[:12_000], y_train[:12_000], x_test[:3000], y_test[:3000])
    npz = tmp_path / "eight.npz"
    kept, held_out = bench.held_out_npz(npz, arrays, bench.HELD_OUT, tuple(LABELS["fashion"]))
    assert len(kept) + len(held_out) == 3000
    run = tmp_path / "run"
    result = invoke("train", "--data", npz, "--out", run, "--epochs", "3")
    assert result.exit_code == 0, result.stdout + result.stderr
    result = invoke("export", run, "--formats", "tflite", "--data-dir", fashion_dir)
    assert result.exit_code == 0, result.stdout + result.stderr
    clf = load_classifier(run / "exports" / "model_float32.tflite")
    names = [LABELS["fashion"][c] for c in range(10) if c not in bench.HELD_OUT]
    assert list(clf.labels) == names
    confidence = clf.metadata.confidence
    assert confidence is not None and confidence.reject_below is not None
    inside, outside = clf.predict(kept), clf.predict(held_out)
    assert inside.shape[1] == 8
    # Bags and ankle boots look like none of the 8 more often than the 8 do.
    unknown_inside, unknown_outside = clf.unknown(inside).mean(), clf.unknown(outside).mean()
    assert unknown_inside < 0.12 and unknown_outside > 2 * unknown_inside
    # Near out-of-distribution is hard for this network (bench/confidence.py measures the
    # full-size training): clearly better than chance is what a small training shows.
    assert auroc(inside.max(1), outside.max(1)) > 0.6
