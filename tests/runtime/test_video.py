"""``edgecnn predict`` on videos, cameras and HTTP MJPEG streams, end to end.

Real videos made with ffmpeg from real Fashion-MNIST pictures (H.264 in MP4 and MKV,
MJPEG in AVI, and one dark-on-light), decoded by the real PyAV, classified by the
checked-in tiny int8 model. Each frame's result is checked against the frames decoded
here independently and classified one by one with :meth:`Classifier.classify`. Streams
come from a small HTTP server on loopback that sends the AVI's own JPEG packets.
"""

import contextlib
import http.server
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, interruptible, invoke
from serve_helpers import wait_until
from shared import PICTURE, TINY
from video_files import RATE, distinct_pictures, make_video

from edgecnn.runtime import load_classifier
from edgecnn.runtime.images import resize_array
from edgecnn.runtime.video import Sampling, Source, Timing, read_frames, stream_source

MODEL = TINY / "model_int8.tflite"
PICTURES = 6
HOLD = 10
#: Seconds a subprocess or a stream may take, at most.
DEADLINE = 30


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(MODEL)


@pytest.fixture(scope="module")
def chosen(test_images, classifier):
    """Six test images of distinct classes the tiny model gets right with >= 0.9."""
    x, y = test_images.x[:2000], test_images.y[:2000]
    return distinct_pictures(classifier, x, y, PICTURES, 0.9)


@pytest.fixture(scope="module")
def videos(chosen, tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    pictures, _ = chosen
    made = {name: make_video(folder / name, pictures, HOLD) for name in ("v.mp4", "v.avi", "v.mkv")}
    made["dark.mp4"] = make_video(folder / "dark.mp4", pictures, HOLD, dark_on_light=True)
    return made


def decoded(path):
    """Every frame of ``path`` as RGB, decoded here with PyAV alone."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def expected(classifier, frames, invert, top_k=10):
    """What ``classify`` says of each frame's centre square, one frame at a time."""
    results = []
    for frame in frames:
        height, width = frame.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = resize_array(frame[top : top + side, left : left + side], classifier.input_shape)
        results.append(classifier.classify(image, top_k=top_k, invert=invert))
    return results


def jsonl(result):
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same(lines, want, indices):
    assert [line["frame"] for line in lines] == list(indices)
    for line, index in zip(lines, indices, strict=True):
        assert line["time"] == round(index / RATE, 3)
        top = want[index]
        assert [t["label"] for t in line["top_k"]] == [label for label, _ in top], index
        np.testing.assert_allclose(
            [t["probability"] for t in line["top_k"]], [p for _, p in top], atol=1e-6
        )
        assert (line["label"], line["confidence"]) == (line["top_k"][0]["label"],
                                                       line["top_k"][0]["probability"])  # fmt: skip


# --- files: every frame as classify sees it --------------------------------------------


@pytest.mark.parametrize("name", ["v.mp4", "v.avi", "v.mkv", "dark.mp4"])
def test_every_frame_is_classified_as_classify_does(name, videos, chosen, classifier):
    video = videos[name]
    frames = decoded(video.path)
    assert len(frames) == PICTURES * HOLD
    want = expected(classifier, frames, invert=name.startswith("dark"))
    lines = jsonl(invoke("predict", MODEL, video.path, "--jsonl", "--top-k", 10))
    assert_same(lines, want, range(len(frames)))
    _, labels = chosen
    # Every frame of a hold shows its picture (no blending between pictures here).
    assert [line["label"] for line in lines] == [labels[video.picture_of(i)] for i in range(60)]


def test_text_lines_match_the_jsonl(videos):
    text = invoke("predict", MODEL, videos["v.mp4"].path, "--frames", 3)
    lines = jsonl(invoke("predict", MODEL, videos["v.mp4"].path, "--frames", 3, "--jsonl"))
    assert text.exit_code == 0, text.stderr
    rows = text.stdout.splitlines()
    assert len(rows) == 3
    for row, line in zip(rows, lines, strict=True):
        assert row.split()[:3] == ["frame", str(line["frame"]), f"{line['time']:.3f}s"]
        assert f"{line['label']}" in row and f"{100 * line['confidence']:5.1f}%" in row


def test_on_change_gives_one_event_per_picture(videos, chosen):
    _, labels = chosen
    lines = jsonl(invoke("predict", MODEL, videos["v.mkv"].path, "--on-change", "--jsonl"))
    assert [line["label"] for line in lines] == labels
    assert [line["previous"] for line in lines] == [None, *labels[:-1]]
    # Stable after 3 frames of the same label: the third frame of each hold.
    assert [line["frame"] for line in lines] == [i * HOLD + 2 for i in range(PICTURES)]
    for line in lines:
        assert set(line) == {"event", "frame", "time", "label", "confidence", "previous"}
        assert line["event"] == "change" and line["time"] == round(line["frame"] / RATE, 3)
        assert 0.5 <= line["confidence"] <= 1


def test_on_change_text_and_stable(videos, chosen):
    _, labels = chosen
    result = invoke("predict", MODEL, videos["v.mp4"].path, "--on-change", "--stable", 10)
    assert result.exit_code == 0, result.stderr
    rows = result.stdout.splitlines()
    assert len(rows) == PICTURES
    assert rows[0].split()[1] == str(HOLD - 1) and "(was" not in rows[0]
    for row, label, previous in zip(rows[1:], labels[1:], labels[:-1], strict=True):
        assert label in row and row.endswith(f"(was {previous})")
    # A hold of 10 frames never makes 11 in a row: no event at all.
    eleven = invoke("predict", MODEL, videos["v.mp4"].path, "--on-change", "--stable", 11)
    assert eleven.exit_code == 0 and eleven.stdout == ""
    # No frame is confident enough: nothing is stable.
    none = invoke("predict", MODEL, videos["v.mp4"].path, "--on-change", "--min-confidence", 1)
    assert none.exit_code == 0 and none.stdout == ""


# --- sampling, crop, polarity ----------------------------------------------------------


@pytest.fixture(scope="module")
def mp4_expected(videos, classifier):
    return expected(classifier, decoded(videos["v.mp4"].path), invert=False)


@pytest.mark.parametrize(
    ("options", "indices"),
    [
        (["--every", 5], range(0, 60, 5)),
        (["--fps", 3], range(0, 60, 10)),
        (["--fps", 7.5], range(0, 60, 4)),
        (["--fps", 1000], range(60)),
        (["--frames", 7], range(7)),
        (["--every", 4, "--frames", 3], [0, 4, 8]),
        (["--seconds", 0.5], range(15)),
        (["--fps", 3, "--seconds", 1], [0, 10, 20]),
        (["--frames", 100], range(60)),
    ],
)
def test_sampling(options, indices, videos, mp4_expected):
    lines = jsonl(invoke("predict", MODEL, videos["v.mp4"].path, "--jsonl", "--top-k", 10,
                         *options))  # fmt: skip
    assert_same(lines, mp4_expected, indices)


def test_a_crop_on_the_picture_gives_its_label(videos, chosen, classifier):
    _, labels = chosen
    # The picture is 476x476 at (82, 2): a crop of exactly it.
    lines = jsonl(invoke("predict", MODEL, videos["v.avi"].path, "--jsonl", "--every", HOLD,
                         "--crop", "82,2,476,476"))  # fmt: skip
    assert [line["label"] for line in lines] == labels
    # And the same numbers as classify on the same crop.
    frames = decoded(videos["v.avi"].path)[::HOLD]
    for line, frame in zip(lines, frames, strict=True):
        image = resize_array(frame[2:478, 82:558], classifier.input_shape)
        label, p = classifier.classify(image, top_k=1, invert=False)[0]
        assert line["label"] == label and abs(line["confidence"] - p) <= 1e-6


def test_a_crop_of_the_black_border_is_not_the_picture(videos, chosen):
    _, labels = chosen
    lines = jsonl(invoke("predict", MODEL, videos["v.mp4"].path, "--jsonl", "--every", HOLD,
                         "--crop", "0,0,60,60", "--invert", "no"))  # fmt: skip
    # Every frame's top-left corner is the same black: one label for all.
    assert len({line["label"] for line in lines}) == 1


@pytest.mark.parametrize("crop", ["600,0,100,100", "0,400,100,100", "0,0,641,480", "0,0,640,481"])
def test_a_crop_outside_the_frame_is_one_line(crop, videos):
    result = invoke("predict", MODEL, videos["v.mp4"].path, "--crop", crop)
    assert_one_line_error(result, "does not fit in a 640x480 frame")
    assert result.stdout == ""


@pytest.mark.parametrize("crop", ["1,2,3", "0,0,0,10", "a,b,c,d", "-1,0,10,10", ""])
def test_a_bad_crop_is_one_line(crop, videos):
    assert_one_line_error(invoke("predict", MODEL, videos["v.mp4"].path, "--crop", crop),
                          "--crop")  # fmt: skip


def test_invert_on_a_dark_on_light_video(videos, chosen, classifier):
    _, labels = chosen
    path = videos["dark.mp4"].path
    auto = jsonl(invoke("predict", MODEL, path, "--jsonl", "--top-k", 10))
    yes = jsonl(invoke("predict", MODEL, path, "--jsonl", "--top-k", 10, "--invert", "yes"))
    no = jsonl(invoke("predict", MODEL, path, "--jsonl", "--top-k", 10, "--invert", "NO"))
    assert auto == yes
    assert [line["label"] for line in auto[::HOLD]] == labels
    want = expected(classifier, decoded(path), invert=False)
    assert_same(no, want, range(60))
    assert [line["label"] for line in no[::HOLD]] != labels
    # A light-on-dark video with --invert yes is the dark-on-light one without it.
    forced = jsonl(invoke("predict", MODEL, videos["v.mp4"].path, "--jsonl", "--invert", "yes"))
    assert [line["label"] for line in forced[::HOLD]] != labels


# --- bad sources and bad combinations --------------------------------------------------


def test_bad_video_files(tmp_path, videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(videos["v.mp4"].path.read_bytes()[:3000])
    cases = [
        (tmp_path / "missing.mp4", "does not exist"),
        (empty, "is empty"),
        (text, "is not a video"),
        (truncated, "cut.mp4"),
    ]
    for path, message in cases:
        result = invoke("predict", MODEL, path)
        assert_one_line_error(result, message)
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "message"), [("v.avi", "of its 2.0 s"), ("v.mkv", "of its 2.0 s")]
)
def test_a_file_cut_short_gives_its_frames_then_one_line(name, message, videos, tmp_path):
    """FFmpeg decodes a truncated AVI or MKV without an error; its header tells."""
    whole = videos[name].path.read_bytes()
    cut = tmp_path / f"cut{videos[name].path.suffix}"
    cut.write_bytes(whole[: len(whole) // 2])
    result = invoke("predict", MODEL, cut, "--jsonl")
    assert_one_line_error(result, f"{cut} is cut short: ")
    assert message in result.stderr
    frames = [json.loads(line)["frame"] for line in result.stdout.splitlines()]
    assert 0 < len(frames) < 60 and frames == list(range(len(frames)))


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", *map(str, args)], check=True)


def test_whole_files_that_show_fewer_frames_than_they_store_are_not_cut_short(videos, tmp_path):
    """An edit list (a copy trimmed without re-encoding), and audio that outlasts the video."""
    trimmed = tmp_path / "trimmed.mp4"
    ffmpeg("-ss", 0.5, "-i", videos["v.mp4"].path, "-c", "copy", trimmed)
    for suffix in ("mp4", "mkv"):
        longer = tmp_path / f"longer_audio.{suffix}"
        ffmpeg("-i", videos["v.mp4"].path, "-f", "lavfi", "-i", "sine=duration=3.5",
               "-c:v", "copy", "-c:a", "aac", longer)  # fmt: skip
        result = invoke("predict", MODEL, longer, "--every", 15, "--jsonl")
        assert [line["frame"] for line in jsonl(result)] == [0, 15, 30, 45], result.stderr
    result = invoke("predict", MODEL, trimmed, "--jsonl")
    assert 0 < len(jsonl(result)) < 60 and result.stderr == ""


def test_an_audio_file_has_no_video_stream(tmp_path):
    audio = tmp_path / "tone.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.5",
                    str(audio)], check=True)  # fmt: skip
    assert_one_line_error(invoke("predict", MODEL, audio), "has no video stream")


@pytest.mark.parametrize("camera", ["/dev/video57", "camera:57"])
def test_a_missing_camera(camera):
    assert_one_line_error(invoke("predict", MODEL, camera, "--timeout", 1), "no camera")


def test_a_refused_port_is_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = invoke("predict", MODEL, f"http://127.0.0.1:{port}/x.mjpg", "--timeout", 1,
                    "--retries", 0)  # fmt: skip
    assert_one_line_error(
        result, f"http://127.0.0.1:{port}/x.mjpg: Connection refused; gave up after 1 try"
    )


def test_bad_combinations(videos):
    video = videos["v.mp4"].path
    cases = [
        ([video, PICTURE], "read alone"),
        ([PICTURE, video], "read alone"),
        ([video, "--json"], "--jsonl"),
        ([PICTURE, "--fps", 3], "--fps applies to a video"),
        ([PICTURE, "--on-change"], "--on-change applies to a video"),
        ([PICTURE, "--crop", "center"], "--crop applies to a video"),
        ([video, "--top-k", 11], "--top-k must be in 1..10"),
        ([video, "--every", 2, "--fps", 3], "choose one"),
        ([video, "--fps", 0], "--fps"),
        ([video, "--fps", "nan"], "--fps"),
        ([video, "--seconds", 0], "--seconds"),
        ([video, "--seconds", "nan"], "--seconds"),
        ([video, "--stable", 2], "with --on-change"),
        ([video, "--timeout", 0], "--timeout"),
        ([video, "--timeout", "nan"], "--timeout"),
        ([video, "--on-change", "--min-confidence", 1.5], "--min-confidence"),
        ([video, "--on-change", "--min-confidence", "nan"], "--min-confidence"),
        ([video, "--invert", "maybe"], "--invert"),
    ]
    for args, message in cases:
        result = invoke("predict", MODEL, *args)
        assert_one_line_error(result, message)
        assert result.stdout == ""


def test_stream_source_names():
    assert stream_source("rtsp://cam/1") == Source("rtsp://cam/1", "network")
    assert stream_source("HTTP://cam/x.mjpg") == Source("http://cam/x.mjpg", "network")
    assert stream_source("camera:0") == Source("camera:0", "camera", 0)
    assert stream_source("/dev/video3") == Source("/dev/video3", "camera")
    assert stream_source("clip.MKV") == Source("clip.MKV", "file")
    assert stream_source("picture.png") is None
    assert stream_source("camera:x") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:secret@cam/live", "rtsp://admin@cam/live"),
        ("http://admin:se:cr@t@[::1]:8080/a?b@c", "http://admin@[::1]:8080/a?b@c"),
        ("http://cam/snapshots/a@b.mjpg", "http://cam/snapshots/a@b.mjpg"),
        ("http://:secret@cam/", "http://@cam/"),
        ("http://admin@cam/", "http://admin@cam/"),
        ("https://cam/x.mjpg", "https://cam/x.mjpg"),
    ],
)
def test_a_password_is_never_shown(url, shown):
    assert stream_source(url).shown == shown
    assert stream_source(url).text == url  # FFmpeg still gets it


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "http://[::1 is not a valid URL: a bracketed IPv6 address is not closed"),
        ("rtsp:///stream", "rtsp:///stream is not a valid URL: it names no host"),
        ("http://u:secret@cam:99999/", "http://u@cam:99999/ is not a valid URL: its port is not"),
        ("http://u:secret@cam:se/", "http://u@cam:se/ is not a valid URL: its port is not"),
        # Unencoded, # and / end the host part (RFC 3986; FFmpeg reads it so too).
        ("rtsp://admin:sec#ret/x?y@cam/live", "rtsp://admin@cam/live is not a valid URL"),
        ("rtmp://u:secret@cam/live", "rtmp://u@cam/live: edgecnn reads rtsp://, http:// and"),
        ("http://cam/a b", "it holds a space"),
    ],
)
def test_a_malformed_url_is_refused_before_any_try(url, message):
    result = invoke("predict", MODEL, url, "--retries", 5)
    assert_one_line_error(result, message)
    assert "secret" not in result.stderr and "sec#ret" not in result.stderr


def test_read_frames_directly(videos):
    source = Source(str(videos["v.avi"].path), "file")
    frames = list(read_frames(source, Sampling(every=7, frames=5)))
    assert [f.index for f in frames] == [0, 7, 14, 21, 28]
    assert frames[0].pixels.shape == (480, 640, 3) and frames[0].pixels.dtype == np.uint8
    looped = list(read_frames(source, Sampling(every=25, frames=5), Timing(loop=True)))
    assert [f.index for f in looped] == [0, 25, 50, 75, 100]
    np.testing.assert_allclose([f.time for f in looped], [i / RATE for i in (0, 25, 50, 75, 100)],
                               atol=1e-9)  # fmt: skip


def test_predict_on_a_video_imports_no_tensorflow(videos):
    code = (
        "import sys\n"
        f"sys.argv = ['edgecnn', 'predict', {str(MODEL)!r}, {str(videos['v.mp4'].path)!r},"
        " '--frames', '2']\n"
        "from edgecnn.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=DEADLINE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2


# --- HTTP MJPEG streams ----------------------------------------------------------------


class MjpegServer:
    """Serves the JPEG frames of an MJPEG AVI as multipart/x-mixed-replace on loopback.

    ``mode``: ``end`` sends every frame once and closes; ``stall`` sends ``stall_after``
    frames and then holds the connection open, silent; ``loop`` sends forever; an HTTP
    status code (404, 503, ...) answers every request with it and no stream.
    """

    def __init__(self, path, mode="end", stall_after=0, pause=0.005):
        with av.open(str(path)) as container:
            self.jpegs = [bytes(p) for p in container.demux(video=0) if p.size]
        self.mode, self.stall_after, self.pause = mode, stall_after, pause
        self.connections = 0
        self.released = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.connections += 1
                if isinstance(server.mode, int):
                    self.send_error(server.mode)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                sent = 0
                try:
                    while True:
                        for jpeg in server.jpegs:
                            if server.mode == "stall" and sent == server.stall_after:
                                server.released.wait(DEADLINE)
                                return
                            self.wfile.write(
                                b"--frame\r\nContent-Type: image/jpeg\r\n"
                                + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                                + jpeg
                                + b"\r\n"
                            )
                            self.wfile.flush()
                            sent += 1
                            time.sleep(server.pause)
                        if server.mode != "loop":
                            return
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_http_mjpeg_stream_is_classified_frame_by_frame(videos, chosen, classifier):
    want = expected(classifier, decoded(videos["v.avi"].path), invert=False)
    _, labels = chosen
    with MjpegServer(videos["v.avi"].path) as server:
        result = invoke("predict", MODEL, server.url, "--jsonl", "--top-k", 10, "--frames", 45)
    lines = jsonl(result)
    assert [line["frame"] for line in lines] == list(range(45))
    times = [line["time"] for line in lines]
    assert times == sorted(times)  # the wall clock's, for a stream
    for line, top in zip(lines, want, strict=False):
        assert [t["label"] for t in line["top_k"]] == [label for label, _ in top]
        np.testing.assert_allclose([t["probability"] for t in line["top_k"]],
                                   [p for _, p in top], atol=1e-6)  # fmt: skip
    assert [line["label"] for line in lines[::HOLD]] == labels[:5]


def test_frames_end_a_stream_that_then_stalls(videos):
    """--frames N on a stream that sends exactly N frames and then nothing: done at once."""
    with MjpegServer(videos["v.avi"].path, mode="stall", stall_after=5) as server:
        started = time.monotonic()
        result = invoke("predict", MODEL, server.url, "--jsonl", "--frames", 5, "--timeout", 5)
        took = time.monotonic() - started
    assert len(jsonl(result)) == 5
    assert result.stderr == ""
    assert took < 4, took


def run_cli(*args):
    """``edgecnn ARGS`` in a fresh interpreter, as a shell starts it."""
    code = "import sys\nfrom edgecnn.cli import main\nsys.argv[0] = 'edgecnn'\nmain()\n"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible,
    )  # fmt: skip


def test_a_stalled_stream_is_tried_again_then_given_up(videos):
    with MjpegServer(videos["v.avi"].path, mode="stall", stall_after=12) as server:
        process = run_cli("predict", MODEL, server.url, "--jsonl", "--timeout", 1, "--retries", 1)
        try:
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
        assert server.connections == 2
    assert process.returncode == 2, err
    errors = err.decode().splitlines()
    assert len(errors) == 2, errors
    assert "trying again in 1 s (1 of 1)" in errors[0] and errors[0].startswith("edgecnn: ")
    assert errors[1].startswith("error: ") and "gave up after 2 tries" in errors[1]
    lines = [json.loads(line) for line in out.decode().splitlines()]
    # The 12 frames before each stall, numbered on across the reconnection.
    assert [line["frame"] for line in lines] == list(range(24))


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "404 Not Found"), (401, "401 Unauthorized"), (403, "403 Forbidden")],
)
def test_a_refusal_is_not_tried_again(status, message, videos):
    """A wrong path or password gives the same answer every time: one line, no retries."""
    with MjpegServer(videos["v.avi"].path, mode=status) as server:
        url = server.url.replace("http://", "http://viewer:secret@")
        started = time.monotonic()
        result = invoke("predict", MODEL, url, "--retries", 5, "--timeout", 5)
        assert time.monotonic() - started < 4  # no backoff pauses
        assert server.connections == 1
    assert_one_line_error(result, f"{url.replace(':secret', '')}: the server answered {message}")
    assert "secret" not in result.stderr + result.stdout


def test_a_server_error_is_tried_again_and_no_password_is_shown(videos):
    with MjpegServer(videos["v.avi"].path, mode=503) as server:
        url = server.url.replace("http://", "http://viewer:secret@")
        process = run_cli("predict", MODEL, url, "--retries", 1, "--timeout", 2)
        try:
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
        assert server.connections == 2
    errors = err.decode().splitlines()
    assert process.returncode == 2 and len(errors) == 2, errors
    assert errors[0].startswith("edgecnn: cannot read http://viewer@127.0.0.1:"), errors
    assert "trying again in 1 s" in errors[0] and "gave up after 2 tries" in errors[1]
    assert b"secret" not in out + err


def test_other_refusals_are_tried_again(videos):
    """A 408 or any 4xx but 400, 401, 403 and 404: what a camera at its session limit says."""
    with MjpegServer(videos["v.avi"].path, mode=408) as server:
        result = invoke("predict", MODEL, server.url, "--retries", 1, "--timeout", 2)
        assert server.connections == 2
    assert result.exit_code == 2 and "gave up after 2 tries" in result.stderr


def test_an_ended_stream_is_opened_again(videos):
    with MjpegServer(videos["v.avi"].path, mode="end") as server:
        process = run_cli("predict", MODEL, server.url, "--jsonl", "--retries", 1)
        try:
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            process.kill()
    errors = err.decode().splitlines()
    assert process.returncode == 2 and len(errors) == 2, errors
    assert "the stream ended; trying again" in errors[0] and "gave up" in errors[1]
    assert len(out.decode().splitlines()) == 120


def read_lines(pipe, count):
    """At least ``count`` whole lines from ``pipe``, within the deadline."""
    seen = b""
    end = time.monotonic() + DEADLINE
    while seen.count(b"\n") < count:
        left = end - time.monotonic()
        assert left > 0 and select.select([pipe], [], [], left)[0], seen[-200:]
        chunk = os.read(pipe.fileno(), 65536)
        assert chunk, seen[-200:]
        seen += chunk
    return seen


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_an_endless_stream_cleanly(sig, code, videos):
    with MjpegServer(videos["v.avi"].path, mode="loop", pause=0.01) as server:
        process = run_cli("predict", MODEL, server.url, "--jsonl")
        try:
            seen = read_lines(process.stdout, 5)
            process.send_signal(sig)
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    assert process.returncode == code, err
    errors = err.decode().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    text = (seen + out).decode()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["frame"] for line in lines] == list(range(len(lines)))


def test_the_first_frames_are_not_held_back_by_a_stall(videos):
    """Three frames, then silence: their results come within the polarity second, not
    at the timeout, and Ctrl-C then leaves them on stdout."""
    with MjpegServer(videos["v.avi"].path, mode="stall", stall_after=3) as server:
        process = run_cli("predict", MODEL, server.url, "--jsonl", "--timeout", 20)
        try:
            started = time.monotonic()
            seen = read_lines(process.stdout, 3)
            took = time.monotonic() - started
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=DEADLINE)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    assert took < 5, took
    assert process.returncode == 130, err
    lines = [json.loads(line) for line in (seen + out).decode().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2]


def test_a_live_source_drops_its_oldest_frames_when_the_caller_falls_behind(videos, classifier):
    """A camera that outpaces the model: results stay recent, frames are dropped, not queued."""
    from edgecnn.runtime.frames import FrameClassifier
    from edgecnn.runtime.streaming import QUEUE_FRAMES, FrameStream

    with MjpegServer(videos["v.avi"].path, mode="loop", pause=0.002) as server:
        source = stream_source(server.url)
        with FrameStream(FrameClassifier(classifier, invert="no"), source) as stream:
            batches = stream.batches()
            first = next(batches)
            wait_until(lambda: stream.dropped > QUEUE_FRAMES, "frames dropped", DEADLINE)
            behind = next(batches)
            stream.stop()
    assert first[0].index == 0
    # After the pause, what comes next is recent: the oldest frames waiting were dropped.
    assert behind[0].index > first[-1].index + QUEUE_FRAMES
    indices = [r.index for r in behind]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
