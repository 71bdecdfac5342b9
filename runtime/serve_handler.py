"""One HTTP connection of ``edgecnn serve``: routes, bodies, and JSON replies for everything.

Every answer, the standard library's own protocol errors included, is a JSON document;
every refusal is ``{"error": "..."}`` with a 4xx status, and the connection stays usable
unless its body could not be read.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import time
import traceback
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from edgecnn import __version__
from edgecnn.runtime.errors import InputError, ModelError
from edgecnn.runtime.service import RequestError

if TYPE_CHECKING:
    from edgecnn.runtime.serve import ClassifierServer

#: Methods each endpoint answers.
ROUTES: dict[str, tuple[str, ...]] = {
    "/classify": ("POST",),
    "/health": ("GET", "HEAD"),
    "/metadata": ("GET", "HEAD"),
}
#: An idle keep-alive connection, or a client that stops sending, is dropped after this.
IDLE_TIMEOUT = 30.0
#: After refusing a body unread, keep reading (and dropping) it this long before closing,
#: so that the client reads the refusal instead of a connection reset.
LINGER_SECONDS = 2.0
_CHUNK = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers ``POST /classify``, ``GET /health`` and ``GET /metadata`` on one connection."""

    server: ClassifierServer
    protocol_version = "HTTP/1.1"  # keep-alive: an IoT device reuses one connection
    server_version = f"edgecnn/{__version__}"
    disable_nagle_algorithm = True  # a reply is two writes; Nagle would hold the second
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:  # noqa: D102
        super().setup()
        self._unread = self._started = False

    def handle_one_request(self) -> None:  # noqa: D102
        if not self.server.wait_for_request(self.connection):
            self.close_connection = True
            return
        self._started = False
        try:
            super().handle_one_request()
        finally:
            if self._started:
                self.server.request_done()

    def parse_request(self) -> bool:  # noqa: D102
        self.server.request_started(self.connection)
        self._unread, self._started = False, True
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (curl asks above 1 MB)."""
        try:
            self._content_length(required=False)
        except RequestError as e:
            self._unread = True
            self._reply(e.status, {"error": str(e)})
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:  # noqa: D102
        self._route()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def _route(self) -> None:
        url = urlsplit(self.path)
        allowed = ROUTES.get(url.path)
        try:
            if allowed is None or self.command not in allowed:
                self._discard_body()
                if allowed is None:
                    raise RequestError(404, f"no endpoint {url.path}; {_endpoints()}")
                raise RequestError(405, f"{url.path} takes {' or '.join(allowed)}")
            if url.path == "/classify":
                document = self._classify(url.query)
            else:
                self._discard_body()
                service = self.server.service
                document = self._health() if url.path == "/health" else service.metadata()
        except RequestError as e:
            headers = {"Allow": ", ".join(allowed)} if e.status == 405 and allowed else {}
            self._reply(e.status, {"error": str(e)}, headers)
        except InputError as e:
            self._reply(400, {"error": str(e)})
        except ModelError as e:
            self._reply(500, {"error": str(e)})
        except (ConnectionError, TimeoutError):
            raise
        except Exception as e:
            print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            if os.environ.get("EDGECNN_DEBUG"):
                traceback.print_exc()
            self._reply(500, {"error": f"internal error ({type(e).__name__})"})
        else:
            self._reply(200, document, classified=url.path == "/classify")

    def _health(self) -> dict[str, Any]:
        status = "stopping" if self.server.stopping else "ok"
        # Not counting this request itself.
        return {**self.server.service.health(status), "in_flight": self.server.in_flight - 1}

    def _classify(self, query: str) -> dict[str, Any]:
        body = self._read_body()
        params = parse_qs(query, keep_blank_values=True)
        unknown = set(params) - {"top_k"}
        if unknown:
            raise RequestError(400, f"unknown query parameter {sorted(unknown)[0]!r}; use top_k")
        raw = params.get("top_k", ["3"])[-1]
        try:
            top_k = int(raw)
        except ValueError:
            raise RequestError(400, f"top_k must be an integer, got {raw!r}") from None
        content_type = self.headers.get("Content-Type", "")
        return self.server.service.classify(body, top_k, content_type)

    def _content_length(self, required: bool = True) -> int:
        """The declared body length, refused if unusable or above the limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "chunked bodies are not accepted; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            if required:
                raise RequestError(411, "Content-Length is required")
            return 0
        if not raw.strip().isdigit():
            raise RequestError(400, f"bad Content-Length {raw!r}")
        length, limit = int(raw), self.server.max_body_bytes
        if length > limit:
            raise RequestError(
                413, f"body of {length} bytes is over the limit of {limit} (--max-body-bytes)"
            )
        return length

    def _read_body(self) -> bytes:
        self._unread = True
        length = self._content_length()
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(400, f"body ended after {len(body)} of {length} bytes")
        self._unread = False
        return body

    def _discard_body(self) -> None:
        """Read and drop a body nobody asked for, so that the connection can be reused.

        One too large, or of unknown length, is left unread, and the connection closed.
        """
        self._unread = True
        try:
            left = self._content_length(required=False)
        except RequestError:
            return
        while left:
            chunk = self.rfile.read(min(left, _CHUNK))
            if not chunk:
                return
            left -= len(chunk)
        self._unread = False

    def _reply(
        self,
        status: int,
        document: Any,
        headers: dict[str, str] | None = None,
        classified: bool = False,
    ) -> None:
        body = (json.dumps(document) + "\n").encode()
        close = self._unread or self.server.stopping or self.close_connection
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.service.counters.count(status, classified)
        if self._unread:
            self._linger()

    def _linger(self) -> None:
        """Half-close, then drop what the client still sends, for :data:`LINGER_SECONDS`."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            buffer = bytearray(_CHUNK)
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv_into(buffer):
                    break
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's protocol errors (bad request line, 414, 501...), as JSON."""
        if self.request_version == "HTTP/0.9":  # garbage, not 1991: give it a status line
            self.request_version = self.protocol_version
        self.close_connection = True
        self._reply(int(code), {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: D102
        if self.server.access_log:
            super().log_message(format, *args)


def _endpoints() -> str:
    return ", ".join(f"{methods[0]} {path}" for path, methods in ROUTES.items())
