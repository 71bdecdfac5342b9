"""The live page's endpoints: ``/live``, ``/live/frame.jpg``, ``/live/stream.mjpg``, ``/events``.

``/events`` (Server-Sent Events) and ``/live/stream.mjpg`` (multipart JPEG) last as long
as the viewer watches, so they are bounded apart from the request limits: each holds one
of the server's connections, at most ``max_viewers`` run at once (the next gets 503),
they are exempt from the request deadline but end when the server stops, and a viewer
that reads slower than they are written skips results and frames rather than having them
buffered: nothing is written while more than :data:`VIEWER_BUFFER_BYTES` wait for it, and
a viewer that reads nothing for :data:`STALLED_SECONDS` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from edgecnn import _json
from edgecnn.runtime.serve import http
from edgecnn.runtime.serve.live import LiveFeed

#: Live viewers (``/events`` and ``/live/stream.mjpg`` responses) at once.
MAX_VIEWERS = 8
#: How often a viewer is looked at: at most this many results or frames a second.
PERIOD_SECONDS = 0.1
#: A comment line this often keeps proxies and phones from closing a quiet event stream.
HEARTBEAT_SECONDS = 15.0
#: Bytes that may wait for one viewer; above it, what would be written is skipped.
VIEWER_BUFFER_BYTES = 256 * 1024
#: A viewer whose buffer stays full this long has stopped reading: it is closed.
STALLED_SECONDS = 30.0
#: The endpoints and their methods, added to the server's when it has a source.
ROUTES: dict[str, tuple[str, ...]] = {
    "/live": ("GET", "HEAD"),
    "/live/frame.jpg": ("GET", "HEAD"),
    "/live/stream.mjpg": ("GET", "HEAD"),
    "/events": ("GET", "HEAD"),
}
_MJPEG_BOUNDARY = "edgecnn-frame"
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class Streamed:
    """A reply the server hands over to :meth:`Viewers.stream`: ``events`` or ``mjpeg``."""

    kind: str

    @property
    def content_type(self) -> str:
        """The reply's content type, for its head (HEAD gets only that)."""
        if self.kind == "events":
            return "text/event-stream; charset=utf-8"
        return f"multipart/x-mixed-replace; boundary={_MJPEG_BOUNDARY}"


class Viewers:
    """The live endpoints of one server, and the viewers watching."""

    def __init__(self, feed: LiveFeed, model: str, max_viewers: int = MAX_VIEWERS) -> None:
        self.feed = feed
        self.max_viewers = max_viewers
        self.watching = 0
        self.skipped = 0  # looks at a viewer skipped: what it had not read was too much
        template = resources.files(__package__).joinpath("templates/live.html").read_text()
        self._page = (
            Template(template)
            .substitute(model=html.escape(model), source=html.escape(feed.source.shown))
            .encode()
        )

    async def respond(self, path: str, query: str) -> tuple[int, Any, dict[str, str]]:
        """``(status, document, extra headers)`` for a GET or HEAD of a live endpoint."""
        if query and not (path == "/live/frame.jpg" and query.startswith("t=")):
            message = f"{path} takes no query parameter" + (
                " but t (any value, to defeat caches)" if path == "/live/frame.jpg" else ""
            )
            return 400, {"error": message}, {}
        if path == "/live":
            return 200, http.Body("text/html; charset=utf-8", self._page), _NO_STORE
        if path == "/live/frame.jpg":
            data = await asyncio.to_thread(self.feed.jpeg)
            if data is None:
                extra = {"Retry-After": "1"}
                return 503, {"error": "no frame from the source yet; retry"}, extra
            return 200, http.Body("image/jpeg", data), _NO_STORE
        return 200, Streamed("events" if path == "/events" else "mjpeg"), {}

    async def stream(
        self,
        kind: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stopping: Callable[[], bool],
    ) -> int:
        """Write ``kind`` to a viewer until it leaves, stalls or the server stops; the status."""
        if self.watching >= self.max_viewers:
            document = {"error": f"{self.max_viewers} live viewers already; retry later"}
            writer.write(http.reply(503, document, close=True, extra={"Retry-After": "5"}))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 5.0)
            return 503
        self.watching += 1
        # The viewer sends nothing more; reading (and dropping) tells when it leaves.
        gone = asyncio.ensure_future(_until_eof(reader))
        try:
            if kind == "events":
                await self._events(writer, gone, stopping)
            else:
                await self._mjpeg(writer, gone, stopping)
        finally:
            gone.cancel()
            self.watching -= 1
        return 200

    async def _events(self, writer: asyncio.StreamWriter, gone: asyncio.Future[None],
                      stopping: Callable[[], bool]) -> None:  # fmt: skip
        writer.write(http.stream_head(Streamed("events").content_type) + b"retry: 2000\n\n")
        seen = max(0, self.feed.last_change - 1)  # a newcomer learns the current stable label
        state: dict[str, Any] | None = None
        frame = None
        sent = time.monotonic()
        async for now in self._ticks(writer, gone, stopping):
            snap = self.feed.snapshot(seen)
            parts = []
            if snap.state != state:
                state = snap.state
                parts.append(_event("state", state))
            for seen, change in snap.changes:  # noqa: B007 - the last one seen is kept
                parts.append(_event("change", change.to_dict()))
            if snap.result is not None and snap.result.index != frame:
                frame = snap.result.index
                parts.append(_event("result", snap.result.to_dict()))
            if not parts and now - sent >= HEARTBEAT_SECONDS:
                parts.append(b": keep-alive\n\n")
            if parts:
                writer.write(b"".join(parts))
                sent = now

    async def _mjpeg(self, writer: asyncio.StreamWriter, gone: asyncio.Future[None],
                     stopping: Callable[[], bool]) -> None:  # fmt: skip
        writer.write(http.stream_head(Streamed("mjpeg").content_type))
        shown = None
        async for _ in self._ticks(writer, gone, stopping):
            index = self.feed.frame_index
            if index is None or index == shown:
                continue
            data = await asyncio.to_thread(self.feed.jpeg)
            if data is None or writer.is_closing():
                continue
            shown = index
            head = (f"--{_MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()  # fmt: skip
            writer.write(head + data + b"\r\n")

    async def _ticks(self, writer: asyncio.StreamWriter, gone: asyncio.Future[None],
                     stopping: Callable[[], bool]) -> AsyncIterator[float]:  # fmt: skip
        """Every :data:`PERIOD_SECONDS` while the viewer is there and can take more: the time.

        Ends when the viewer leaves, the server stops, or the viewer has read nothing for
        :data:`STALLED_SECONDS`.
        """
        transport = writer.transport
        drained = time.monotonic()
        while not (stopping() or gone.done() or writer.is_closing()):
            now = time.monotonic()
            if transport.get_write_buffer_size() <= VIEWER_BUFFER_BYTES:
                drained = now
                yield now
            elif now - drained > STALLED_SECONDS:
                return
            else:
                self.skipped += 1
            await asyncio.wait({gone}, timeout=PERIOD_SECONDS)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(4096):
            pass


def _event(name: str, document: dict[str, Any]) -> bytes:
    """One Server-Sent Event: its name and a line of JSON."""
    return f"event: {name}\ndata: {_json.dumps(document, indent=None)}\n\n".encode()
