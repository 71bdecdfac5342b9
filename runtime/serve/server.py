"""``edgecnn serve``'s HTTP server: the standard library's, bounded, and stopped gracefully.

One thread per open connection reads requests and writes replies; the classifying is done
by :class:`~edgecnn.runtime.service.ClassifierService`'s fixed pool of workers. Memory
stays bounded however many clients call: at most ``max_connections`` connections are
open (the rest wait in the listen backlog), each holding at most one body of
``max_body_bytes``, and at most ``workers`` pictures are decoded at once.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from typing import Any

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.serve_handler import Handler
from edgecnn.runtime.service import ClassifierService

#: Seconds in-flight requests get to finish after SIGTERM before the process exits anyway.
GRACE_SECONDS = 10.0


class ServeError(EdgecnnError):
    """The server cannot start: the address is taken, forbidden or unknown."""


class ClassifierServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threading HTTP server with a cap on open connections and a graceful :meth:`stop`."""

    daemon_threads = True
    # Bursts of clients connect at once; the default backlog of 5 makes the rest retry
    # their SYN a second later.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[Any, ...],
        family: socket.AddressFamily,
        service: ClassifierService,
        max_connections: int,
        max_body_bytes: int,
        access_log: bool = False,
    ) -> None:
        self.address_family = family
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.stopping = False
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Condition()
        self._open = 0
        self._busy = 0
        self._idle: set[socket.socket] = set()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup, which can stall a device offline."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        """``http://host:port/`` of the listening socket (the real port if 0 was asked)."""
        host = self.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.server_address[1]}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a connection's thread once a slot is free; until then stop accepting."""
        while not self._slots.acquire(timeout=0.2):
            if self.stopping:
                self.shutdown_request(request)
                return
        with self._lock:
            self._open += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:  # noqa: D102
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._lock:
            self._open -= 1
            self._lock.notify_all()
        self._slots.release()

    def wait_for_request(self, conn: socket.socket) -> bool:
        """Mark ``conn`` idle between requests; False if the server is stopping."""
        with self._lock:
            if self.stopping:
                return False
            self._idle.add(conn)
            return True

    def request_started(self, conn: socket.socket) -> None:
        """Mark ``conn`` busy: a request line has arrived, and it will be answered."""
        with self._lock:
            self._idle.discard(conn)
            self._busy += 1

    def request_done(self) -> None:
        """A request started on some connection has been answered (or abandoned)."""
        with self._lock:
            self._busy -= 1

    @property
    def in_flight(self) -> int:
        """Requests being handled now: read, queued, classified or answered."""
        return self._busy

    def _wake_idle(self) -> None:
        # An idle keep-alive connection is blocked reading the next request line:
        # shutting its read side ends that read, and its thread closes it.
        for conn in self._idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        self._idle.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is not worth a traceback; anything else gets one line."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(f"error: unexpected {type(error).__name__}: {error}", file=sys.stderr)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish."""
        with self._lock:
            self.stopping = True
            self._wake_idle()
        self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace
        with self._lock:
            self._wake_idle()
            while self._open and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
        self.service.close()


def make_server(
    service: ClassifierService,
    host: str,
    port: int,
    max_connections: int,
    max_body_bytes: int,
    access_log: bool = False,
) -> ClassifierServer:
    """Bind a :class:`ClassifierServer` to ``host:port`` (0: any free port).

    Raises:
        ServeError: the host is unknown, the port taken or forbidden.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot listen on {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    try:
        return ClassifierServer(
            address, family, service, max_connections, max_body_bytes, access_log
        )
    except OSError as e:
        reason = {
            errno.EADDRINUSE: f"port {port} on {host} is already in use; stop the other "
            "server or pick another --port",
            errno.EACCES: f"not allowed to listen on port {port}; ports below 1024 need "
            "privileges, pick another --port",
            errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
        }.get(e.errno or 0, f"cannot listen on {host}:{port}: {e.strerror or e}")
        raise ServeError(reason) from None


def serve_until_signalled(server: ClassifierServer, grace: float = GRACE_SECONDS) -> str:
    """Serve until SIGTERM or SIGINT, then stop gracefully; the signal's name.

    Must run in the main thread (only it may install signal handlers). The accept loop
    runs in a thread of its own because ``shutdown`` cannot be called from inside it.
    """
    received: list[str] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    stop_signals = [signal.SIGINT, signal.SIGTERM] if os.name == "posix" else [signal.SIGINT]
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    loop = threading.Thread(target=server.serve_forever, name="edgecnn-accept", daemon=True)
    loop.start()
    try:
        while not stop.wait(0.5) and loop.is_alive():
            pass
    finally:
        server.stop(grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else "the accept loop ending"
