"""``edgecnn predict``'s pipeline: batches decoded ahead by worker processes, classified in order.

The LiteRT interpreter keeps Python's GIL while it runs (ai-edge-litert 2.3), so a
decoding thread would only take turns with it. Worker processes decode the next batches
while this process classifies the current one: on two cores, 44,000 Fashion-MNIST PNGs a
second for the int8 model, against 36,000 decoding here (``bench/predict_folder.py``).
Workers are forked before the model is loaded, since forking a process whose interpreter
has started threads is unsafe, and only on Linux, with two cores or more, for more than
one batch of pictures; a few files are decoded here. A handful of batches are in flight
at any time, whatever the number of inputs.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgecnn.runtime.batches import BATCH_SIZE, Decoded, Job, decode, jobs
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.inputs import Source

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier

#: Decoding processes at most; half the cores are left to the interpreter.
MAX_DECODERS = 4


@dataclass
class Classified:
    """One batch's outcome in input order: ``probs`` rows for the inputs not in ``failed``."""

    names: list[str]
    probs: np.ndarray | None
    failed: dict[int, str]


def start_decoders(pictures: int) -> ProcessPoolExecutor | None:
    """Worker processes to decode ``pictures`` pictures, forked now; None if not worth it."""
    if not decoders_pay(pictures):
        return None
    import multiprocessing

    # What the workers use is imported once, before the fork, not in every worker.
    import edgecnn.runtime.small_png  # noqa: F401
    from edgecnn.runtime.images import load_pillow

    load_pillow()  # without Pillow: one sentence before any work
    for stream in (sys.stdout, sys.stderr):  # a worker flushes its copies when it exits
        stream.flush()
    pool = ProcessPoolExecutor(
        decoders(), mp_context=multiprocessing.get_context("fork"), initializer=_ignore_interrupts
    )
    pool.submit(int)  # the first task starts every worker: the fork happens here
    return pool


def decoders_pay(pictures: int) -> bool:
    """Whether worker processes decode ``pictures`` pictures.

    Only for more than a batch of them, with two cores or more, on Linux (where forking
    is the usual way to start processes).
    """
    cores = os.cpu_count() or 1
    return pictures > BATCH_SIZE and cores >= 2 and sys.platform.startswith("linux")


def decoders() -> int:
    """How many decoding processes to start: half the cores, at least one."""
    return max(1, min(MAX_DECODERS, (os.cpu_count() or 1) // 2))


def interpreter_threads(decoding: bool, asked: int | None) -> int | None:
    """The interpreter's threads: as ``asked``, else, beside decoders, the cores they leave.

    Two cores, a folder of Fashion-MNIST PNGs: the int8 model classifies 44,000 a second
    with one interpreter thread beside the decoder and 37,000 with two, which stall
    whenever the decoder has the core one of them waits for; the float32 models, four
    times slower to run, lose a fifth instead (16,000 against 20,000). Without decoders,
    None: the backend's own default.
    """
    if asked is not None or not decoding:
        return asked
    return max(1, min((os.cpu_count() or 1) - decoders(), 4))


def _ignore_interrupts() -> None:
    """Ctrl-C is for the main process, which stops the workers; they print no traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_decoders(pool: ProcessPoolExecutor | None) -> None:
    """Stop the workers, dropping batches not yet decoded."""
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def classify_batches(
    classifier: Classifier,
    sources: Sequence[Source],
    pool: ProcessPoolExecutor | None = None,
    skip_bad: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Classified]:
    """The classified batches of ``sources``, in order, each as soon as it is done.

    Without ``skip_bad`` the first input that cannot be read ends the stream: the inputs
    before it are yielded, then its error is raised.

    Raises:
        InputError: an input that cannot be read (without ``skip_bad``).
        ModelError: the model computed something that is not probabilities.
    """
    from edgecnn._quiet import native_stderr_hidden

    shape = classifier.input_shape
    light_on_dark = classifier.metadata.light_on_dark
    todo = jobs(sources, batch_size)
    pending: deque[tuple[Job, Future[Decoded] | None]] = deque()
    ahead = 2 * decoders() + 1 if pool else 1  # batches decoded ahead of the one classified

    def queue() -> None:
        while len(pending) < ahead:
            job = next(todo, None)
            if job is None:
                return
            work = pool.submit(decode, job, shape, light_on_dark) if pool and job.pictures else None
            pending.append((job, work))

    queue()
    while pending:
        job, work = pending.popleft()
        decoded = work.result() if work is not None else decode(job, shape, light_on_dark)
        queue()  # the workers decode the next batches while this one is classified
        names = list(job.names())
        failed = decoded.failed
        if failed and not skip_bad:
            first = min(failed)  # every input before it was read: rows 0..first-1
            names, failed = names[:first], {}
            images = decoded.images[:first] if first and decoded.images is not None else None
        else:
            images = decoded.images
        probs = None
        if images is not None:
            with native_stderr_hidden():
                probs = classifier.predict(images)
        yield Classified(names, probs, failed)
        if decoded.failed and not skip_bad:
            raise InputError(decoded.failed[min(decoded.failed)])
