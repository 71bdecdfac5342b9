"""``edgecnn serve`` against slow, idle, greedy and malformed clients, on loopback.

Every test is bounded in time, with wide margins; none asserts a speed (that belongs
in bench/), and none sleeps to order events: each waits, bounded, for a state.
"""

import contextlib
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import call, npy_header, raw_exchange, running_server, status_of, wait_until

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny" / "model_float32.tflite"
PNG = (DATA / "ankle_boot.png").read_bytes()


def _health(port, tries=20):
    """``GET /health`` on a new connection (a generous timeout): its status and document.

    A 503 (server busy: this client's slot was taken while it was slow to send, as can
    happen on a loaded machine) is retried, a bounded number of times.
    """
    for _ in range(tries):
        status, document, response = call(port, "GET", "/health")
        if status != 503:
            break
        assert response.getheader("Retry-After") == "1", document
    return status, document


def _read_until_closed_or_quiet(socks, quiet=5.0):
    """Each socket's bytes until the server closed it; None for one still open and silent."""
    import select

    out = {}
    for sock in socks:
        data = b""
        while True:
            ready, _, _ = select.select([sock], [], [], quiet)
            if not ready:
                out[sock] = data or None
                break
            try:
                chunk = sock.recv(65536)
            except ConnectionError as e:
                out[sock] = data or type(e).__name__
                break
            if not chunk:
                out[sock] = data
                break
            data += chunk
    return out


def test_slow_and_idle_clients_never_keep_health_from_answering():
    with running_server(TINY) as server:
        port = server.port
        # 300 connections that send nothing: more than --max-connections (256).
        idle = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(300)]
        # 16 that trickle a request head, a byte every half second.
        trickling, stop = [], threading.Event()
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            trickling.append(sock)

        def trickle() -> None:
            while not stop.is_set():
                for sock in trickling:
                    with contextlib.suppress(OSError):
                        sock.send(b"G")
                stop.wait(0.5)  # the pace of a slow client, not an ordering

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        try:
            # Each waits its turn behind the queued connections, then is answered.
            answers = [_health(port) for _ in range(10)]
            assert all(a[0] == 200 and a[1]["status"] == "ok" for a in answers), answers
        finally:
            stop.set()
            feeder.join(timeout=60)
        # Each connection the server closed was told why, unless it never sent a byte
        # and reached the idle timeout.
        replies = _read_until_closed_or_quiet(idle + trickling, quiet=0.01)
        for sock in idle + trickling:
            sock.close()
    silent = [replies[s] for s in idle if replies[s] is not None]
    assert silent and all(r == b"" or status_of(r) == 503 for r in silent), silent[:3]
    slow = [replies[s] for s in trickling if replies[s] is not None]
    assert all(status_of(r) in (503, 408) for r in slow), slow[:3]


def test_a_request_must_arrive_within_the_deadline():
    with running_server(TINY, "--request-timeout", "1") as server:
        start = time.monotonic()  # before the server can have accepted the connection
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(PNG))
            for byte in PNG[:20]:  # a byte every 0.2 s: far too slow
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.2)  # the pace of a slow client, not an ordering
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            elapsed = time.monotonic() - start
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:100]
        # Not before its deadline (the upper bound is the socket's timeout).
        assert b"within 1 s" in reply and elapsed >= 0.9
        assert call(server.port, "GET", "/health")[0] == 200


def test_bodies_being_received_share_one_memory_budget():
    args = ["--max-body-bytes", 60_000, "--max-buffered-bytes", 100_000]
    with running_server(TINY, *args) as server:
        first = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        first.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 60000\r\n\r\n" + PNG[:100])
        # Its head arrived, so its 60,000 bytes are reserved while the body arrives.
        wait_until(lambda: _in_flight(server.port) == 1, "receiving the first body")
        second = raw_exchange(
            server.port, b"POST /classify HTTP/1.1\r\nContent-Length: 60000\r\n\r\n" + PNG[:100]
        )
        assert second.startswith(b"HTTP/1.1 503 "), second[:100]
        first.close()
        wait_until(lambda: _in_flight(server.port) == 0, "done with the first body")
        assert call(server.port, "POST", "/classify", PNG)[0] == 200  # released again


def _in_flight(port):
    return call(port, "GET", "/health")[1]["in_flight"]


def _worst_png() -> bytes:
    """A 4096x4096 RGBA PNG: the most memory a picture under the pixel limit takes."""
    buffer = io.BytesIO()
    Image.new("RGBA", (4096, 4096), (200, 200, 200, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def _rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_concurrent_huge_pictures_stay_within_the_decode_budget():
    worst = _worst_png()
    args = ["--threads", "2", "--max-body-bytes", len(worst) + 1]
    with running_server(TINY, *args) as server:
        before = _rss_mb(server.proc.pid)
        replies = []

        def post() -> None:
            replies.append(call(server.port, "POST", "/classify", worst)[0])

        posts = [threading.Thread(target=post) for _ in range(4)]
        for t in posts:
            t.start()
        answered = [_health(server.port)[0]]  # the loop answers while the workers decode
        while any(t.is_alive() for t in posts) and len(answered) < 100:
            answered.append(_health(server.port)[0])
        for t in posts:
            t.join(timeout=120)
        grown = _rss_mb(server.proc.pid) - before
    assert set(answered) == {200} and replies == [200] * 4
    # Two workers decode at once, each about twice the picture's 64 MB at its peak.
    assert grown < 350, f"server grew {grown:.0f} MB"


# -- HTTP details ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes,status,match",
    [
        (
            b"POST /classify HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            400,
            b"conflicting Content-Length",
        ),
        (
            b"POST /classify HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello",
            400,
            b"conflicting Content-Length",
        ),
        (
            b"POST /classify HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            b"both Content-Length and Transfer-Encoding",
        ),
        (b"GET /health HTTP/1.1\r\nX-A: 1\r\n b\r\n\r\n", 400, b"folded"),
        (b"GET /health HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400, b"malformed header"),
        (b"GET /health HTTP/2.0\r\n\r\n", 505, b"HTTP/2.0"),
        (b"GET /health HTTP/1.1\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n", 431, b"large"),
    ],
)
def test_ambiguous_or_malformed_requests_are_refused(request_bytes, status, match):
    with running_server(TINY) as server:
        reply = raw_exchange(server.port, request_bytes)
        assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
        assert match in reply and b"application/json" in reply
        assert call(server.port, "GET", "/health")[0] == 200


def test_equal_duplicate_lengths_are_one_length():
    with running_server(TINY) as server:
        head = b"POST /classify HTTP/1.1\r\nContent-Length: %d\r\nContent-Length: %d\r\n" % (
            len(PNG),
            len(PNG),
        )
        reply = raw_exchange(server.port, head + b"Connection: close\r\n\r\n" + PNG)
        assert reply.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "body",
    [
        npy_header("<f4", (2**32, 2**32, 0)),
        npy_header("<f4", (2**62 + 196, 4)) + b"\0" * 3136,
        npy_header("|V0", (28, 28)),
        npy_header("|S0", (28, 28)),
        npy_header("<U0", (28, 28)),
        npy_header("<m8", (28, 28)) + b"\0" * 6272,
        npy_header("<c8", (28, 28)) + b"\0" * 6272,
    ],
    ids=["empty-giant", "wrapping", "V0", "S0", "U0", "timedelta", "complex"],
)
def test_hostile_npy_bodies_are_400(body):
    with running_server(TINY) as server:
        status, reply, _ = call(server.port, "POST", "/classify", body)
        assert status == 400 and "npy" in reply["error"], reply


@pytest.mark.parametrize("value", ["%203", "%D9%A3", "3.0", "-1", "%2B3"])
def test_top_k_must_be_plain_ascii_digits(value):
    with running_server(TINY) as server:
        status, reply, _ = call(server.port, "POST", f"/classify?top_k={value}", PNG)
        assert status == 400 and "top_k" in reply["error"], reply


def test_error_replies_never_show_memory_addresses():
    with running_server(TINY) as server:
        status, reply, _ = call(server.port, "POST", "/classify", b"\x89PNG\r\n\x1a\n" + b"x" * 50)
        assert status == 400 and "0x" not in reply["error"] and "object at" not in reply["error"]


def test_listening_on_every_interface_warns():
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "serve", str(TINY), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = proc.stdout.readline()
        assert "http://0.0.0.0:" in banner
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert err.startswith("warning: listening on 0.0.0.0") and "authentication" in err
    assert proc.returncode == 0


def test_a_model_computing_nan_gets_500_json(exported, tmp_path):
    import keras

    # Every weight of conv1's first filter 3e38: a blank image (the server's warm-up)
    # still computes zeros, any real picture overflows to infinity (two bright pixels
    # under the filter are enough), then NaN. One weight alone is not enough: whether its
    # product overflows later depends on the trained weights' signs.
    model = keras.models.load_model(exported.model_path)
    kernel = model.get_layer("conv1").get_weights()[0].astype(np.float32)
    block = np.ascontiguousarray(kernel[:, :, :, 0]).tobytes()  # TFLite's OHWI: one run
    data = (exported.out / "model_float32.tflite").read_bytes()
    assert data.count(block) == 1
    at = data.index(block)
    big = np.full(kernel.shape[:3], 3e38, np.float32).tobytes()
    (tmp_path / "nan.tflite").write_bytes(data[:at] + big + data[at + len(block) :])
    with running_server(tmp_path / "nan.tflite", "--no-integrity-check") as server:
        response = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        response.request("POST", "/classify", PNG)
        reply = response.getresponse()
        raw = reply.read()
        assert reply.status == 500
        document = json.loads(raw)  # strict JSON: no bare NaN anywhere
        assert "NaN or infinity" in document["error"] and b"NaN," not in raw
