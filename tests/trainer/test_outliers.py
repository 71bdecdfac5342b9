"""Outlier exposure: the synthetic pictures of no class, the config's share, the loss."""

import numpy as np
import pytest

from edgecnn.errors import ConfigError
from edgecnn.trainer.config import MAX_OUTLIERS, TrainConfig
from edgecnn.trainer.outliers import make_outliers


@pytest.mark.parametrize("shape", [(40, 28, 28), (40, 32, 32, 3)])
def test_outliers_are_shaped_like_the_pictures_and_repeatable(test_images, shape):
    rng = np.random.default_rng(0)
    images = test_images.x[: shape[0]]
    if len(shape) == 4:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
    a = make_outliers(images, 200, np.random.default_rng([3, 1]))
    b = make_outliers(images, 200, np.random.default_rng([3, 1]))
    assert a.shape == (200, *shape[1:]) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # (seed, epoch) decides them: a resume sees the same
    assert not np.array_equal(a, make_outliers(images, 200, np.random.default_rng([3, 2])))
    # Varied pictures, none of them a copy of a training picture.
    assert len({x.tobytes() for x in a}) == 200
    sources = {x.tobytes() for x in images}
    assert not any(x.tobytes() in sources for x in a)
    assert make_outliers(images, 0, rng).shape == (0, *shape[1:])


@pytest.mark.parametrize("share", [-0.1, MAX_OUTLIERS + 0.5, float("nan"), "a lot", True])
def test_an_impossible_share_of_outliers_is_refused_in_one_line(share):
    with pytest.raises(ConfigError, match="outliers") as e:
        TrainConfig(outliers=share)
    assert "\n" not in str(e.value)


def test_a_run_from_before_outlier_exposure_resumes_without_it():
    config = TrainConfig(outliers=0.25)
    data = config.to_dict()
    del data["outliers"]
    assert TrainConfig.from_dict(data).outliers == 0.0


@pytest.mark.slow
def test_the_loss_is_cross_entropy_for_a_class_and_half_of_it_to_uniform_for_an_outlier():
    from edgecnn.trainer.exposure import OUTLIER, InlierAccuracy, outlier_exposure_loss

    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [1.0, -2.0, 0.0]], np.float32)
    labels = np.array([0, OUTLIER, 1])
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = [-log_p[0, 0], 0.5 * -log_p[1].mean(), -log_p[2, 1]]
    np.testing.assert_allclose(np.asarray(outlier_exposure_loss(labels, logits)), expected,
                               rtol=1e-6)  # fmt: skip
    metric = InlierAccuracy()
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx(0.5)  # right on the first, wrong on the third


@pytest.mark.slow
def test_a_model_trained_with_outliers_loads_in_keras_without_edgecnn(trained_run):
    """model.keras is compiled with Keras's own loss: a user's keras.models.load_model
    finds everything it names (the checkpoints keep edgecnn's, for a resume)."""
    import subprocess
    import sys

    assert trained_run.config.outliers > 0  # the default
    code = (
        "import sys, keras\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "assert 'edgecnn' not in sys.modules, sorted(sys.modules)\n"
        "print(type(model.loss).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(trained_run.out_dir / "model.keras")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "SparseCategoricalCrossentropy"
