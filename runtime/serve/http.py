"""The HTTP/1.1 that ``edgecnn serve`` speaks: request heads parsed strictly, replies built.

Replies are JSON, except the live view's page and pictures (:class:`Body`) and its
streams, which have no length and end with the connection (:func:`stream_head`).

Only what the service needs, and every ambiguity refused rather than guessed at (RFC
9112): a request with two different ``Content-Length`` values, or with both a length and
a ``Transfer-Encoding``, could be read one way here and another way by a proxy in front
(request smuggling), so it gets 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from edgecnn import __version__, _json

MAX_LINE_BYTES = 8192
MAX_HEAD_BYTES = 16384
MAX_HEADERS = 64
#: Methods HTTP defines; any other is 501, these get 404/405 where they don't apply.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_DIGITS = re.compile(r"[0-9]{1,18}")
JSON = "application/json"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class HttpError(Exception):
    """A request refused before it reaches a route: status, message, and whether to close."""

    def __init__(self, status: int, message: str, close: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


@dataclass
class Request:
    """One parsed request head (the body is read by the server, once it is accepted)."""

    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """The target's path as sent, without the query: never normalised.

        ``//health``, ``/health/`` and ``/%68ealth`` are not ``/health``: a path matches
        an endpoint exactly or not at all, so that no proxy in front can read a request
        as one endpoint and this server as another. An absolute-form target
        (``http://host/health``, RFC 9112 3.2.2) is the path of its URL.
        """
        return split_target(self.target)[0]

    @property
    def query(self) -> str:
        """The target's query string."""
        return split_target(self.target)[1]

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (several are joined with commas)."""
        values = self.headers.get(name.lower())
        return ", ".join(values) if values else None

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept open after the reply."""
        tokens = {t.strip().lower() for t in (self.header("Connection") or "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def expects_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending its body."""
        return (self.header("Expect") or "").strip().lower() == "100-continue"

    def content_length(self) -> int | None:
        """The declared body length; None when the request declares none.

        Raises:
            HttpError: 400 for a malformed or contradictory length, 411 for a chunked body.
        """
        lengths = self.headers.get("content-length", [])
        if "transfer-encoding" in self.headers:
            if lengths:
                raise HttpError(400, "both Content-Length and Transfer-Encoding: refused")
            raise HttpError(411, "chunked bodies are not accepted; send Content-Length")
        if not lengths:
            return None
        values = {v.strip() for value in lengths for v in value.split(",")}
        if len(values) != 1:
            raise HttpError(400, f"conflicting Content-Length values {sorted(values)}")
        (value,) = values
        if not _DIGITS.fullmatch(value):
            raise HttpError(400, f"bad Content-Length {value[:40]!r}")
        return int(value)


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of a request target in origin or absolute form."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query
    parts = urlsplit(target)
    return parts.path or "/", parts.query


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (``head`` ends with an empty line).

    Raises:
        HttpError: 400, 414, 431, 501 or 505 with a message saying what was wrong.
    """
    text = head.decode("latin-1")
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    request_line = lines[0]
    if len(request_line) > MAX_LINE_BYTES:
        raise HttpError(414, "request line too long")
    parts = request_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise HttpError(400, "bad request line; expected METHOD /path HTTP/1.1")
    method, target, version_text = parts
    version = _VERSION.fullmatch(version_text)
    if not _TOKEN.fullmatch(method) or version is None or _CONTROL.search(target):
        raise HttpError(400, "bad request line; expected METHOD /path HTTP/1.1")
    if version.group(1) != "1":
        raise HttpError(505, f"{version_text} is not supported; use HTTP/1.1")
    if method not in METHODS:
        raise HttpError(501, f"method {method} is not implemented")
    if not (target.startswith("/") or target.startswith(("http://", "https://"))):
        raise HttpError(400, f"bad request target {shown(target, 60)}; expected a /path")
    if "#" in target:  # a fragment stays with the client (RFC 9112 3.2)
        raise HttpError(400, f"bad request target {shown(target, 60)}: it has a #fragment")
    request = Request(method, target, (1, int(version.group(2))))
    header_lines = [line for line in lines[1:] if line]
    if len(header_lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    for line in header_lines:
        if line[0] in " \t":
            raise HttpError(400, "folded header lines are not accepted")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {line[:60]!r}")
        value = value.strip(" \t")
        if _CONTROL.search(value):
            raise HttpError(400, f"control characters in header {name}")
        request.headers.setdefault(name.lower(), []).append(value)
    return request


@dataclass(frozen=True)
class Body:
    """A reply body that is not JSON: a page or a picture."""

    content_type: str
    data: bytes


def reply(
    status: int,
    document: object,
    *,
    head_only: bool = False,
    close: bool = False,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A complete response: status line, headers and a body.

    The body is ``document`` as JSON (strict: no NaN), or its bytes if it is a :class:`Body`.
    """
    if isinstance(document, Body):
        body, content_type = document.data, document.content_type
    else:
        body, content_type = (_json.dumps(document, indent=None) + "\n").encode(), JSON
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        f"Server: edgecnn/{__version__}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (extra or {}).items()),
    ]
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def stream_head(content_type: str) -> bytes:
    """The head of a response that goes on until the connection closes (no length)."""
    lines = [
        "HTTP/1.1 200 OK",
        f"Server: edgecnn/{__version__}",
        f"Content-Type: {content_type}",
        "Cache-Control: no-store",
        "X-Accel-Buffering: no",  # a proxy in front must pass events on, not hold them
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
