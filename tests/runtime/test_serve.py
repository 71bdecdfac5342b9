"""``edgecnn serve``: the real server in a subprocess, real models, real Fashion-MNIST images."""

import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from serve_helpers import (
    call,
    expected_reply,
    npy_bytes,
    png_bytes,
    raw_exchange,
    running_server,
    simultaneous_requests,
    status_of,
    wait_until,
)

from edgecnn.runtime import load_classifier

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny" / "model_float32.tflite"
MAX_BODY = 20_000


@pytest.fixture(scope="module")
def tiny_server():
    with running_server(TINY, "--threads", 2, "--max-body-bytes", MAX_BODY) as server:
        yield server


def test_classify_png_and_npy_like_the_api(tiny_server, test_images):
    clf = load_classifier(TINY, num_threads=1)
    conn = http.client.HTTPConnection("127.0.0.1", tiny_server.port, timeout=60)
    for image in test_images.x[:10]:
        for body, same in ((png_bytes(image), png_bytes(image)), (npy_bytes(image), image)):
            status, reply, response = call(0, "POST", "/classify?top_k=4", body, conn=conn)
            assert status == 200 and response.getheader("Content-Type") == "application/json"
            assert reply["top_k"] == expected_reply(clf.classify(same, top_k=4))
            assert (reply["label"], reply["confidence"]) == tuple(reply["top_k"][0].values())
            assert (reply["unknown"], reply["top_label"]) == (False, reply["label"])
            assert reply["model"] == "model_float32.tflite" and reply["backend"] == "litert"
            assert reply["latency_ms"] > 0
    status, reply, _ = call(tiny_server.port, "POST", "/classify", npy_bytes(test_images.x[0]))
    assert status == 200 and len(reply["top_k"]) == 3  # the default, as `edgecnn predict`


def test_health_and_metadata(tiny_server):
    status, health, _ = call(tiny_server.port, "GET", "/health")
    assert status == 200
    assert health["status"] == "ok" and health["model"] == "model_float32.tflite"
    assert health["workers"] == 2 and health["uptime_s"] > 0 and health["in_flight"] == 0
    before = health["requests_served"]
    assert call(tiny_server.port, "GET", "/health")[1]["requests_served"] == before + 1
    # The tiny files predate calibration: no temperature or threshold is in effect.
    in_effect = {"temperature": 1.0, "reject_below": None}
    assert health["confidence_in_effect"] == in_effect
    status, meta, _ = call(tiny_server.port, "GET", "/metadata")
    expected = {"model": "model_float32.tflite", "backend": "litert",
                "confidence_in_effect": in_effect}  # fmt: skip
    assert status == 200 and meta == {**expected, **load_classifier(TINY).metadata.to_dict()}
    assert meta["labels"][9] == "Ankle boot" and meta["input"]["shape"] == [28, 28, 1]
    assert meta["precision"] == "float32" and meta["edgecnn_version"]
    status, _, response = call(tiny_server.port, "HEAD", "/health")
    assert status == 200 and int(response.getheader("Content-Length")) > 0


def _huge_npy_header():
    """A valid header claiming 80 GB of float64, and no data: must not be allocated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)}
    )
    return header.getvalue()


PNG = (DATA / "ankle_boot.png").read_bytes()
BAD = {
    "empty": ("/classify", b"", {}, 400, "empty body"),
    "text": ("/classify", b"hello, world", {}, 415, "unsupported content"),
    "form": (
        "/classify",
        b"--x\r\nContent-Disposition: form-data; name=f\r\n\r\n" + PNG + b"\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"},
        415,
        "not a form",
    ),
    "truncated png": ("/classify", PNG[:60], {}, 400, "not a PNG, JPEG or BMP"),
    "jpeg magic only": ("/classify", b"\xff\xd8\xff" + b"\0" * 40, {}, 400, "not a PNG"),
    "too large": ("/classify", b"\x89PNG" + b"\0" * (MAX_BODY + 1), {}, 413, "--max-body-bytes"),
    "batch npy": ("/classify", npy_bytes(np.zeros((3, 28, 28), np.uint8)), {}, 400, "(3, 28, 28)"),
    "wrong shape": ("/classify", npy_bytes(np.zeros((5, 5), np.uint8)), {}, 400, "(5, 5)"),
    "out of range": ("/classify", npy_bytes(np.full((28, 28), 3.0)), {}, 400, "[0, 1]"),
    "nan": ("/classify", npy_bytes(np.full((28, 28), np.nan)), {}, 400, "NaN"),
    "strings npy": ("/classify", npy_bytes(np.array(["a"] * 784)), {}, 400, "not a plain number"),
    "pickled npy": ("/classify", npy_bytes(np.array([{}], dtype=object)), {}, 400, "object"),
    "huge npy header": ("/classify", _huge_npy_header(), {}, 400, "send one 28x28 image"),
    "truncated npy": ("/classify", npy_bytes(np.zeros((28, 28)))[:500], {}, 400, "truncated"),
    "npy magic only": ("/classify", b"\x93NUMPY", {}, 400, "not a readable .npy"),
    "top_k 0": ("/classify?top_k=0", PNG, {}, 400, "top_k must be in 1..10"),
    "top_k 11": ("/classify?top_k=11", PNG, {}, 400, "top_k must be in 1..10"),
    "top_k word": ("/classify?top_k=three", PNG, {}, 400, "integer"),
    "unknown parameter": ("/classify?topk=2", PNG, {}, 400, "unknown query parameter"),
    "unknown path": ("/predict", PNG, {}, 404, "no endpoint '/predict'; the endpoints are"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(tiny_server, case):
    path, body, headers, status, match = BAD[case]
    conn = http.client.HTTPConnection("127.0.0.1", tiny_server.port, timeout=60)
    got, reply, response = call(0, "POST", path, body, headers, conn=conn)
    assert got == status and match in reply["error"], reply
    assert set(reply) == {"error"} and response.getheader("Content-Type") == "application/json"
    if response.getheader("Connection") != "close":  # the same connection still works
        assert call(0, "POST", "/classify", PNG, conn=conn)[1]["label"] == "Ankle boot"
    assert call(tiny_server.port, "GET", "/health")[0] == 200


@pytest.mark.parametrize(
    "method,path,allow", [("GET", "/classify", "POST"), ("DELETE", "/health", "GET, HEAD")]
)
def test_wrong_method_is_405_with_allow(tiny_server, method, path, allow):
    status, reply, response = call(tiny_server.port, method, path, b"x")
    assert status == 405 and response.getheader("Allow") == allow and path in reply["error"]


@pytest.mark.parametrize(
    "request_bytes,status,match",
    [
        # Refused from the headers, without waiting for a gigabyte that never comes.
        (b"POST /classify HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n", 413, b"limit"),
        (
            b"POST /classify HTTP/1.1\r\nContent-Length: 1000000000\r\n"
            b"Expect: 100-continue\r\n\r\n",
            413,
            b"limit",
        ),
        (b"POST /classify HTTP/1.1\r\n\r\n", 411, b"Content-Length"),
        (b"POST /classify HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, b"chunk"),
        (b"POST /classify HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400, b"Content-Length"),
        (b"BREW /classify HTTP/1.1\r\n\r\n", 501, b"error"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b"error"),
    ],
)
def test_protocol_errors_are_json_too(tiny_server, request_bytes, status, match):
    reply = raw_exchange(tiny_server.port, request_bytes)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert b"application/json" in reply and match in reply.split(b"\r\n\r\n", 1)[1]
    assert call(tiny_server.port, "GET", "/health")[0] == 200


ENDPOINTS = "the endpoints are POST /classify, GET /health, GET /metadata"


@pytest.mark.parametrize(
    "target,status,match",
    [
        # Paths match exactly as sent: nothing a proxy might read differently is guessed.
        ("//health", 404, f"no endpoint '//health'; {ENDPOINTS}"),
        ("/health/", 404, f"no endpoint '/health/'; {ENDPOINTS}"),
        ("/%68ealth", 404, f"no endpoint '/%68ealth'; {ENDPOINTS}"),
        ("/", 404, f"no endpoint '/'; {ENDPOINTS}"),
        ("//", 404, f"no endpoint '//'; {ENDPOINTS}"),
        ("/" + "a" * 5000, 404, f"no endpoint '/{'a' * 79}...'; {ENDPOINTS}"),
        ("/health?x=1", 400, "unknown query parameter 'x'; /health takes none"),
        ("/metadata?format=json", 400, "unknown query parameter 'format'; /metadata takes none"),
        ("/health#top", 400, "#fragment"),
        ("*", 400, "bad request target '*'; expected a /path"),
        ("http://example.com", 404, f"no endpoint '/'; {ENDPOINTS}"),
        ("http://example.com//health", 404, f"no endpoint '//health'; {ENDPOINTS}"),
        ("/" + "a" * 9000, 414, "request line too long"),
    ],
)
def test_odd_paths_get_a_message_naming_the_path_and_the_endpoints(tiny_server, target, status,
                                                                    match):  # fmt: skip
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    reply = raw_exchange(tiny_server.port, request)
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert match in json.loads(body)["error"], body


@pytest.mark.parametrize("target", ["/health", "http://example.com/health", "/health?"])
def test_health_in_origin_or_absolute_form(tiny_server, target):
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    reply = raw_exchange(tiny_server.port, request)
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"status": "ok"' in reply, reply[:200]


def _assert_refused_for_room(reply):
    """A connection closed to make room is told so first: 503, Retry-After, close."""
    head = reply.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 503 "), reply[:200]
    assert b"\r\nRetry-After: 1\r\n" in head and b"\r\nConnection: close" in head
    assert b"server busy" in reply


def test_a_new_client_beyond_the_limit_replaces_the_longest_idle_connection():
    with running_server(TINY, "--max-connections", 2, "--threads", 1) as server:
        held = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=60) for _ in "ab"]
        for conn in held:  # two keep-alive connections: every slot taken, held[0] idle longest
            assert call(0, "GET", "/health", conn=conn)[0] == 200
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as third:
            third.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert third.recv(100).startswith(b"HTTP/1.1 200 ")
        reply = b""  # held[0] was answered 503 and closed to make room
        while chunk := held[0].sock.recv(65536):
            reply += chunk
        _assert_refused_for_room(reply)
        assert call(0, "GET", "/health", conn=held[1])[0] == 200


def test_300_simultaneous_clients_each_get_a_status_line_at_the_default_limit():
    # More complete requests at once than --max-connections (256): those beyond it wait
    # in the listen queue and are served when a slot frees; none is closed unanswered.
    requests = [
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /classify HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(PNG), PNG),
    ] * 150
    with running_server(TINY) as server:
        replies = simultaneous_requests(server.port, requests)
    statuses = [status_of(r) for r in replies]
    assert all(s in (200, 503) for s in statuses), [s for s in statuses if s not in (200, 503)]
    for reply in replies:
        if status_of(reply) == 503:
            _assert_refused_for_room(reply)


def test_beyond_a_small_limit_stalled_connections_give_way_with_a_503():
    # 4 slots: 4 silent connections and 4 that never finish their request hold them
    # (and wait in the listen queue); 40 complete requests come at once.
    with running_server(TINY, "--max-connections", 4, "--threads", 1) as server:
        stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=60)
                   for _ in range(8)]  # fmt: skip
        for sock in stalled[4:]:
            sock.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 1000\r\n\r\nxx")
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        replies = simultaneous_requests(server.port, [request] * 40)
        statuses = [status_of(r) for r in replies]
        assert all(s in (200, 503) for s in statuses), statuses
        for sock in stalled:  # each was answered 503 before it was closed, never just dropped
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            _assert_refused_for_room(reply)
            sock.close()
        health = call(server.port, "GET", "/health")[1]
    assert health["requests_served"] >= 48


def _classify_everywhere(port, bodies, expected, clients, requests):
    """``clients`` threads, each ``requests`` keep-alive requests; every failure, listed."""
    failures = []

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for j in range(requests):
            k = (c * requests + j) % len(bodies)
            try:
                status, reply, _ = call(0, "POST", "/classify", bodies[k], conn=conn)
                if status != 200 or reply["top_k"] != expected[k]:
                    failures.append((k, status, reply))
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failures.append((k, type(e).__name__, str(e)))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)  # generous: the machine may be busy; not a speed assertion
    assert not any(t.is_alive() for t in threads), "clients still running after 10 minutes"
    return failures


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.onnx"])
def test_8_concurrent_clients_x_250_requests_get_the_api_answers(test_images, name):
    model = DATA / "tiny" / name
    images = test_images.x[:200]
    clf = load_classifier(model, num_threads=1)  # what each server worker runs
    bodies = [png_bytes(x) for x in images] + [npy_bytes(x) for x in images]
    expected = [expected_reply(clf.classify(b)) for b in bodies[:200]]
    expected += [expected_reply(clf.classify(x)) for x in images]
    with running_server(model) as server:
        failures = _classify_everywhere(server.port, bodies, expected, clients=8, requests=250)
        assert failures == [], failures[:5]
        health = call(server.port, "GET", "/health")[1]
    assert health["classified"] == 2000 and health["errors"] == 0
    assert server.proc.returncode == 0, server.stderr()
    assert server.stderr() == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_finishes_the_request_in_flight_then_exits_0(sig):
    png = PNG
    with running_server(TINY) as server:
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        assert call(0, "GET", "/health", conn=idle)[0] == 200  # kept alive, idle
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        slow.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(png))
        slow.sendall(png[:100])  # the rest comes after the signal
        deadline = time.monotonic() + 60
        while call(server.port, "GET", "/health")[1]["in_flight"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.proc.send_signal(sig)

        def refused():
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=60).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, "refusing new connections")  # it is stopping
        slow.sendall(png[100:])
        reply = b""
        while chunk := slow.recv(65536):
            reply += chunk
        slow.close()
        head, body = reply.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
        assert b'"label": "Ankle boot"' in body
        server.proc.wait(timeout=30)  # promptly, though not timed to the millisecond
        out = server.proc.stdout.read()
    assert server.proc.returncode == 0, server.stderr()
    assert re.fullmatch(f"stopped on {sig.name} after \\d+ requests\n", out), out
    with pytest.raises(ConnectionError):
        call(server.port, "GET", "/health")


# The CLI registers every stage's commands, but only the runtime's modules do any work.
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "edgecnn.trainer.train", "edgecnn.export.exporter")
GUARD = (
    "import sys\n"
    "from edgecnn.cli import main\n"
    "sys.argv = ['edgecnn', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
    f"loaded = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
    "print('exit', code, 'loaded', loaded, flush=True)\n"
)


def test_serve_never_imports_tensorflow(test_images):
    with running_server(TINY, command=[sys.executable, "-c", GUARD]) as server:
        for body in (PNG, npy_bytes(test_images.x[0])):
            assert call(server.port, "POST", "/classify", body)[0] == 200
        assert call(server.port, "GET", "/metadata")[0] == 200
        server.proc.send_signal(signal.SIGTERM)
        out, _ = server.proc.communicate(timeout=30)
    assert out.strip().splitlines()[-1] == "exit 0 loaded []", out


def test_startup_prints_one_line_with_the_url(tiny_server):
    assert tiny_server.banner.count("\n") == 1
    assert f"http://127.0.0.1:{tiny_server.port}/" in tiny_server.banner
    assert "model_float32.tflite" in tiny_server.banner


def test_port_in_use_is_one_error_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(invoke("serve", TINY, "--port", port), "already in use")


@pytest.mark.parametrize(
    "args,match",
    [
        ([DATA / "missing.tflite"], "does not exist"),
        ([DATA / "ankle_boot.png"], "unknown model format"),
        ([TINY, "--threads", "0"], "--threads"),
        ([TINY, "--port", "70000"], "--port"),
        ([TINY, "--max-body-bytes", "0"], "--max-body-bytes"),
        ([TINY, "--backend", "onnxruntime"], "cannot run .tflite"),
        ([TINY, "--host", "203.0.113.7"], "not an address of this machine"),
    ],
)
def test_bad_options_are_one_error_line(args, match):
    assert_one_line_error(invoke("serve", *args), match)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize(
    "args",
    [
        ["serve", "/proc/self/mem"],
        ["predict", "/proc/self/mem", DATA / "ankle_boot.png"],
        ["predict", TINY, "/proc/self/mem"],  # predict used to print the path twice
    ],
    ids=["serve model", "predict model", "predict picture"],
)
def test_a_file_that_fails_to_read_is_named_once(args):
    # /proc/self/mem opens as a regular file and fails on its first read (EIO).
    result = invoke(*args)
    assert_one_line_error(result, "/proc/self/mem cannot be read: Input/output error")
    assert result.stderr.count("/proc/self/mem") == 1, result.stderr


def test_serve_subprocess_reports_bad_model_and_exits_2(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a model")
    done = subprocess.run(
        [sys.executable, "-m", "edgecnn", "serve", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
