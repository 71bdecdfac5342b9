"""What ``edgecnn serve`` answers, apart from HTTP: request bodies in, JSON documents out.

A fixed pool of workers does the decoding and inference, so however many connections
wait, at most ``workers`` pictures are being decoded and classified at once (which bounds
the memory decoding takes to ``workers`` times the worst picture under the pixel limit),
and each worker keeps the one interpreter the runtime gives its thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.runtime.classifier import DEFAULT_TOP_K, Classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.images import load_pillow
from edgecnn.runtime.npy import NpyError, parse_npy

#: What a body's first bytes say it is.
MAGIC: dict[bytes, str] = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"BM": "bmp",
    b"\x93NUMPY": "npy",
}
ACCEPTED = "a PNG, JPEG or BMP picture, or a .npy array of one image"


class RequestError(Exception):
    """A request the service refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def body_kind(body: bytes, content_type: str = "") -> str:
    """``png``, ``jpeg``, ``bmp`` or ``npy``, told from the bytes, not the Content-Type.

    Raises:
        RequestError: 400 for an empty body, 415 for anything else.
    """
    if not body:
        raise RequestError(400, f"empty body: send {ACCEPTED}")
    for magic, kind in MAGIC.items():
        if body.startswith(magic):
            return kind
    hint = ""
    if content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
        hint = " (send the file's raw bytes as the body, not a form)"
    raise RequestError(415, f"unsupported content: expected {ACCEPTED}{hint}")


def read_npy(body: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """The one image in a ``.npy`` body, refused before anything is allocated if it is not.

    The header's shape is checked against one image of ``shape`` and the body's real
    length first: ``np.load`` would allocate whatever the header claims.

    Raises:
        RequestError: 400 for a malformed, non-numeric, oversized or truncated array.
    """
    height, width, channels = shape
    try:
        return parse_npy(
            body, height * width * channels, lambda: f"send one {height}x{width} image"
        )
    except NpyError as e:
        raise RequestError(400, f"not a readable .npy array ({e})") from None


@dataclass
class Counters:
    """Requests answered, for ``/health``; updated from many threads."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    classified: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, status: int, classified: bool = False) -> None:
        """Record one answered request."""
        with self._lock:
            self.requests += 1
            self.classified += classified
            self.errors += status >= 400


class ClassifierService:
    """A loaded classifier behind ``workers`` threads, answering as JSON-ready dicts."""

    def __init__(self, classifier: Classifier, workers: int) -> None:
        self.classifier = classifier
        self.model = classifier.path.name
        self.workers = workers
        self.counters = Counters()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="edgecnn-worker")
        self._warm_up()

    def _warm_up(self) -> None:
        """Give every worker its interpreter now, so the first requests do not pay for it.

        The barrier holds each warm-up job until all have started: one job per thread.
        It also proves the model runs before the server says it is listening.
        """
        with contextlib.suppress(InputError):  # no Pillow: pictures get that error later
            load_pillow().preinit()  # import the decoders before the first picture
        barrier = threading.Barrier(self.workers)
        blank = np.zeros(self.classifier.input_shape, np.uint8)

        def warm() -> None:
            barrier.wait(timeout=60)
            self.classifier.classify(blank)

        for job in [self._pool.submit(warm) for _ in range(self.workers)]:
            job.result()

    def submit(
        self, body: bytes, top_k: int | None, content_type: str = ""
    ) -> Future[dict[str, Any]]:
        """Check a body, then classify it on a worker; the future of the reply document.

        Raises:
            RequestError: the body is not something this service classifies.
        """
        if top_k is None:
            top_k = min(DEFAULT_TOP_K, len(self.classifier.labels))
        if not 1 <= top_k <= len(self.classifier.labels):
            raise RequestError(400, f"top_k must be in 1..{len(self.classifier.labels)}")
        kind = body_kind(body, content_type)
        return self._pool.submit(self._classify, body, kind, top_k)

    def _classify(self, body: bytes, kind: str, top_k: int) -> dict[str, Any]:
        """The reply document (runs on a worker).

        Raises:
            RequestError: a malformed ``.npy`` body.
            InputError: the picture or array cannot be an image for the model.
            ModelError: the model failed on it.
        """
        start = time.perf_counter()
        shape = self.classifier.input_shape
        image: Any = read_npy(body, shape) if kind == "npy" else body
        ranked = self.classifier.classify(image, top_k=top_k)
        latency_ms = (time.perf_counter() - start) * 1000
        return {
            "label": ranked[0][0],
            "confidence": ranked[0][1],
            "top_k": [{"label": label, "probability": p} for label, p in ranked],
            "model": self.model,
            "backend": self.classifier.backend_name,
            "latency_ms": round(latency_ms, 3),
        }

    def health(self, status: str = "ok") -> dict[str, Any]:
        """Liveness and counters."""
        c = self.counters
        return {
            "status": status,
            "model": self.model,
            "backend": self.classifier.backend_name,
            "workers": self.workers,
            "uptime_s": round(time.monotonic() - c.started, 3),
            "requests_served": c.requests,
            "classified": c.classified,
            "errors": c.errors,
        }

    def metadata(self) -> dict[str, Any]:
        """The model's own metadata, as embedded in the file, with its name and backend."""
        return {
            "model": self.model,
            "backend": self.classifier.backend_name,
            **self.classifier.metadata.to_dict(),
        }

    def close(self) -> None:
        """Finish queued work and stop the workers."""
        self._pool.shutdown(wait=True)
