"""Training speed and accuracy: edgecnn's default recipe beside a plain ``model.fit`` baseline.

Both run in this one process, one after the other, on the real Fashion-MNIST, so the ratio
is measured on the same machine under the same load. The baseline is the tutorial's recipe:
the same network, batch 64, Adam with its default learning rate, no schedule.

    python bench/train_speed.py [--epochs N] [--baseline-epochs N] [--augment] [--onednn off]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np

from edgecnn.pipeline.environment import cpu_model


def run_baseline(epochs: int, data) -> dict:
    from edgecnn.trainer._tf import import_keras
    from edgecnn.trainer.dataset import to_float
    from edgecnn.trainer.model import build_model

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = to_float(data.x_train), data.y_train.astype(np.int32)
    seconds = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(x, y, batch_size=64, epochs=1, shuffle=True, verbose=0)
        seconds.append(time.perf_counter() - t)
    pred = model.predict(to_float(data.x_test), batch_size=1000, verbose=0).argmax(1)
    return {
        "epochs": epochs,
        "seconds": seconds,
        "images": len(x),
        "test_accuracy": float(np.mean(pred == data.y_test)),
    }


def run_edgecnn(epochs: int | None, augment: bool) -> dict:
    from edgecnn.trainer.config import TrainConfig
    from edgecnn.trainer.train import train

    kwargs = {} if epochs is None else {"epochs": epochs}
    if augment:
        kwargs.update(augment_shift=2, augment_flip=True)
    config = TrainConfig(**kwargs)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = train(config, out, stream=io.StringIO())
        wall = time.perf_counter() - started
    return {
        "epochs": config.epochs,
        "seconds": [h["seconds"] for h in result.history],
        "images": 55_000 if config.train_subset is None else config.train_subset,
        "test_accuracy": result.metrics["test_accuracy"],
        "wall": wall,
        "batch_size": config.batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="edgecnn epochs (default: its default)"
    )
    parser.add_argument("--baseline-epochs", type=int, default=3)
    parser.add_argument("--augment", action="store_true", help="use the long recipe's augmentation")
    parser.add_argument(
        "--onednn",
        choices=["on", "off"],
        default="on",
        help="TensorFlow's oneDNN kernels for both runs (edgecnn turns them on)",
    )
    args = parser.parse_args()
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"

    from edgecnn.trainer._tf import import_tensorflow
    from edgecnn.trainer.idx import load_dataset

    tf = import_tensorflow()
    data = load_dataset("fashion")
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; TensorFlow {tf.__version__}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}"
    )
    base = run_baseline(args.baseline_epochs, data)
    ours = run_edgecnn(args.epochs, args.augment)

    rows = []
    for name, r, batch in (
        ("baseline model.fit (batch 64, Adam 1e-3)", base, 64),
        ("edgecnn train (default recipe)", ours, ours["batch_size"]),
    ):
        # The first epoch includes tracing; the steady state is the median of the rest.
        steady = float(np.median(r["seconds"][1:] or r["seconds"]))
        rows.append(
            (
                name,
                batch,
                r["epochs"],
                steady,
                r["images"] / steady,
                sum(r["seconds"]),
                r["test_accuracy"],
            )
        )
    print(
        f"\n{'run':44s} {'batch':>5s} {'epochs':>6s} {'s/epoch':>8s} {'img/s':>8s} "
        f"{'train s':>8s} {'test acc':>8s}"
    )
    for name, batch, epochs, steady, ips, total, acc in rows:
        print(
            f"{name:44s} {batch:5d} {epochs:6d} {steady:8.1f} {ips:8,.0f} {total:8.1f} "
            f"{100 * acc:7.2f}%"
        )
    (_, _, _, s_base, ips_base, _, acc_base), (_, _, _, s_ours, ips_ours, _, acc_ours) = rows
    print(
        f"\nthroughput ratio edgecnn / baseline: {ips_ours / ips_base:.2f}x; "
        f"accuracy {100 * acc_ours:.2f}% vs {100 * acc_base:.2f}% "
        f"({100 * (acc_ours - acc_base):+.2f} pp); edgecnn wall time incl. data and "
        f"final evaluation: {ours['wall']:.0f} s"
    )


if __name__ == "__main__":
    main()
