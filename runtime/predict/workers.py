"""``edgecnn predict``'s pipeline: batches decoded and classified by worker processes, in order.

Each worker process loads the model with one interpreter thread, then reads, decodes and
classifies whole batches; this process hands out batches and writes the results in input
order. The LiteRT interpreter has been seen to keep Python's GIL while it runs, so
a decoding thread would only take turns with it, and an interpreter in this process
beside decoders in others lost whenever a decoder held the core one of its threads
waited for; every backend got faster this way (docs/benchmarks.md, "predict workers";
``bench/predict_folder.py`` measures it). Workers are started only on
Linux, with two cores or more, for more than one batch of pictures (a few files are
classified here), and for a backend that uses every core by itself (numpy) there is
one. A handful of batches are in flight at any time, whatever the number of inputs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.backends import INTERPRETERS
from edgecnn.runtime.errors import InferenceError, InputError
from edgecnn.runtime.predict.batches import BATCH_SIZE, Batch, decode, make_batches
from edgecnn.runtime.predict.inputs import Source
from edgecnn.runtime.predict.lifetime import (
    Parent,
    follow_parent,
    ignore_stop_signals,
    signals_held,
    this_process,
)

if TYPE_CHECKING:
    from edgecnn.runtime.classifier import Classifier

#: Worker processes at most: each holds its own copy of the model.
MAX_WORKERS = 8
#: Modules whose threads make forking unsafe once imported (see :func:`start_method`):
#: every interpreter whose registry entry says it starts threads, and TensorFlow.
THREADED_MODULES = (
    *dict.fromkeys(i.module.split(".")[0] for i in INTERPRETERS.values() if i.starts_threads),
    "tensorflow",
)


@dataclass(frozen=True)
class ModelSpec:
    """How each worker loads the model: as :func:`~edgecnn.runtime.load_classifier` does.

    ``calibrated`` and ``reject`` are the command's: a worker's probabilities must be the
    ones this process's copy of the model would give.
    """

    path: str
    backend: str
    threads: int
    check_integrity: bool
    calibrated: bool = True
    reject: bool | float = True
    #: The process the workers end with (see :mod:`edgecnn.runtime.predict.lifetime`).
    parent: Parent | None = None


@dataclass
class Outcome:
    """A batch's probabilities, in order, for the inputs not in ``failed``.

    Without ``skip_bad``, only the inputs before the first failed one are classified.
    """

    probs: np.ndarray | None
    failed: dict[int, str]


@dataclass
class Workers:
    """Worker processes, each holding the model (see :func:`start_workers`)."""

    pool: ProcessPoolExecutor
    count: int


@dataclass
class Classified:
    """One batch's outcome in input order: ``probs`` rows for the inputs not in ``failed``."""

    names: list[str]
    probs: np.ndarray | None
    failed: dict[int, str]


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def workers_pay(pictures: int) -> bool:
    """Whether worker processes classify ``pictures`` pictures.

    Only for more than a batch of them, with two cores or more, on Linux (where forking
    is the usual way to start processes).
    """
    return pictures > BATCH_SIZE and cores() >= 2 and sys.platform.startswith("linux")


def worker_count(threads: int, model: str = "", backend: str = "auto") -> int:
    """Workers of ``threads`` interpreter threads each: one per core they fill, at least one.

    One only for a backend that uses every core by itself (numpy): with two, the
    processes fight over the cores and the run takes longer (docs/benchmarks.md,
    "numpy backend workers").
    """
    from edgecnn.runtime.backends import BACKENDS, candidates

    names = candidates(os.path.splitext(model)[1].lower(), backend)
    if names and BACKENDS[names[0]].own_threads:
        return 1
    return max(1, min(MAX_WORKERS, cores() // threads))


def start_workers(
    pictures: int, model: str, backend: str, threads: int | None, check_integrity: bool,
    calibrated: bool = True, reject: bool | float = True,
) -> Workers | None:  # fmt: skip
    """Worker processes to classify ``pictures`` pictures, forked now; None if not worth it.

    Each loads the model at once, while this process loads its own copy: with
    ``threads`` interpreter threads (one if None), as many workers as cores they fill,
    ``calibrated`` and ``reject`` as :func:`~edgecnn.runtime.load_classifier` takes them.
    """
    if not workers_pay(pictures):
        return None
    import multiprocessing

    # What the workers use is imported once, before the fork, not in every worker.
    import edgecnn.runtime.classifier  # noqa: F401
    import edgecnn.runtime.predict.small_png  # noqa: F401
    from edgecnn.runtime.images import load_pillow

    load_pillow()  # without Pillow: one sentence before any work
    for stream in (sys.stdout, sys.stderr):  # a worker flushes its copies when it exits
        stream.flush()
    spec = ModelSpec(model, backend, threads or 1, check_integrity, calibrated, reject,
                     this_process())  # fmt: skip
    count = worker_count(spec.threads, model, backend)
    method = start_method()
    pool = ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        initargs=(spec,),
    )
    # A forked worker has this process's SIGTERM handler until it ignores SIGTERM; a fork
    # server (which would keep the mask for good) gives its own.
    with signals_held() if method == "fork" else contextlib.nullcontext():
        pool.submit(int)  # the first task starts every worker: the fork happens here
    return Workers(pool, count)


def start_method() -> str:
    """How workers start: forked from this process, unless it has loaded an interpreter.

    ``edgecnn predict`` forks its workers before it loads the model: fast, and safe,
    since no interpreter thread exists yet. A process that has already imported an
    interpreter (a program calling the command in-process, a test session) may have its
    threads halfway through holding a lock, which a forked copy would wait on forever;
    its workers are forked from a fresh server process instead, which starts them a
    little later (docs/benchmarks.md, "fork server start").
    """
    if any(name in sys.modules for name in THREADED_MODULES):
        return "forkserver"
    return "fork"


def stop_workers(workers: Workers | None) -> None:
    """Stop the workers, dropping batches not yet classified."""
    if workers is not None:
        workers.pool.shutdown(wait=True, cancel_futures=True)


#: In a worker: its model, or why it could not be loaded (raised by its first batch).
_model: Classifier | EdgecnnError | None = None


def _start_worker(spec: ModelSpec) -> None:
    """Tie a worker to its command's life, and load its model."""
    global _model
    if spec.parent is not None:
        follow_parent(spec.parent)
    ignore_stop_signals()
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime.classifier import load_classifier

    try:
        with native_stderr_hidden():
            _model = load_classifier(spec.path, spec.backend, spec.threads, spec.check_integrity,
                                     spec.calibrated, spec.reject)  # fmt: skip
    except EdgecnnError as e:
        _model = e


def _classify_in_worker(
    job: Batch, shape: tuple[int, int, int], light_on_dark: bool, skip_bad: bool
) -> Outcome:
    """:func:`outcome` with the worker's model."""
    if _model is None:
        raise RuntimeError("a worker without a model: start it with start_workers")
    if isinstance(_model, EdgecnnError):
        raise _model
    return outcome(_model, job, shape, light_on_dark, skip_bad)


def outcome(
    classifier: Classifier,
    job: Batch,
    shape: tuple[int, int, int],
    light_on_dark: bool,
    skip_bad: bool,
) -> Outcome:
    """Decode ``job`` and classify its inputs, in this process."""
    from edgecnn._quiet import native_stderr_hidden

    decoded = decode(job, shape, light_on_dark)
    images, failed = decoded.images, decoded.failed
    if failed and not skip_bad:
        first = min(failed)  # every input before it was read: rows 0..first-1
        images = images[:first] if first and images is not None else None
    probs = None
    if images is not None:
        with native_stderr_hidden():
            probs = classifier.predict(images)
    return Outcome(probs, failed)


def classify_batches(
    classifier: Classifier,
    sources: Sequence[Source],
    workers: Workers | None = None,
    skip_bad: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Classified]:
    """The classified batches of ``sources``, in order, each as soon as it is done.

    With ``workers`` (:func:`start_workers`), they decode and classify every batch;
    ``classifier`` gives the shape and polarity. Without ``skip_bad`` the first input
    that cannot be read ends the stream: the inputs before it are yielded, then its
    error is raised.

    Raises:
        InputError: an input that cannot be read (without ``skip_bad``).
        ModelError: the model computed something that is not probabilities.
        InferenceError: a worker process died (exit code 1).
    """
    shape = classifier.input_shape
    light_on_dark = classifier.metadata.light_on_dark
    todo = make_batches(sources, batch_size)
    pending: deque[tuple[Batch, Future[Outcome] | None]] = deque()
    ahead = 2 * workers.count + 1 if workers else 1  # batches in flight

    def queue() -> None:
        while len(pending) < ahead:
            job = next(todo, None)
            if job is None:
                return
            work = None
            if workers is not None:
                args = (job, shape, light_on_dark, skip_bad)
                try:
                    work = workers.pool.submit(_classify_in_worker, *args)
                except BrokenProcessPool as e:  # said when this batch's turn comes
                    work = Future()
                    work.set_exception(e)
            pending.append((job, work))

    queue()
    while pending:
        job, work = pending.popleft()
        if work is None:
            done = outcome(classifier, job, shape, light_on_dark, skip_bad)
        else:
            try:
                done = work.result()
            except BrokenProcessPool:
                raise InferenceError(
                    "a worker process died (killed, or out of memory); the run stopped before "
                    f"the batch that starts at {next(job.names())}, with the results before it "
                    "written"
                ).with_exit_code(1) from None
        queue()  # the workers classify the next batches while this one is written
        names = list(job.names())
        failed = done.failed
        if failed and not skip_bad:
            first = min(failed)
            yield Classified(names[:first], done.probs, {})
            raise InputError(failed[first])
        yield Classified(names, done.probs, failed)
