"""``edgecnn train`` and ``edgecnn evaluate``. TensorFlow is imported inside the commands."""

from __future__ import annotations

import contextlib
import dataclasses
import unicodedata
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.errors import ConfigError
from edgecnn.runtime.options import AUTO, BackendOption
from edgecnn.trainer.config import MAX_SEED, ModelConfig, TrainConfig
from edgecnn.trainer.model_source import check_out_dir


class DatasetName(str, Enum):
    """Datasets the trainer knows."""

    fashion = "fashion"
    mnist = "mnist"


_DEFAULTS = TrainConfig()


def _default(name: str) -> str:
    """``[default: X]`` for a training option, read from :class:`TrainConfig` itself."""
    source = _DEFAULTS if hasattr(_DEFAULTS, name) else _DEFAULTS.model
    return f"[default: {getattr(source, name)}]"


DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Train on your own pictures: a folder with one sub-folder per class (or "
        "train/, test/ and val/ folders of them), or a .npz with x_train, y_train, x_test, "
        "y_test. Replaces --dataset.",
    ),
]
ClassesOption = Annotated[
    str | None,
    typer.Option(
        "--classes",
        help="The order of your own data's classes, comma-separated (cat,dog,owl): each "
        "class once. It is the order of the model's outputs and labels. [default: a folder's "
        "class folders sorted by name; a .npz's class_names as they are]",
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(
        help="Images are resized to S x S (16 to 96). [default: the data's own size when "
        "every image shares it; 28 for Fashion-MNIST]"
    ),
]
ChannelsOption = Annotated[
    int | None,
    typer.Option(help="1 (greyscale) or 3 (colour, where colour matters). [default: 1]"),
]
SkipBadOption = Annotated[
    bool,
    typer.Option(
        "--skip-bad-images",
        help="Leave out pictures that cannot be read (listed) instead of stopping.",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with the four IDX files (else EDGECNN_DATA_DIR, "
        "Debian's dataset-fashion-mnist, the Keras cache, a Keras download).",
    ),
]


def _config_overrides(**options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split given (non-None) CLI options into TrainConfig fields and ModelConfig fields."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    given = {k: v for k, v in options.items() if v is not None}
    return (
        {k: v for k, v in given.items() if k not in model_fields},
        {k: v for k, v in given.items() if k in model_fields},
    )


def _resume_config(out: Path, train_over: dict[str, Any], model_over: dict[str, Any]) -> Any:
    from edgecnn.trainer.checkpoints import read_checkpoint_state

    state = read_checkpoint_state(out)
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (KeyError, TypeError) as e:
        raise ConfigError(f"cannot resume from {out}: no training configuration ({e})") from None
    changed = [k for k, v in train_over.items() if getattr(saved, k) != v]
    changed += [k for k, v in model_over.items() if getattr(saved.model, k) != v]
    if changed:
        flags = {"--" + k.replace("_", "-") for k in changed}
        flags = {"--augment" if f.startswith("--augment-") else f for f in flags}
        raise ConfigError(
            f"--resume continues the run as it was configured; drop {', '.join(sorted(flags))}"
        )
    return saved


def train_command(
    dataset: Annotated[
        DatasetName | None, typer.Option(help=f"Dataset to train on. {_default('dataset')}")
    ] = None,
    data_dir: DataDirOption = None,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help=f"Passes over the training images. {_default('epochs')}"),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help=_default("batch_size"))] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help=f"Adam's initial learning rate. {_default('learning_rate')}"),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(help=f"'cosine' (decay to 0) or 'constant'. {_default('lr_schedule')}"),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0, max=MAX_SEED, help=f"Seed for weights, order, augmentation. {_default('seed')}"
        ),
    ] = None,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment",
            help="Random shifts of up to 2 pixels, plus horizontal flips for Fashion-MNIST.",
        ),
    ] = False,
    train_subset: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N training images (quick trials).")
    ] = None,
    outliers: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=4,
            help="Synthetic pictures of no class added to each epoch, as a share of its "
            "pictures, so that the model learns to answer 'unknown' (0 turns it off). "
            f"{_default('outliers')}",
        ),
    ] = None,
    filter_size1: Annotated[int | None, typer.Option(min=1, help=_default("filter_size1"))] = None,
    num_filters1: Annotated[int | None, typer.Option(min=1, help=_default("num_filters1"))] = None,
    filter_size2: Annotated[int | None, typer.Option(min=1, help=_default("filter_size2"))] = None,
    num_filters2: Annotated[int | None, typer.Option(min=1, help=_default("num_filters2"))] = None,
    fc_size: Annotated[int | None, typer.Option(min=1, help=_default("fc_size"))] = None,
    data: DataOption = None,
    classes: ClassesOption = None,
    image_size: ImageSizeOption = None,
    channels: ChannelsOption = None,
    skip_bad_images: SkipBadOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory to write. [default: a new runs/<timestamp>, with runs/latest "
            "pointing at it]"
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run in --out from its last checkpoint."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a model already trained in --out (never an 'edgecnn run')."
        ),
    ] = False,
) -> None:
    """Train the tutorial CNN; writes model.keras, config.json, history.json, metrics.json.

    Each training goes to a new runs/<timestamp> unless --out names a folder; a folder
    that already holds a trained model is refused unless --force, and a folder of
    'edgecnn run' always.
    """
    train_over, model_over = _config_overrides(
        dataset=dataset.value if dataset else None,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        seed=seed,
        train_subset=train_subset,
        outliers=outliers,
        filter_size1=filter_size1,
        num_filters1=num_filters1,
        filter_size2=filter_size2,
        num_filters2=num_filters2,
        fc_size=fc_size,
        data=data_path(data, dataset),
        classes=class_order(classes, data),
        skip_bad_images=skip_bad_images or None,
        img_size=image_size,
        channels=channels,
    )
    if resume and out is None:
        raise ConfigError("--resume needs the --out folder of the training to continue")
    if out is not None:
        check_out_dir(out, resume, force)
    # The data is checked before TensorFlow's slow import (and before any folder is
    # made), so that bad input is answered at once.
    from edgecnn.trainer.training_data import configure, inspect

    if resume and out is not None:
        if augment:  # compared with the saved run's augmentation, whatever its dataset
            train_over["augment_shift"] = 2
        config = _resume_config(out, train_over, model_over)
        inspect(config, data_dir)
    else:
        config = configure(train_over, model_over, augment, data_dir)
    with _output_folder(out) as folder:
        from edgecnn.trainer.train import train

        train(config, folder, data_dir=data_dir, resume=resume)


def data_path(data: Path | None, dataset: DatasetName | None) -> str | None:
    """``--data`` as an absolute path (config.json must find it from anywhere)."""
    if data is None:
        return None
    if dataset is not None:
        raise ConfigError("--data replaces --dataset; give one of them")
    return str(data.expanduser().resolve())


def class_order(classes: object, data: object) -> tuple[str, ...] | None:
    """``--classes a,b,c`` as names in NFC; whether the data has them is checked with it.

    Raises:
        ConfigError: not comma-separated names, or given without ``--data``.
    """
    if classes is None:
        return None
    if data is None:
        raise ConfigError("--classes orders the classes of your own data; give --data with it")
    names = tuple(unicodedata.normalize("NFC", n.strip()) for n in str(classes).split(","))
    if not isinstance(classes, str) or not all(names):
        raise ConfigError(f"--classes takes class names separated by commas, got {classes!r:.60}")
    return names


@contextlib.contextmanager
def _output_folder(out: Path | None) -> Iterator[Path]:
    """``out``, or a new ``runs/<timestamp>`` that ``runs/latest`` then points at.

    A folder this command created is removed again if training fails before writing
    anything into it.
    """
    from edgecnn._atomic import output_folder
    from edgecnn.run_folder import new_run_dir, point_latest

    with output_folder(new_run_dir() if out is None else out, fresh=out is None) as folder:
        yield folder
    if out is None and point_latest(folder) is None:
        typer.echo(f"note: {folder.parent / 'latest'} is not a link: left as it is")


def evaluate_command(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR_OR_MODEL",
            help="A run directory (with model.keras), a .keras file, or an exported file "
            "(.tflite, .onnx, weights.npz, the C library's folder), run through edgecnn.runtime.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write metrics.json and the PNGs. [default: the run directory]"),
    ] = None,
    data_dir: DataDirOption = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="Override the run's dataset.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Evaluate on your own pictures (a folder of class folders, or an .npz). "
            "[default: the data the run trained on]",
        ),
    ] = None,
    image_index: Annotated[
        int, typer.Option(min=0, help="Test image whose conv layer outputs are drawn.")
    ] = 0,
    backend: BackendOption = AUTO,
) -> None:
    """Evaluate on the test set; draw the confusion matrix, errors, filters and layer outputs.

    An exported file is measured as edgecnn.runtime runs it, and compared image by image
    with the run's Keras model; its numbers go to <file>.evaluation/ beside it.
    """
    from edgecnn.trainer.model_source import is_exported, resolve_model

    if is_exported(target):
        from edgecnn.runtime import load_classifier

        load_classifier(target, backend.value)  # a bad file is answered before TensorFlow
        from edgecnn.trainer.evaluate import evaluate_exported

        evaluate_exported(target, out_dir=out, data_dir=data_dir,
                          dataset=dataset.value if dataset else None,
                          data=data_path(data, dataset), backend=backend.value)  # fmt: skip
        return
    resolve_model(target)  # a wrong path is answered before TensorFlow's slow import
    from edgecnn.trainer.evaluate import evaluate

    evaluate(
        target,
        out_dir=out,
        data_dir=data_dir,
        dataset=dataset.value if dataset else None,
        image_index=image_index,
        data=data_path(data, dataset),
    )


def register(app: typer.Typer) -> None:
    """Add the trainer's commands to the ``edgecnn`` app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
