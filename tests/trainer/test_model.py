import pytest

from edgecnn.errors import ConfigError
from edgecnn.trainer.config import ModelConfig, TrainConfig
from edgecnn.trainer.model import build_model


@pytest.mark.slow
def test_default_network_is_the_tutorials():
    model = build_model()
    assert model.count_params() == 242_062
    kinds = [(layer.name, type(layer).__name__) for layer in model.layers]
    assert kinds == [
        ("conv1", "Conv2D"),
        ("pool1", "MaxPooling2D"),
        ("relu1", "ReLU"),
        ("conv2", "Conv2D"),
        ("pool2", "MaxPooling2D"),
        ("relu2", "ReLU"),
        ("flatten", "Flatten"),
        ("fc1", "Dense"),
        ("logits", "Dense"),
    ]
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    for conv, filters in ((conv1, 16), (conv2, 36)):
        assert conv.kernel_size == (5, 5) and conv.filters == filters
        assert conv.padding == "same" and conv.strides == (1, 1) and conv.use_bias
    assert model.get_layer("pool1").pool_size == (2, 2)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.get_layer("flatten").output.shape[1] == 1764
    assert model.get_layer("fc1").units == 128
    assert model.get_layer("fc1").activation.__name__ == "relu"
    assert model.get_layer("logits").activation.__name__ == "linear"  # logits out
    assert model.output_shape == (None, 10)


@pytest.mark.slow
def test_sizes_are_configurable():
    cfg = ModelConfig(filter_size1=3, num_filters1=8, filter_size2=3, num_filters2=12, fc_size=32)
    model = build_model(cfg)
    assert model.get_layer("flatten").output.shape[1] == 7 * 7 * 12
    expected = (3 * 3 * 8 + 8) + (3 * 3 * 8 * 12 + 12) + (588 * 32 + 32) + (32 * 10 + 10)
    assert model.count_params() == expected


@pytest.mark.parametrize("field", ["filter_size1", "num_filters1", "num_filters2", "fc_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_impossible_sizes_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"dataset": "cifar"}, "unknown dataset"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"augment_shift": 14}, "augment_shift"),
        ({"train_subset": 0}, "train_subset"),
        ({"seed": -1}, "seed"),
    ],
)
def test_impossible_training_options_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_config_json_round_trip():
    cfg = TrainConfig(
        epochs=3, augment_shift=2, augment_flip=True, model=ModelConfig(num_filters1=8)
    )
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
