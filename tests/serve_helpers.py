"""Starting the real ``edgecnn serve`` in a subprocess on a free loopback port, and calling it."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
from PIL import Image

EDGECNN = [sys.executable, "-m", "edgecnn"]


@contextmanager
def running_server(model, *args, command=EDGECNN, startup_timeout=120, env=None):
    """``edgecnn serve MODEL --port 0 ARGS...``, up and healthy; SIGTERM at the end.

    ``model`` None serves the store's current model; ``env`` replaces the environment.
    Yields ``proc``, ``port``, ``banner`` (the startup line) and ``stderr()``.
    """
    given = [] if model is None else [str(model)]
    cmd = [*command, "serve", *given, "--port", "0", *[str(a) for a in args]]
    # stderr goes to a file, not a pipe: a full pipe would block the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

        kept = []  # what it wrote, kept once it has exited and the file is gone

        def stderr():
            if kept:
                return kept[0]
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
            banner = proc.stdout.readline() if ready else ""
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
            assert found, (banner, stderr())
            port = int(found.group(1))
            server = SimpleNamespace(proc=proc, port=port, banner=banner, stderr=stderr)
            deadline = time.monotonic() + startup_timeout
            while call(port, "GET", "/health")[0] != 200:
                assert time.monotonic() < deadline, stderr()
                time.sleep(0.05)
            yield server
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.stdout.close()
            kept.append(stderr())


def call(port, method, path, body=None, headers=None, conn=None):
    """One request; ``(status, JSON document or None, response)``. Reuses ``conn`` if given."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    document = json.loads(raw) if raw else None
    return response.status, document, response


def raw_exchange(port, data, wait=10.0):
    """Send raw bytes, read the whole reply (the server closes these connections)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header(descr, shape):
    """A version 1.0 ``.npy`` header claiming ``descr`` and ``shape``, with no data after it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def expected_reply(ranked):
    """The ``top_k`` list the server should send for ``Classifier.classify``'s answer."""
    return [{"label": label, "probability": p} for label, p in ranked]


def wait_until(condition, what, timeout=60.0):
    """Poll ``condition()`` until it is true; fail after ``timeout`` s (a bound, not a speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {timeout:g} s"
        time.sleep(0.02)


def simultaneous_requests(port, requests, timeout=120.0):
    """Connect one client per request, then send them all at once; each whole reply.

    A reply is the bytes read until the server closed the connection (the requests ask
    it to), or the name of the exception the client got.
    """
    replies = [None] * len(requests)
    ready = threading.Barrier(len(requests) + 1)  # and this thread

    def client(i):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                ready.wait(timeout)
                sock.sendall(requests[i])
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            replies[i] = b"".join(chunks)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            replies[i] = type(e).__name__
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.abort()

    threads = [
        threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(requests))
    ]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout)  # every client connected (or queued by the kernel)
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), f"clients still waiting after {timeout:g} s"
    return replies


def status_of(reply):
    """The status code of a raw reply, or what the client got instead of a status line."""
    if isinstance(reply, bytes) and reply.startswith(b"HTTP/1.1 "):
        return int(reply[9:12])
    return reply[:60] if isinstance(reply, bytes) else reply
