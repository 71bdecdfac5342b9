"""The connections ``edgecnn serve`` holds: at most ``max_connections``, and who gives way.

At the cap the server stops accepting, so newcomers wait in the kernel's listen queue
(which takes none of the server's memory) and are served when a slot frees. A slot is
freed early for a waiting client only from a connection not using it: one kept alive
with no new request, one silent for :data:`STALL_SECONDS` since it connected, or one
still sending its request after :data:`STALL_SECONDS` (a slow or stalled client). Such a
connection is never dropped silently: it gets 503 with ``Retry-After`` and
``Connection: close``, and what it still sends is read and dropped for
:data:`LINGER_SECONDS`, so that it reads the 503 rather than a reset. A connection whose
request is being classified or answered is never replaced.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import termios
import time
from collections.abc import Awaitable, Iterable
from typing import Any, SupportsIndex, TypeVar

#: A connection silent since it connected, or still sending its request, for this long
#: may be replaced by a waiting client.
STALL_SECONDS = 1.0
#: After a refusal, keep reading (and dropping) what the client sends this long before
#: closing, so that the client reads the refusal instead of a connection reset.
LINGER_SECONDS = 2.0
#: How often a full server looks again for a connection that became replaceable.
_POLL_SECONDS = 0.1
#: Phases: new (no byte yet) -> reading -> working -> writing -> idle -> reading ...
_IN_FLIGHT = frozenset({"reading", "working", "writing"})
T = TypeVar("T")


class CountingReader(asyncio.StreamReader):
    """A stream reader that knows how many bytes it holds that nobody has read yet."""

    received = 0
    consumed = 0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        """Count, then buffer as usual (the transport gives bytes)."""
        self.received += len(data) if isinstance(data, bytes) else len(bytes(data))
        super().feed_data(data)

    async def read(self, n: int = -1) -> bytes:
        """As :meth:`asyncio.StreamReader.read`, counted."""
        data = await super().read(n)
        self.consumed += len(data)
        return data

    async def readexactly(self, n: int) -> bytes:
        """As :meth:`asyncio.StreamReader.readexactly`, counted."""
        data = await super().readexactly(n)
        self.consumed += len(data)
        return data

    async def readuntil(self, separator: Any = b"\n") -> bytes:  # typeshed: any buffer
        """As :meth:`asyncio.StreamReader.readuntil`, counted."""
        data = await super().readuntil(separator)
        self.consumed += len(data)
        return data

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet (after a failed read: not reliable; closing)."""
        return self.received - self.consumed


class Connection:
    """One open connection: its streams, its task, and what it is doing since when."""

    __slots__ = ("reader", "writer", "task", "closer", "phase", "since", "reserved", "replaced")

    def __init__(self, reader: CountingReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.task: asyncio.Task[None] | None = None  # reads and answers its requests
        self.closer: asyncio.Task[None] | None = None  # answers 503 and closes it
        self.reserved = 0  # bytes of the body budget this connection's request holds
        self.replaced = False
        self.enter("new")

    def enter(self, phase: str) -> None:
        """Record that the connection starts ``phase`` now."""
        self.phase, self.since = phase, time.monotonic()

    @property
    def in_flight(self) -> bool:
        """Whether a request has started arriving and is not answered yet."""
        return self.phase in _IN_FLIGHT

    def pending(self) -> bool:
        """Whether bytes have arrived (in the reader or the kernel) that nobody read yet."""
        return self.reader.buffered != 0 or _queued_bytes(self.writer) != 0

    def abort(self) -> None:
        """Close at once."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


def _queued_bytes(writer: asyncio.StreamWriter) -> int:
    """Bytes waiting in the kernel's receive queue of ``writer``'s socket (-1: unknown)."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return -1
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except OSError:
        return -1
    return count[0]


class Slots:
    """The open connections, those being closed after a refusal, and room for newcomers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: set[Connection] = set()
        self.closing: set[Connection] = set()
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Wake the accept loop: a connection closed or went idle."""
        self._changed.set()

    def replaceable(self) -> Connection | None:
        """The connection to give way to a newcomer, or None when none should."""
        now = time.monotonic()
        best: tuple[int, float] | None = None
        chosen = None
        for conn in self.open:
            if conn.phase == "idle" and not conn.pending():
                rank = 0
            elif now - conn.since < STALL_SECONDS:
                continue
            elif conn.phase == "new" and not conn.pending():
                rank = 1
            elif conn.phase == "reading":
                rank = 2
            else:
                continue
            if best is None or (rank, conn.since) < best:
                best, chosen = (rank, conn.since), conn
        return chosen

    def has_room(self) -> bool:
        """Whether a newcomer can be taken now, in a free slot or one freed for it."""
        if len(self.closing) >= self.limit:  # bounds the sockets being closed, too
            return False
        return len(self.open) < self.limit or self.replaceable() is not None

    async def wait_for_room(self) -> None:
        """Until :meth:`has_room`; meanwhile newcomers wait in the kernel's listen queue."""
        while not self.has_room():
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), _POLL_SECONDS)

    async def wait_until_empty(self, deadline: float) -> None:
        """Until every connection is closed, or ``deadline`` (monotonic) has passed."""
        while (self.open or self.closing) and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    def refuse(self, conn: Connection, reply: bytes) -> None:
        """Stop ``conn``'s work, then send it ``reply`` and close it without a reset."""
        self.open.discard(conn)
        self.closing.add(conn)
        conn.replaced = True
        if conn.task is not None:
            conn.task.cancel()
        conn.closer = asyncio.get_running_loop().create_task(self._close_after(conn, reply))

    async def _close_after(self, conn: Connection, reply: bytes) -> None:
        try:
            if conn.task is not None:  # it must not read or write any more
                with contextlib.suppress(BaseException):
                    await conn.task
            conn.writer.write(reply)
            await linger(conn.reader, conn.writer)
        finally:
            conn.abort()
            self.closing.discard(conn)
            self.changed()


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client still sends, for :data:`LINGER_SECONDS`."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        end = time.monotonic() + LINGER_SECONDS
        while await before(end, reader.read(65536)):
            pass


async def before(deadline: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or asyncio.TimeoutError once ``deadline`` has passed."""
    return await asyncio.wait_for(awaitable, max(0.0, deadline - time.monotonic()))
