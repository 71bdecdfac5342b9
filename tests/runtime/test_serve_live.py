"""``edgecnn serve --source``: the real server on a real video of Fashion-MNIST pictures.

The video (H.264, 30 fps) shows each picture for a second and loops; the server plays it
at its own speed. The label stream, the latest frame, the viewer cap, bad sources, and
the page itself in Debian's Chromium (through playwright, as tests/test_report_browser.py
drives it) are checked against what the video shows.
"""

import contextlib
import http.client
import io
import json
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from browser_helpers import chromium_context
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from serve_helpers import call, png_bytes, running_server, wait_until
from shared import TINY
from video_files import HEIGHT, WIDTH, distinct_pictures, make_video

from edgecnn.runtime import load_classifier

MODEL = TINY / "model_int8.tflite"
PICTURES = 4
HOLD = 30  # a second each at 30 fps
MAX_VIEWERS = 3
#: Seconds a stream or a browser may take to show something, at most (a bound, not a speed).
DEADLINE = 30


@pytest.fixture(scope="module")
def chosen(test_images):
    """Test images of distinct classes the tiny model gets right with >= 0.95."""
    classifier = load_classifier(MODEL)
    x, y = test_images.x[:2000], test_images.y[:2000]
    return distinct_pictures(classifier, x, y, PICTURES, 0.95)


@pytest.fixture(scope="module")
def video(chosen, tmp_path_factory):
    pictures, _ = chosen
    return make_video(tmp_path_factory.mktemp("live") / "clothes.mp4", pictures, HOLD)


@pytest.fixture(scope="module")
def live_server(video):
    args = ("--source", video.path, "--max-viewers", MAX_VIEWERS, "--threads", 1)
    with running_server(MODEL, *args) as server:
        yield server


class EventStream:
    """A client of ``/events``: the status, then ``(name, data)`` events as they come."""

    def __init__(self, port, timeout=DEADLINE):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", "/events")
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def events(self):
        name, data = None, None
        for raw in self.response.fp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif not line and name is not None:
                yield name, data
                name, data = None, None

    def close(self):
        self.response.close()  # its file holds the socket open, else
        self.conn.close()


def test_events_follow_the_video(live_server, video, chosen):
    _, labels = chosen
    frames = PICTURES * HOLD
    stream = EventStream(live_server.port)
    assert stream.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    results, changes, states = [], [], []
    deadline = time.monotonic() + DEADLINE
    try:
        for name, data in stream.events():
            {"result": results, "change": changes, "state": states}[name].append(data)
            if len({c["label"] for c in changes}) >= 3 or time.monotonic() > deadline:
                break
    finally:
        stream.close()
    assert states and states[0]["state"] in ("starting", "playing")
    assert any(s["state"] == "playing" for s in states)
    # Each result is the picture its frame shows (the file loops: frame numbers go on).
    expected = [labels[(r["frame"] % frames) // HOLD] for r in results]
    agree = sum(r["label"] == e for r, e in zip(results, expected, strict=True))
    assert agree >= 0.95 * len(results), list(zip(results, expected, strict=True))[:20]
    assert all(set(r) >= {"frame", "time", "label", "confidence", "top_k"} for r in results)
    # At most 10 results a second reach a viewer, however fast the source.
    span = results[-1]["time"] - results[0]["time"]
    assert len(results) <= 10 * span + 5
    # The stable label changes as the pictures change, in the video's order.
    seen = [c["label"] for c in changes]
    assert len(set(seen)) >= 3, changes
    for before, after in zip(seen, seen[1:], strict=False):
        assert labels.index(after) == (labels.index(before) + 1) % PICTURES, seen


def test_frame_is_a_jpeg_of_the_video_with_the_crop_box(live_server, chosen):
    status, response, data = _get(live_server.port, "/live/frame.jpg?t=1")
    assert status == 200
    assert response.getheader("Content-Type") == "image/jpeg"
    assert response.getheader("Cache-Control") == "no-store"
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert image.shape == (HEIGHT, WIDTH, 3)
    left = (WIDTH - HEIGHT) // 2  # the centred square: x from 80 to 559, every row
    for x, y in ((left + 1, HEIGHT // 2), (left + HEIGHT - 2, HEIGHT // 3), (WIDTH // 2, 1)):
        r, g, b = image[y, x]
        assert r > 180 and g < 130 and b < 100, (x, y, image[y, x])
    # Outside the box the frame is the video's black border.
    assert image[HEIGHT // 2, 20].max() < 40 and image[HEIGHT // 2, WIDTH - 20].max() < 40


def test_classify_and_health_still_work_with_a_source(live_server, test_images):
    clf = load_classifier(MODEL)
    image = test_images.x[0]
    status, reply, _ = call(live_server.port, "POST", "/classify", png_bytes(image))
    assert status == 200 and reply["label"] == clf.classify(image)[0][0]
    status, health, _ = call(live_server.port, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["source"]["state"] == "playing" and health["source"]["frames"] > 0
    status, response, page = _get(live_server.port, "/live")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert b'name="viewport"' in page and b"EventSource" in page
    assert call(live_server.port, "GET", "/live?x=1")[0] == 400
    assert call(live_server.port, "POST", "/events")[0] == 405


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/events", "text/event-stream"), ("/live/stream.mjpg", "multipart/x-mixed-replace")],
)
def test_head_of_a_live_stream_is_its_head(live_server, path, content_type):
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=DEADLINE)
    try:
        conn.request("HEAD", path)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith(content_type)
        assert response.read() == b""
    finally:
        conn.close()
    wait_until(lambda: _viewers(live_server.port) == 0, "no viewer counted", DEADLINE)


def test_viewers_are_capped_and_freed(live_server):
    streams = [EventStream(live_server.port) for _ in range(MAX_VIEWERS)]
    try:
        assert [s.status for s in streams] == [200] * MAX_VIEWERS
        status, reply, response = call(live_server.port, "GET", "/events")
        assert status == 503 and "viewers" in reply["error"]
        assert response.getheader("Retry-After")
        status, _, _ = _get(live_server.port, "/live/stream.mjpg")
        assert status == 503
        # Short requests are not viewers: they are still answered.
        assert call(live_server.port, "GET", "/health")[0] == 200
        assert _get(live_server.port, "/live/frame.jpg")[0] == 200
    finally:
        for s in streams:
            s.close()
    wait_until(lambda: _viewers(live_server.port) == 0, "freed", DEADLINE)
    mjpeg = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=DEADLINE)
    try:
        mjpeg.request("GET", "/live/stream.mjpg")
        response = mjpeg.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        part = response.fp.read(60000)
        assert b"Content-Type: image/jpeg" in part and b"\xff\xd8\xff" in part
        response.close()
    finally:
        mjpeg.close()


def test_viewers_never_take_the_connections_requests_need(video):
    """Viewers hold their connections; requests must still get one when all are taken."""
    args = ("--source", video.path, "--max-connections", 3, "--threads", 1)
    with running_server(MODEL, *args) as server:
        assert _health(server.port)["source"]["state"] in ("starting", "playing")
        viewer = EventStream(server.port)  # the default cap here: 3 // 2 = 1 viewer
        try:
            assert viewer.status == 200
            assert call(server.port, "GET", "/events")[0] == 503
            for _ in range(5):
                assert call(server.port, "GET", "/health")[0] == 200
            status, _, _ = call(server.port, "POST", "/classify", png_bytes(video.pictures[0]))
            assert status == 200
        finally:
            viewer.close()


def test_a_viewer_that_never_reads_is_not_buffered_for(live_server):
    """A client that asks for the MJPEG stream and reads nothing: frames are skipped for it."""
    skips = _health(live_server.port)["source"]["viewer_skips"]
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /live/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        # Once the kernel's buffers are full, what would be written is skipped, not queued.
        wait_until(lambda: _health(live_server.port)["source"]["viewer_skips"] > skips + 5,
                   "skipping frames for the silent viewer", 2 * DEADLINE)  # fmt: skip
        assert call(live_server.port, "GET", "/health")[0] == 200
        assert _get(live_server.port, "/live/frame.jpg")[0] == 200


class MjpegOnce:
    """An HTTP MJPEG stream on loopback that sends an AVI's JPEG frames once, then ends."""

    def __init__(self, path):
        import http.server

        import av

        with av.open(str(path)) as container:
            jpegs = [bytes(p) for p in container.demux(video=0) if p.size]
        owner = self
        self.connections = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for jpeg in jpegs:
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                        self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        time.sleep(0.01)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_password_in_the_source_is_never_shown(video, tmp_path):
    avi = make_video(tmp_path / "clothes.avi", video.pictures, 5)
    with MjpegOnce(avi.path) as source:
        url = source.url.replace("http://", "http://viewer:secret@")
        with running_server(MODEL, "--source", url, "--threads", 1) as server:
            # The first opening proves the source at startup; the third is a reconnection.
            wait_until(lambda: source.connections >= 3, "reconnected", DEADLINE)
            health = _health(server.port)
            page = _get(server.port, "/live")[2]
            stream = EventStream(server.port)
            try:
                name, state = next(stream.events())
            finally:
                stream.close()
            logged = server.stderr()
    assert name == "state" and state["source"] == source.url.replace("http://", "http://viewer@")
    assert health["source"]["source"] == state["source"]
    assert "the stream ended; trying again" in logged
    for shown in (json.dumps(health), json.dumps(state), page.decode(), logged):
        assert "secret" not in shown


def test_a_network_stream_that_ends_is_reconnected_and_shown_so(video, tmp_path):
    avi = make_video(tmp_path / "clothes.avi", video.pictures, 5)
    with (
        MjpegOnce(avi.path) as source,
        running_server(MODEL, "--source", source.url, "--threads", 1) as server,
    ):
        states = set()

        def reconnecting():
            health = _health(server.port)["source"]
            states.add(health["state"])
            return health["state"] == "reconnecting" and "trying again" in health["message"]

        wait_until(reconnecting, "reconnecting", DEADLINE)
        # The page's source is reopened; meanwhile /classify answers as ever.
        status, reply, _ = call(server.port, "POST", "/classify", png_bytes(video.pictures[0]))
        assert status == 200 and reply["label"]
        wait_until(lambda: source.connections >= 3, "reopened", DEADLINE)
        assert "playing" in states or _health(server.port)["source"]["frames"] > 0
        assert "the stream ended; trying again" in server.stderr()


def test_without_a_source_there_is_no_live_page(tiny):
    with running_server(MODEL, "--threads", 1) as server:
        for path in ("/live", "/events", "/live/frame.jpg"):
            status, reply, _ = call(server.port, "GET", path)
            assert status == 404 and "/live" not in reply["error"].split("are")[-1]


def test_bad_sources_are_one_line(tmp_path, video):
    assert_one_line_error(invoke("serve", MODEL, "--source", tmp_path / "missing.mp4"),
                          "missing.mp4")  # fmt: skip
    assert_one_line_error(invoke("serve", MODEL, "--source", "/dev/video97"), "no camera")
    assert_one_line_error(invoke("serve", MODEL, "--source", tmp_path / "a.png"), "not a video")
    not_video = tmp_path / "text.mp4"
    not_video.write_text("not a video at all\n" * 100)
    assert_one_line_error(invoke("serve", MODEL, "--source", not_video), "text.mp4")
    assert_one_line_error(invoke("serve", MODEL, "--source", video.path, "--crop", "0,0,900,9"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--crop", "center"), "--crop applies with --source"),
        (("--invert", "yes"), "--invert applies with --source"),
        (("--source-timeout", 3), "--source-timeout applies with --source"),
        (("--max-viewers", 2), "--max-viewers applies with --source"),
        (("--source", "{video}", "--max-viewers", 8, "--max-connections", 8), "below"),
        (("--source", "{video}", "--max-connections", 1), "at least 2"),
    ],
)
def test_impossible_live_options_are_one_line(args, message, video):
    args = [str(video.path) if a == "{video}" else a for a in args]
    assert_one_line_error(invoke("serve", MODEL, *args), message)


def test_a_stream_that_never_answers_is_one_line_not_a_hang():
    with socket.socket() as silent:  # accepts (the kernel does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/stream.mjpg"
        started = time.monotonic()
        result = invoke("serve", MODEL, "--source", url, "--source-timeout", 1, "--port", 0)
    assert_one_line_error(result, "did not answer")
    assert time.monotonic() - started < DEADLINE


def test_ctrl_c_with_viewers_watching_stops_cleanly(video):
    with running_server(MODEL, "--source", video.path) as server:
        stream = EventStream(server.port)
        assert next(stream.events())[0] == "state"
        server.proc.send_signal(signal.SIGINT)
        try:
            out, _ = server.proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            raise
        stream.close()
        assert server.proc.returncode == 0, server.stderr()
        assert "stopped on SIGINT" in out
        assert "Traceback" not in server.stderr()
        assert "ended" not in server.stderr()  # stopping the server ends nothing


def test_the_page_in_chromium_shows_the_label_changing(live_server, chosen, browser_context):
    _, labels = chosen
    page = browser_context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    origin = f"http://127.0.0.1:{live_server.port}"
    elsewhere = []

    def record(route):
        if route.request.url.startswith(origin):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", record)
    failed = []
    page.on("response", lambda r: r.status != 200 and failed.append((r.url, r.status)))
    page.goto(f"{origin}/live", wait_until="load")
    shown: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while len(shown) < 4 and time.monotonic() < deadline:
        text = page.text_content("#label")
        if text in labels and (not shown or shown[-1] != text):
            shown.append(text)
        time.sleep(0.05)
    assert len(shown) >= 3, shown  # changed at least twice, each time to a picture's label
    page.wait_for_function(f"document.getElementById('frame').naturalWidth == {WIDTH}")
    assert failed == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    assert "playing" in page.text_content("#state")
    page.close()
    assert elsewhere == []


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    """Debian's Chromium, headless, with an empty profile (as the report tests launch it)."""
    yield from chromium_context(tmp_path_factory)


def _get(port, path):
    """``(status, response, body bytes)`` of a GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("multipart/"):
            return response.status, response, b""
        return response.status, response, response.read()
    finally:
        conn.close()


def _health(port):
    return call(port, "GET", "/health")[1]


def _viewers(port):
    return _health(port)["source"]["viewers"]
