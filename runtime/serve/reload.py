"""``edgecnn serve`` takes a new model without dropping a request.

A reload is asked for by SIGHUP, or noticed by polling about once a second: the store's
``current`` symlink (``os.readlink``) when serve was started without a MODEL, else the
model file's ``(st_ino, st_mtime_ns, st_size)``. The new model is loaded beside the old,
every one of its workers classifies once, and its input must be the old one's shape;
only then do new requests go to it. Requests already handed to the old workers finish
there, and the old workers and their interpreters go once those are answered. A model
that fails any of this leaves the old one serving, with one line on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from types import FrameType

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.classifier import Classifier
from edgecnn.runtime.errors import InputError
from edgecnn.runtime.serve.model_info import current_link, describe_model
from edgecnn.runtime.serve.service import ClassifierService, Workers
from edgecnn.runtime.store import resolve_model

#: Seconds between two looks at the model file or the store's ``current`` link.
POLL_SECONDS = 1.0


def watched_state(model: Path | None) -> Hashable:
    """What a change of model changes: ``current``'s target, or the file's identity.

    None when there is nothing to look at (no link, no file): a model appearing there
    is a change.
    """
    try:
        if model is None:
            return os.readlink(current_link())
        st = os.stat(model)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Reloader:
    """Reloads ``service``'s model when asked (:meth:`request`) or when it changes on disk.

    ``load`` loads a model file as serve's options say. The work happens on a thread of
    its own, one reload at a time; :meth:`request` may be called from any thread.
    """

    def __init__(
        self,
        service: ClassifierService,
        model: Path | None,
        load: Callable[[Path], Classifier],
        seen: Hashable,
        interval: float = POLL_SECONDS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.service = service
        self.model = model
        self.load = load
        self.interval = interval
        self.log = log or _print_line
        self._seen = seen
        self._asked = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecnn-reload", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def request(self) -> None:
        """Reload at once (SIGHUP)."""
        self._asked.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching, waiting up to ``timeout`` seconds for a reload under way."""
        self._stopping.set()
        self._asked.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            asked = self._asked.wait(self.interval)
            if self._stopping.is_set():
                return
            self._asked.clear()
            state = watched_state(self.model)
            if asked or state != self._seen:
                self._seen = state  # a bad model is reported once, not every poll
                try:
                    self.reload()
                except Exception:  # noqa: BLE001 - the watch must outlive any one reload
                    continue

    def reload(self) -> bool:
        """Load, warm and check the model, then switch to it; whether it is served now."""
        from edgecnn._quiet import banners_hidden
        from edgecnn.runtime.backends import BANNERS

        started = time.perf_counter()
        old = self.service.served
        try:
            path = resolve_model(self.model)
            # Other threads' lines are held back during the block, not lost.
            with banners_hidden(BANNERS):
                classifier = self.load(path)
                _check_shape(classifier, old.classifier)
                info = describe_model(path)
                new = Workers(classifier, old.count, info)
        except (EdgecnnError, OSError) as e:
            return self._failed(str(e), old)
        except Exception as e:  # a bug here must leave the old model serving
            return self._failed(f"unexpected {type(e).__name__}: {e}", old)
        replaced = self.service.switch(new)
        took_ms = (time.perf_counter() - started) * 1000
        if replaced is None:  # the server is stopping
            return False
        try:
            self.service.counters.reloaded()
            self._say(
                f"edgecnn: now serving {info.shown} (was {old.info.shown_version}), "
                f"switched in {took_ms:.0f} ms"
            )
        finally:
            replaced.close()  # once the requests handed to it are answered
        return True

    def _failed(self, reason: str, old: Workers) -> bool:
        reason = " ".join(reason.split()) or "unknown error"
        self.service.counters.reloaded(error=reason)
        self._say(f"edgecnn: reload failed: {reason}; still serving {old.info.shown}")
        return False

    def _say(self, line: str) -> None:
        """``log(line)``; a log that fails (stderr closed, say) loses the line, not the reload."""
        with contextlib.suppress(Exception):  # nothing left to report it with
            self.log(line)


class Hangups:
    """SIGHUP for serve's whole life: held until a reloader takes it, then forwarded.

    Installed first thing, so a reload asked for while the model loads (``systemctl
    reload`` right after start) or while serve stops neither kills it nor is lost.
    """

    def __init__(self) -> None:
        self._target: Callable[[], None] | None = None
        self._held = False
        self._old: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    def install(self) -> None:
        """Catch SIGHUP (only the main thread may; elsewhere this does nothing)."""
        try:
            self._old = signal.signal(signal.SIGHUP, self._on_signal)
        except ValueError:  # not the main thread
            return
        self._installed = True

    def forward_to(self, target: Callable[[], None]) -> None:
        """Call ``target`` on every SIGHUP from now on, and at once for one held."""
        self._target = target
        if self._held:
            self._held = False
            target()

    def restore(self) -> None:
        """Put back the SIGHUP handler found by :meth:`install`."""
        if self._installed:
            signal.signal(signal.SIGHUP, self._old)
            self._installed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        target = self._target
        if target is None:
            self._held = True
        else:
            target()


def _check_shape(new: Classifier, old: Classifier) -> None:
    """Refuse a model whose input is not the served one's shape.

    Raises:
        InputError: the shapes differ.
    """
    if new.input_shape != old.input_shape:
        shape = "x".join(map(str, new.input_shape))
        served = "x".join(map(str, old.input_shape))
        raise InputError(f"{new.path.name} takes {shape} images, the model served takes {served}")


def _print_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
