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
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.runtime.classifier import DEFAULT_TOP_K, Classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.images import load_pillow
from edgecnn.runtime.npy import NpyError, parse_npy
from edgecnn.runtime.serve.model_info import ModelInfo, confidence_in_effect, describe_model

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
    """Requests answered and models reloaded, for ``/health``; updated from many threads."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    classified: int = 0
    errors: int = 0
    reloads: int = 0
    reload_failures: int = 0
    last_reload_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, status: int, classified: bool = False) -> None:
        """Record one answered request."""
        with self._lock:
            self.requests += 1
            self.classified += classified
            self.errors += status >= 400

    def reloaded(self, error: str | None = None) -> None:
        """Record one reload, failed with ``error`` if given."""
        with self._lock:
            if error is None:
                self.reloads += 1
            else:
                self.reload_failures += 1
                self.last_reload_error = error


class Workers:
    """One loaded model behind its own pool of ``count`` threads, each with its interpreter.

    A reload builds a second one beside the first; requests already handed to the first
    finish on it, and :meth:`close` waits for them before its threads (and with them
    their interpreters) go.
    """

    def __init__(self, classifier: Classifier, count: int, info: ModelInfo | None = None) -> None:
        self.classifier = classifier
        self.count = count
        self.info = info or _describe(classifier.path)
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="edgecnn-worker")
        try:
            self._warm_up()
        except BaseException:
            self.pool.shutdown(wait=False, cancel_futures=True)
            raise

    def _warm_up(self) -> None:
        """Give every worker its interpreter now, so the first requests do not pay for it.

        The barrier holds each warm-up job until all have started: one job per thread.
        It also proves the model runs before it is served.
        """
        barrier = threading.Barrier(self.count)
        blank = np.zeros(self.classifier.input_shape, np.uint8)

        def warm() -> None:
            barrier.wait(timeout=60)
            self.classifier.classify(blank)

        for job in [self.pool.submit(warm) for _ in range(self.count)]:
            job.result()

    def close(self) -> None:
        """Finish the work handed to these workers, then stop them."""
        self.pool.shutdown(wait=True)


def _describe(path: Path) -> ModelInfo:
    """``path``'s :class:`ModelInfo`; without a digest if it cannot be read again."""
    try:
        return describe_model(path)
    except OSError:
        return ModelInfo(path.name, "")


class ClassifierService:
    """A loaded classifier behind ``workers`` threads, answering as JSON-ready dicts.

    :meth:`switch` puts another model's :class:`Workers` in place between two requests:
    each request takes the workers once, when it is submitted, so its answer comes
    wholly from one model.
    """

    def __init__(self, classifier: Classifier, workers: int, info: ModelInfo | None = None) -> None:
        self.workers = workers
        self.counters = Counters()
        self._lock = threading.Lock()
        self._closed = False
        with contextlib.suppress(InputError):  # no Pillow: pictures get that error later
            load_pillow().preinit()  # import the decoders before the first picture
        self._served = Workers(classifier, workers, info)

    @property
    def served(self) -> Workers:
        """The workers new requests go to."""
        return self._served

    @property
    def classifier(self) -> Classifier:
        """The model new requests go to."""
        return self._served.classifier

    @property
    def model(self) -> str:
        """The file name of the model new requests go to."""
        return self._served.info.file

    def switch(self, new: Workers) -> Workers | None:
        """Send requests to ``new`` from now on; the workers replaced, for closing.

        None if the service is closed (``new`` is closed then).
        """
        with self._lock:
            if not self._closed:
                old, self._served = self._served, new
                return old
        new.close()
        return None

    def submit(
        self, body: bytes, top_k: int | None, content_type: str = ""
    ) -> Future[dict[str, Any]]:
        """Check a body, then classify it on a worker; the future of the reply document.

        Raises:
            RequestError: the body is not something this service classifies.
        """
        with self._lock:  # a switch cannot come between taking the workers and using them
            served = self._served
            labels = len(served.classifier.labels)
            if top_k is None:
                top_k = min(DEFAULT_TOP_K, labels)
            if not 1 <= top_k <= labels:
                raise RequestError(400, f"top_k must be in 1..{labels}")
            kind = body_kind(body, content_type)
            return served.pool.submit(self._classify, served, body, kind, top_k)

    @staticmethod
    def _classify(served: Workers, body: bytes, kind: str, top_k: int) -> dict[str, Any]:
        """The reply document (runs on a worker of ``served``).

        ``label`` is "unknown" (``unknown`` true) when the model is not sure enough of
        the picture, else ``top_label``, the most likely class.

        Raises:
            RequestError: a malformed ``.npy`` body.
            InputError: the picture or array cannot be an image for the model.
            ModelError: the model failed on it.
        """
        start = time.perf_counter()
        classifier = served.classifier
        image: Any = read_npy(body, classifier.input_shape) if kind == "npy" else body
        answer = classifier.answer(image, top_k=top_k)
        latency_ms = (time.perf_counter() - start) * 1000
        return {
            "label": answer.label,
            "unknown": bool(answer.unknown),  # numpy's bool is no JSON
            "top_label": answer.top_label,
            "confidence": answer.confidence,
            "top_k": [{"label": label, "probability": p} for label, p in answer.top_k],
            "model": served.info.file,
            "backend": classifier.backend_name,
            "latency_ms": round(latency_ms, 3),
        }

    def health(self, status: str = "ok") -> dict[str, Any]:
        """Liveness, the model served, and counters."""
        c = self.counters
        served = self._served
        return {
            "status": status,
            **served.info.to_health(),
            "backend": served.classifier.backend_name,
            "confidence_in_effect": confidence_in_effect(served.classifier),
            "workers": self.workers,
            "uptime_s": round(time.monotonic() - c.started, 3),
            "requests_served": c.requests,
            "classified": c.classified,
            "errors": c.errors,
            "reloads": c.reloads,
            "reload_failures": c.reload_failures,
            "last_reload_error": c.last_reload_error,
        }

    def metadata(self) -> dict[str, Any]:
        """The model's own metadata, as embedded in the file, with its name and backend.

        ``confidence_in_effect`` beside the file's fitted ``confidence``: what serve's
        options made of it.
        """
        served = self._served
        return {
            "model": served.info.file,
            "backend": served.classifier.backend_name,
            "confidence_in_effect": confidence_in_effect(served.classifier),
            **served.classifier.metadata.to_dict(),
        }

    def close(self) -> None:
        """Finish queued work and stop the workers; later switches are refused."""
        with self._lock:
            self._closed = True
            served = self._served
        served.close()
