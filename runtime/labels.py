"""Class labels of the datasets edgecnn knows, shared by training, export and inference."""

from __future__ import annotations

FASHION_MNIST_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST_LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))

LABELS: dict[str, tuple[str, ...]] = {"fashion": FASHION_MNIST_LABELS, "mnist": MNIST_LABELS}
