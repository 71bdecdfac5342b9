"""``edgecnn serve``'s HTTP server: one asyncio loop reads and writes, a thread pool classifies.

Slow or idle clients must not take the service offline, so no thread waits on a socket:
the event loop reads every connection, and a request reaches the worker pool only once
its whole body has arrived. What a client can hold is bounded:

* time: the head and body of a request must arrive within ``request_timeout`` of its
  first byte (else 408), and a connection idle between requests is closed after
  ``idle_timeout``;
* connections: at most ``max_connections`` are open; beyond that, newcomers wait in the
  kernel's listen queue until a slot frees, or until one can be taken from a connection
  that is idle, silent or too slow to send its request (which gets 503 first; see
  :mod:`~edgecnn.runtime.serve.connections`), so a complete request always gets an answer;
* memory: bodies being received reserve their declared length from a budget of
  ``max_buffered_bytes`` (503 when it is spent), and decoding happens only in the
  ``workers`` threads.

SIGTERM or Ctrl-C stops accepting, closes idle connections, lets requests in flight
finish (up to :data:`GRACE_SECONDS`), and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.errors import InputError, ModelError
from edgecnn.runtime.serve import http
from edgecnn.runtime.serve.connections import Connection, CountingReader, Slots, before, linger
from edgecnn.runtime.serve.http import HttpError, Request
from edgecnn.runtime.serve.service import ClassifierService, RequestError
from edgecnn.runtime.serve.viewers import ROUTES as LIVE_ROUTES
from edgecnn.runtime.serve.viewers import Streamed, Viewers

#: Seconds in-flight requests get to finish after SIGTERM before the server stops anyway.
GRACE_SECONDS = 10.0
#: A keep-alive connection with no new request for this long is closed.
IDLE_TIMEOUT = 15.0
#: Endpoints and the methods each answers.
ROUTES: dict[str, tuple[str, ...]] = {
    "/classify": ("POST",),
    "/health": ("GET", "HEAD"),
    "/metadata": ("GET", "HEAD"),
}
_TOP_K = "^[0-9]{1,4}$"
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ServeError(EdgecnnError):
    """The server cannot start: the address is taken, forbidden or unknown."""


@dataclass(frozen=True)
class Limits:
    """What one client may hold: time, connections, memory."""

    max_connections: int = 256
    max_body_bytes: int = 4 * 1024 * 1024
    max_buffered_bytes: int = 64 * 1024 * 1024
    request_timeout: float = 10.0
    idle_timeout: float = IDLE_TIMEOUT


class ClassifierServer:
    """The listening socket, its connections, and the routes to the service."""

    def __init__(
        self,
        sock: socket.socket,
        service: ClassifierService,
        limits: Limits,
        access_log: bool = False,
        viewers: Viewers | None = None,
    ) -> None:
        self.sock = sock
        self.service = service
        self.limits = limits
        self.access_log = access_log
        self.viewers = viewers
        self.routes = {**ROUTES, **(LIVE_ROUTES if viewers else {})}
        self.stopping = False
        self._slots: Slots | None = None
        self._buffered = 0

    @property
    def url(self) -> str:
        """``http://host:port/`` of the listening socket (the real port if 0 was asked)."""
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    @property
    def in_flight(self) -> int:
        """Requests whose head has arrived and that are not answered yet."""
        return sum(c.in_flight for c in self._slots.open) if self._slots else 0

    # -- lifecycle ---------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, grace: float = GRACE_SECONDS) -> None:
        """Serve until ``stop`` is set, then stop gracefully."""
        slots = self._slots = Slots(self.limits.max_connections)
        accepting = asyncio.create_task(self._accept(slots))
        try:
            await stop.wait()
        finally:
            self.stopping = True
            accepting.cancel()
            with contextlib.suppress(BaseException):
                await accepting
            self.sock.close()  # new clients are refused at once, not queued
            for conn in list(slots.open):  # nothing asked: closed; else answered, closed
                if conn.phase in ("new", "idle") and not conn.pending():
                    conn.abort()
            await slots.wait_until_empty(time.monotonic() + grace)
            for conn in [*slots.open, *slots.closing]:
                conn.abort()
            await asyncio.sleep(0)  # let the aborted connections' tasks end

    async def _accept(self, slots: Slots) -> None:
        """Accept connections while there is room for them; else leave them queued."""
        loop = asyncio.get_running_loop()
        while True:
            await slots.wait_for_room()
            try:
                sock, _ = await loop.sock_accept(self.sock)
            except OSError as e:  # out of file descriptors or memory: wait for some
                if e.errno in _EXHAUSTED:
                    print(f"warning: cannot accept a client: {e.strerror}", file=sys.stderr)
                    await asyncio.sleep(1.0)
                continue  # else the client left before it was accepted
            try:
                while len(slots.open) >= slots.limit:  # its slot is taken from another
                    victim = slots.replaceable()
                    if victim is not None:
                        self._refuse(slots, victim, "server busy: every connection is in use")
                    else:
                        await slots.wait_for_room()
                await self._open(slots, sock, loop)
            except OSError:  # the client left already
                sock.close()
            except BaseException:
                sock.close()
                raise

    async def _open(self, slots: Slots, sock: socket.socket,
                    loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        reader = CountingReader(limit=http.MAX_HEAD_BYTES + 1024)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        with contextlib.suppress(OSError):  # a reply is written at once; Nagle would hold it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(reader, writer)
        slots.open.add(conn)
        conn.task = loop.create_task(self._connection(slots, conn))

    def _refuse(self, slots: Slots, conn: Connection, message: str) -> None:
        """Answer ``conn`` 503 in place of whatever it was doing, and close it."""
        document = {"error": f"{message}; retry"}
        reply = http.reply(503, document, close=True, extra={"Retry-After": "1"})
        slots.refuse(conn, reply)
        self.service.counters.count(503)

    async def _connection(self, slots: Slots, conn: Connection) -> None:
        reader, writer = conn.reader, conn.writer
        try:
            while not self.stopping and not conn.replaced:
                if not await self._exchange(conn, reader, writer):
                    break
                conn.enter("idle")
                slots.changed()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            pass
        except Exception as e:  # a bug here must not take the server down with it
            print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            if os.environ.get("EDGECNN_DEBUG"):
                traceback.print_exc()
        finally:
            if not conn.replaced:  # else the refusal closes it
                slots.open.discard(conn)
                writer.close()
                slots.changed()

    # -- one request ---------------------------------------------------------------------

    async def _exchange(self, conn: Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:  # fmt: skip
        """Read one request and answer it; whether the connection stays open."""
        limits = self.limits
        first = await self._first_byte(reader)
        if first is None or conn.replaced:
            return False
        conn.enter("reading")
        deadline = time.monotonic() + limits.request_timeout
        started = time.perf_counter()
        request: Request | None = None
        try:
            head = first + await before(deadline, reader.readuntil(b"\r\n\r\n"))
            request = http.parse_head(head)
            status, document, extra, unread = await self._respond(
                request, reader, writer, deadline, conn
            )
        except asyncio.LimitOverrunError:
            status, document, extra, unread = 431, {"error": "request head too large"}, {}, True
        except asyncio.TimeoutError:
            message = f"the request did not arrive within {limits.request_timeout:g} s"
            status, document, extra, unread = 408, {"error": message}, {}, True
        except HttpError as e:
            status, document, extra, unread = e.status, {"error": str(e)}, {}, e.close
        finally:
            self._buffered -= conn.reserved
            conn.reserved = 0
        if conn.replaced:  # answered 503 already
            return False
        if isinstance(document, Streamed) and self.viewers is not None:
            conn.enter("streaming")  # exempt from deadlines, never replaced, ends on stop
            if request is not None and request.method == "HEAD":
                writer.write(http.stream_head(document.content_type))  # a GET's head
                await before(time.monotonic() + limits.request_timeout, writer.drain())
            else:
                status = await self.viewers.stream(document.kind, reader, writer,
                                                   lambda: self.stopping)  # fmt: skip
            self.service.counters.count(status)
            if self.access_log:
                self._log(writer, request, status, started)
            return False
        conn.enter("writing")
        keep = not unread and not self.stopping and request is not None and request.keep_alive
        head_only = request is not None and request.method == "HEAD"
        writer.write(http.reply(status, document, head_only=head_only, close=not keep,
                                extra=extra))  # fmt: skip
        await before(time.monotonic() + limits.request_timeout, writer.drain())
        classified = status == 200 and isinstance(document, dict) and "top_k" in document
        self.service.counters.count(status, classified=classified)
        if self.access_log:
            self._log(writer, request, status, started)
        if unread:
            await linger(reader, writer)
        return keep

    async def _first_byte(self, reader: asyncio.StreamReader) -> bytes | None:
        """The first byte of the next request (blank lines before it skipped), or None."""
        while True:
            try:
                byte = await asyncio.wait_for(reader.read(1), self.limits.idle_timeout)
            except asyncio.TimeoutError:
                return None
            if byte not in (b"\r", b"\n"):
                return byte or None

    async def _respond(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
        conn: Connection,
    ) -> tuple[int, Any, dict[str, str], bool]:
        """``(status, document, extra headers, body left unread)`` for one request."""
        allowed = self.routes.get(request.path)
        if allowed is None or request.method not in allowed:
            unread = not await self._discard_body(request, reader, deadline)
            if allowed is None:
                endpoints = ", ".join(f"{m[0]} {p}" for p, m in self.routes.items())
                message = f"no endpoint {http.shown(request.path)}; the endpoints are {endpoints}"
                return 404, {"error": message}, {}, unread
            message = f"{request.path} takes {' or '.join(allowed)}"
            return 405, {"error": message}, {"Allow": ", ".join(allowed)}, unread
        if request.path == "/classify":
            return await self._classify(request, reader, writer, deadline, conn)
        unread = not await self._discard_body(request, reader, deadline)
        if self.viewers is not None and request.path in LIVE_ROUTES:
            status, document, extra = await self.viewers.respond(request.path, request.query)
            return status, document, extra, unread
        if request.query:
            name = next(iter(parse_qs(request.query, keep_blank_values=True)), request.query)
            message = f"unknown query parameter {http.shown(name, 40)}; {request.path} takes none"
            return 400, {"error": message}, {}, unread
        if request.path == "/health":
            state = "stopping" if self.stopping else "ok"
            # Not counting this request itself.
            document = {**self.service.health(state), "in_flight": self.in_flight - 1}
            if self.viewers is not None:
                viewers = self.viewers
                document["source"] = {**viewers.feed.health(), "viewers": viewers.watching,
                                      "viewer_skips": viewers.skipped}  # fmt: skip
        else:
            document = self.service.metadata()
        return 200, document, {}, unread

    async def _classify(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
        conn: Connection,
    ) -> tuple[int, dict[str, Any], dict[str, str], bool]:
        try:
            top_k = _top_k(request.query)
            body = await self._read_body(request, reader, writer, deadline, conn)
        except RequestError as e:
            return e.status, {"error": str(e)}, {}, True
        conn.enter("working")
        try:
            future = self.service.submit(body, top_k, request.header("Content-Type") or "")
            document = await asyncio.wrap_future(future)
        except RequestError as e:
            return e.status, {"error": str(e)}, {}, False
        except InputError as e:
            return 400, {"error": str(e)}, {}, False
        except ModelError as e:
            return 500, {"error": str(e)}, {}, False
        except Exception as e:
            print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            if os.environ.get("EDGECNN_DEBUG"):
                traceback.print_exc()
            return 500, {"error": f"internal error ({type(e).__name__})"}, {}, False
        return 200, document, {}, False

    async def _read_body(self, request: Request, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, deadline: float, conn: Connection
                         ) -> bytes:  # fmt: skip
        """The body, once its length is known to fit the limits.

        Raises:
            RequestError: 411 without a length, 413 too large, 503 no memory budget left.
        """
        length = request.content_length()
        if length is None:
            raise RequestError(411, "Content-Length is required")
        limit = self.limits.max_body_bytes
        if length > limit:
            raise RequestError(
                413, f"body of {length} bytes is over the limit of {limit} (--max-body-bytes)"
            )
        if self._buffered + length > self.limits.max_buffered_bytes:
            raise RequestError(503, "server busy receiving other bodies; retry")
        self._buffered += length
        conn.reserved += length
        if request.expects_continue:
            writer.write(http.CONTINUE)
        try:
            return await before(deadline, reader.readexactly(length))
        except asyncio.IncompleteReadError as e:
            raise RequestError(
                400, f"body ended after {len(e.partial)} of {length} bytes"
            ) from None

    async def _discard_body(self, request: Request, reader: asyncio.StreamReader,
                            deadline: float) -> bool:  # fmt: skip
        """Read and drop a body nobody asked for; False if it was left unread."""
        try:
            length = request.content_length()
        except HttpError:
            return False
        if not length:
            return True
        if length > self.limits.max_body_bytes:
            return False
        left = length
        while left:
            chunk = await before(deadline, reader.read(min(left, 65536)))
            if not chunk:
                return False
            left -= len(chunk)
        return True

    def _log(self, writer: asyncio.StreamWriter, request: Request | None, status: int,
             started: float) -> None:  # fmt: skip
        peer = (writer.get_extra_info("peername") or ("-",))[0]
        line = f"{request.method} {request.target[:200]}" if request else "(unparsed request)"
        ms = (time.perf_counter() - started) * 1000
        print(f'{peer} "{line}" {status} {ms:.1f}ms', file=sys.stderr, flush=True)


def _top_k(query: str) -> int | None:
    """``top_k`` from the query string (None when not given): plain ASCII digits only.

    Raises:
        RequestError: 400 for an unknown parameter or a value that is not an integer.
    """
    import re

    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - {"top_k"}
    if unknown:
        name = http.shown(sorted(unknown)[0], 40)
        raise RequestError(400, f"unknown query parameter {name}; use top_k")
    if "top_k" not in params:
        return None
    raw = params["top_k"][-1]
    if not re.match(_TOP_K, raw, flags=re.ASCII) or raw != raw.strip():
        raise RequestError(400, f"top_k must be an integer, got {raw[:20]!r}")
    return int(raw)


def make_server(
    service: ClassifierService,
    host: str,
    port: int,
    limits: Limits,
    access_log: bool = False,
    viewers: Viewers | None = None,
) -> ClassifierServer:
    """Bind a :class:`ClassifierServer` to ``host:port`` (0: any free port).

    Raises:
        ServeError: the host is unknown, the port taken or forbidden.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ServeError(f"cannot listen on {host!r}: {getattr(e, 'strerror', e)}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)  # bursts of clients connect at once; the kernel caps it (somaxconn)
    except OSError as e:
        sock.close()
        reason = {
            errno.EADDRINUSE: f"port {port} on {host} is already in use; stop the other "
            "server or pick another --port",
            errno.EACCES: f"not allowed to listen on port {port}; ports below 1024 need "
            "privileges, pick another --port",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
        }.get(e.errno or 0, f"cannot listen on {host}:{port}: {e.strerror or e}")
        raise ServeError(reason) from None
    sock.setblocking(False)
    return ClassifierServer(sock, service, limits, access_log, viewers)


def is_loopback(server: ClassifierServer) -> bool:
    """Whether only this machine can reach ``server``."""
    import ipaddress

    host = server.sock.getsockname()[0]
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    return False


def serve_until_signalled(
    server: ClassifierServer,
    grace: float = GRACE_SECONDS,
    on_started: Callable[[], None] | None = None,
    on_hangup: Callable[[], None] | None = None,
) -> str:
    """Serve until SIGTERM or SIGINT, then stop gracefully; the signal's name.

    SIGHUP calls ``on_hangup`` when given (serve reloads its model). Must run in the
    main thread (only it may install signal handlers).
    """
    received: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        if on_hangup is not None:
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
        if on_started is not None:
            loop.call_soon(on_started)
        try:
            await server.serve(stop, grace)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(main())
    finally:
        server.service.close()
        server.sock.close()
    return received[0] if received else "the server stopping"
