"""Video sources: files, cameras and network streams, decoded into RGB frames by PyAV.

PyAV (``pip install "edgecnn[video]"``; Debian's ``python3-av`` on a 32-bit Pi) wraps
FFmpeg's own libraries, so every container and codec FFmpeg reads is read here: MP4/H.264,
MKV, AVI/MJPEG, V4L2 cameras, RTSP and HTTP MJPEG. It was chosen over OpenCV because it
gives each frame's presentation time from the container, raises typed errors that carry
FFmpeg's reason (OpenCV's ``read`` only returns False), bounds every open and read by a
deadline, and is half the download of OpenCV's headless wheel. The Raspberry Pi camera is
read through picamera2 (Raspberry Pi OS's ``python3-picamera2``) when it is installed.

A source is an argument: a file with a video suffix, ``/dev/videoN`` or ``camera:N``, or
an ``rtsp://``, ``http://`` or ``https://`` URL. Frames are sampled (``every`` Nth, or at
most ``fps`` a second, by the frames' own times) before they are converted, so a sampled
stream costs only its decoding. A network stream that fails, stalls past the deadline or
ends is opened again after a growing pause (one line each time) until ``retries`` opens
in a row have failed.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from edgecnn.runtime.errors import InputError

#: File name suffixes taken as videos (any container FFmpeg reads works under them).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mjpeg", ".mjpg",
                  ".h264", ".264", ".ts", ".mpg", ".mpeg")  # fmt: skip
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CAMERA = re.compile(r"^camera:(\d{1,3})$")
_DEVICE = re.compile(r"^/dev/video(\d{1,3})$")
#: Pauses before reopening a network stream, in seconds; the last repeats.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0)
#: A reopened stream that has sent frames this long counts as recovered; one that fails
#: sooner counts as failing again (a stream that stalls after a few frames every time).
HEALTHY_SECONDS = 30.0
VIDEO_HINT = 'pip install "edgecnn[video]" (or, on Raspberry Pi OS: apt install python3-av)'


class StreamError(InputError):
    """A source that cannot be opened or read: missing, not a video, busy, silent, ended."""


@dataclass(frozen=True)
class Source:
    """A video source: ``kind`` is ``file``, ``camera`` (V4L2 or the Pi camera) or ``network``."""

    text: str
    kind: str
    camera: int | None = None  # camera:N's N

    @property
    def live(self) -> bool:
        """Frames come as they are captured (their times are the wall clock's)."""
        return self.kind != "file"

    @property
    def shown(self) -> str:
        """The source as messages, pages and logs show it: a URL without its password.

        ``rtsp://user:secret@cam/stream`` is shown as ``rtsp://user@cam/stream``: the
        user name helps to tell cameras apart, the password must not reach a log line,
        ``/health`` or a page that anyone on the network can open.
        """
        return _without_password(self.text) if self.kind == "network" else self.text


def stream_source(argument: str) -> Source | None:
    """The source ``argument`` names, or None for a picture, array, folder or pattern.

    Raises:
        StreamError: a network URL that cannot be a stream's (no host, a bad port).
    """
    if argument.lower().startswith(NETWORK_SCHEMES):
        return Source(_check_url(argument), "network")
    scheme = _SCHEME.match(argument)
    if scheme:
        raise StreamError(
            f"{_without_password(argument)}: edgecnn reads rtsp://, http:// and https:// "
            f"streams, not {scheme.group(1).lower()}://"
        )
    camera = _CAMERA.match(argument)
    if camera:
        return Source(argument, "camera", int(camera.group(1)))
    if _DEVICE.match(argument):
        return Source(argument, "camera")
    if os.path.splitext(argument)[1].lower() in VIDEO_SUFFIXES and not os.path.isdir(argument):
        return Source(argument, "file")
    return None


def _check_url(url: str) -> str:
    """``url`` with its scheme in lower case (FFmpeg knows ``rtsp``, not ``RTSP``).

    Raises:
        StreamError: it has no host, or a malformed one or a bad port: FFmpeg would
            fail on it every time, so it is refused before any try.
    """
    scheme, _, rest = url.partition("://")
    url = f"{scheme.lower()}://{rest}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number in 0..65535)
        problem = "it names no host" if not parts.hostname else ""
    except ValueError as e:  # its own words may quote the password: ours instead
        problem = (
            "a bracketed IPv6 address is not closed"
            if "IPv6" in str(e)
            else (
                "its port is not a number in 0..65535" if "ort" in str(e) else "it cannot be parsed"
            )
        )
    if not problem and any(c.isspace() or ord(c) < 32 for c in url):
        problem = "it holds a space or a control character"
    if problem:
        raise StreamError(f"{_without_password(url)} is not a valid URL: {problem}")
    return url


def _without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part left out.

    Written on the text, not on ``urlsplit``, so that it also holds for the URLs
    ``urlsplit`` refuses (they are named in the refusal), and reading the user part as
    far as it can reach: to the last ``@`` before the first ``/``, ``?`` or ``#`` after
    the first ``@``, so that a password holding ``@``, ``/`` or ``#`` is still hidden. An
    ``@`` in a path may then hide a little too much of a URL with no password at all;
    that is the side to err on.
    """
    scheme, sep, rest = url.partition("://")
    first = rest.find("@")
    if not sep or first < 0:
        return url
    ends = [i for i in map(rest.find, "/?#", [first] * 3) if i >= 0]
    last = rest.rfind("@", 0, min(ends, default=len(rest)))
    user, colon, _ = rest[:last].partition(":")
    if not colon or any(c in user for c in "/?#"):
        return url  # no password (or an @ in a path): nothing to hide
    return f"{scheme}{sep}{user}@{rest[last + 1 :]}"


def check_support(source: Source) -> None:
    """Say in one line what is missing to read ``source``, before anything else is done.

    Raises:
        StreamError: PyAV (unless picamera2 reads the Pi camera) or Pillow is missing.
    """
    if not _uses_picamera2(source):
        load_av()
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise StreamError(
            'reading videos needs Pillow too, to resize the frames: pip install "edgecnn[video]" '
            "(or, on Raspberry Pi OS: sudo apt install python3-pil)"
        ) from None


def load_av() -> ModuleType:
    """PyAV, or one line saying how to install it.

    Raises:
        StreamError: PyAV is not installed.
    """
    try:
        import av
    except ImportError:
        raise StreamError(f"reading videos, cameras and streams needs PyAV: {VIDEO_HINT}") from None
    # FFmpeg's own chatter would break the one-line answers.
    try:
        av.logging.set_level(None)  # PyAV 13 on: no log callback at all
    except TypeError:  # older PyAV (Debian bookworm's python3-av is 10) takes a level only
        av.logging.set_level(getattr(av.logging, "QUIET", -8))  # AV_LOG_QUIET
    return av


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``index`` in the stream (from 0), ``time`` in seconds, RGB pixels."""

    index: int
    time: float
    pixels: np.ndarray


@dataclass(frozen=True)
class Sampling:
    """Which frames to take: every ``every``-th, or at most ``fps`` a second; and how many.

    ``frames`` and ``seconds`` end the stream after that many taken frames or seconds of
    its time (whichever comes first).
    """

    every: int = 1
    fps: float | None = None
    frames: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise InputError(f"--every must be at least 1, got {self.every}")
        if self.every > 1 and self.fps is not None:
            raise InputError("--fps and --every are two ways to sample: choose one")
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise InputError(f"--fps must be in (0, 1000], got {self.fps:g}")
        if self.frames is not None and self.frames < 1:
            raise InputError(f"--frames must be at least 1, got {self.frames}")
        if self.seconds is not None and not self.seconds > 0:
            raise InputError(f"--seconds must be above 0, got {self.seconds:g}")


class _Sampler:
    """Decides frame by frame, from the decoded index and time, whether to take a frame."""

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.taken = 0
        self._next_time = 0.0

    @property
    def full(self) -> bool:
        """Whether ``frames`` frames are taken.

        Checked as soon as one is taken: waiting for the next frame of a live stream
        could take a whole timeout, or forever.
        """
        return self.sampling.frames is not None and self.taken >= self.sampling.frames

    def done(self, seconds: float) -> bool:
        s = self.sampling
        return self.full or (s.seconds is not None and seconds >= s.seconds)

    def take(self, index: int, seconds: float) -> bool:
        s = self.sampling
        if s.fps is not None:
            if seconds + 1e-6 < self._next_time:
                return False
            step = 1 / s.fps  # a grid of times, not "1/fps after the last": no drift
            self._next_time = (int(seconds / step + 1e-6) + 1) * step
        elif index % s.every:
            return False
        self.taken += 1
        return True


@dataclass(frozen=True)
class Timing:
    """Deadlines and patience for reading a source.

    ``timeout`` seconds for opening and for each frame; ``retries`` reopenings of a
    network stream; ``realtime`` paces a file at its own speed, and ``loop`` plays it
    again at its end (a file as a stand-in for a camera).
    """

    timeout: float = 10.0
    retries: int = 5
    realtime: bool = False
    loop: bool = False


def read_frames(
    source: Source,
    sampling: Sampling = Sampling(),
    timing: Timing = Timing(),
    notify: Callable[[str], None] = lambda line: None,
    stop: threading.Event | None = None,
) -> Iterator[Frame]:
    """The sampled frames of ``source``, in order, until it ends, a limit, or ``stop``.

    ``notify`` gets one line for each reconnection of a network stream.

    Raises:
        StreamError: the source cannot be opened or read (after the retries, for a
            network stream), or PyAV is missing.
    """
    stop = stop or threading.Event()
    sampler = _Sampler(sampling)
    if _uses_picamera2(source):
        yield from _pi_camera(source, sampler, stop)
        return
    av = load_av()
    started = time.monotonic()
    index = 0  # over reconnections and loops, so that frame numbers never repeat
    base = 0.0  # a looped file's time at the start of this pass
    failures = 0
    while not stop.is_set():
        got = 0
        opened = time.monotonic()
        try:
            with _open(av, source, timing) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"  # FFmpeg's frame threads decode H.264 in parallel
                for frame in container.decode(stream):
                    got += 1
                    if failures and time.monotonic() - opened > HEALTHY_SECONDS:
                        failures = 0  # it recovered: the next failure starts a new count
                    if source.live:
                        seconds = time.monotonic() - started
                    else:
                        seconds = base + _file_time(frame, got - 1, stream)
                        if timing.realtime:
                            stop.wait(max(0.0, started + seconds - time.monotonic()))
                    if stop.is_set() or sampler.done(seconds):
                        return
                    if sampler.take(index, seconds):
                        yield Frame(index, seconds, frame.to_ndarray(format="rgb24"))
                        if sampler.full:
                            return
                    index += 1
                if not source.live and got:
                    _check_whole(source, container, stream, seconds - base)
                    base = seconds + 1 / float(stream.average_rate or 25)
        except StreamError:
            raise
        except Exception as e:  # PyAV's errors are FFmpegError, OSError and ValueError kinds
            error = _reason(av, source, e, got > 0, timing.timeout)
            if source.kind != "network" or _final(av, e, got > 0):
                raise error from None
            failures = _pause(str(error), failures + 1, timing.retries, notify, stop)
            continue
        if source.kind == "network":  # ended: a restarted camera, a dropped connection
            failures = _pause(f"{source.shown}: the stream ended", failures + 1, timing.retries,
                              notify, stop)  # fmt: skip
        elif not (timing.loop and got):
            return


def _pause(
    error: str, failures: int, retries: int, notify: Callable[[str], None], stop: threading.Event
) -> int:
    """Wait before the next try at a network stream, saying so; ``failures`` so far.

    Raises:
        StreamError: ``retries`` tries have failed in a row.
    """
    if failures > retries:
        raise StreamError(f"{error}; gave up after {failures} tr{'ies' if failures > 1 else 'y'}")
    pause = BACKOFF[min(failures - 1, len(BACKOFF) - 1)]
    notify(f"{error}; trying again in {pause:g} s ({failures} of {retries})")
    stop.wait(pause)
    return failures


def _final(av: ModuleType, error: Exception, got: bool) -> bool:
    """Whether trying a network stream again cannot help: the same error would come back.

    A wrong path or password (HTTP or RTSP 400, 401, 403, 404), a protocol, format or
    codec this FFmpeg lacks, no permission, and a bad argument (EINVAL) while opening.
    Everything else is what a restarting or busy camera gives and is tried again:
    refused connections, timeouts, resets, ends, server errors, and the other 4xx
    (FFmpeg reads RTSP's 453 "not enough bandwidth" and 454 "session not found", a 408
    and, before FFmpeg 7.1, a 429 as one "other 4xx").
    """
    e = av.error
    names = ("HTTPBadRequestError", "HTTPUnauthorizedError", "HTTPForbiddenError",
             "HTTPNotFoundError")  # fmt: skip
    refused = tuple(getattr(e, name) for name in names if hasattr(e, name))
    missing = (e.ProtocolNotFoundError, e.DemuxerNotFoundError, e.DecoderNotFoundError,
               e.OptionNotFoundError)  # fmt: skip
    errno_ = getattr(error, "errno", None)
    return (
        isinstance(error, refused + missing) or errno_ == 13  # EACCES
        or (errno_ == 22 and not got)  # EINVAL
    )  # fmt: skip


def _open(av: ModuleType, source: Source, timing: Timing) -> Any:
    """The opened container of ``source``, with one video stream.

    Raises:
        StreamError: a missing file or camera, or a file without a video stream.
    """
    options: dict[str, str] = {}
    kind = source.kind
    if kind == "file":
        from edgecnn._files import check_regular_file

        check_regular_file(source.text, 1 << 62, StreamError, "a video")
    elif kind == "camera":
        device = source.text if source.camera is None else f"/dev/video{source.camera}"
        if not os.path.exists(device):
            raise StreamError(f"no camera {source.shown}: {device} does not exist ({_cameras()})")
        container = av.open(device, format="v4l2", timeout=timing.timeout)
        return _with_video(container, source)
    elif source.text.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"  # UDP loses frames on Wi-Fi; TCP is what works
    container = av.open(source.text, options=options, timeout=(timing.timeout, timing.timeout))
    return _with_video(container, source)


def _with_video(container: Any, source: Source) -> Any:
    if not container.streams.video:
        container.close()
        raise StreamError(f"{source.shown} has no video stream")
    return container


def _reason(
    av: ModuleType, source: Source, error: Exception, got: bool, timeout: float
) -> StreamError:
    """One line for an error PyAV raised while opening or reading ``source``."""
    text = source.shown
    errno_ = getattr(error, "errno", None)
    if source.kind == "camera" and errno_ == 16:  # EBUSY
        return StreamError(f"camera {text} is busy: another program is using it")
    if errno_ == 13:  # EACCES
        hint = " (add this user to the 'video' group)" if source.kind == "camera" else ""
        return StreamError(f"cannot open {text}: permission denied{hint}")
    if isinstance(error, (av.error.ExitError, av.error.TimeoutError)) or errno_ == 110:
        what = "sent no frame" if got else "did not answer"
        return StreamError(f"{text} {what} within {timeout:g} s")
    if source.kind == "network" and got and errno_ == 5:  # EIO: FFmpeg's word for a closed
        return StreamError(f"{text}: the stream ended")  # connection mid-stream
    status = _HTTP_STATUS.get(type(error).__name__)
    if status:
        return StreamError(f"{text}: the server answered {status}")
    if isinstance(error, av.error.ProtocolNotFoundError):
        scheme = source.text.partition(":")[0]
        return StreamError(f"{text}: this FFmpeg cannot read {scheme}:// URLs")
    if isinstance(error, av.error.DecoderNotFoundError):
        return StreamError(f"{text}: its video codec cannot be decoded by this FFmpeg")
    if isinstance(error, av.error.InvalidDataError) and source.kind == "file":
        where = "is damaged" if got else "is not a video FFmpeg can read"
        return StreamError(f"{text} {where}")
    reason = str(getattr(error, "strerror", None) or error or type(error).__name__)
    reason = reason.replace(source.text, text)  # FFmpeg's text may quote the whole URL
    return StreamError(f"cannot read {text}: {reason[:120]}")


#: What an HTTP refusal means, by PyAV's error class (FFmpeg's HTTP errors).
_HTTP_STATUS = {
    "HTTPBadRequestError": "400 Bad Request: check the URL",
    "HTTPUnauthorizedError": "401 Unauthorized: the URL needs a user name and password "
    "(user:password@host), or they are wrong",
    "HTTPForbiddenError": "403 Forbidden: this user may not read the stream",
    "HTTPNotFoundError": "404 Not Found: check the path in the URL",
}


def _check_whole(source: Source, container: Any, stream: Any, last: float) -> None:
    """Refuse a file that ended well before its header said it would: it was cut short.

    FFmpeg decodes a truncated AVI or MKV without an error, up to where it was cut. What
    the header states tells: an AVI's frame count (FFmpeg's duration for a cut AVI is a
    guess from its size), an MP4's video duration (after its edit list), an MKV's
    duration when the file holds nothing but the video (else it may be the audio's).
    ``last`` is the last frame's time from the start. Times, not frame counts, are
    compared: a variable frame rate or an edit list shows fewer frames than it stores.

    Raises:
        StreamError: the frames end well before the stated length.
    """
    names = set(str(getattr(container.format, "name", "")).split(","))
    rate = float(stream.average_rate or 0)
    length = None
    if "avi" in names and stream.frames and rate:
        length = stream.frames / rate
    elif names & {"mov", "mp4"} and stream.duration and stream.time_base:
        length = float(stream.duration * stream.time_base)
    elif names & {"matroska", "webm"} and container.duration and len(container.streams) == 1:
        length = container.duration / 1e6  # in FFmpeg's AV_TIME_BASE, microseconds
    if length is None:
        return  # MPEG-TS, a raw stream, a recording never closed: taken as it comes
    played = last + (1 / rate if rate else 0.0)
    if played < length - max(0.5, 0.05 * length):
        raise StreamError(f"{source.shown} is cut short: it ends at {played:.1f} s of its "
                          f"{length:.1f} s")  # fmt: skip


def _file_time(frame: Any, decoded: int, stream: Any) -> float:
    """A file frame's time in seconds from the stream's start (by frame count if untimed)."""
    if frame.pts is not None and stream.time_base is not None:
        start = stream.start_time or 0
        return float((frame.pts - start) * stream.time_base)
    rate = float(stream.average_rate or 25)
    return decoded / rate


def _cameras() -> str:
    """The V4L2 devices this machine has, for the missing-camera message."""
    try:
        devices = sorted(
            (f"/dev/{n}" for n in os.listdir("/dev") if _DEVICE.match(f"/dev/{n}")),
            key=lambda d: int(d[len("/dev/video") :]),
        )
    except OSError:
        devices = []
    if not devices:
        return "no cameras found: is one plugged in?"
    return "cameras here: " + ", ".join(devices[:8])


def _uses_picamera2(source: Source) -> bool:
    """Whether ``source`` is ``camera:N`` on a system with picamera2 (Raspberry Pi OS)."""
    return source.kind == "camera" and source.camera is not None and _picamera2() is not None


def _picamera2() -> Any:
    """picamera2's ``Picamera2`` on Raspberry Pi OS, or None."""
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except Exception:  # not installed, or libcamera missing underneath
        return None
    return Picamera2


def _pi_camera(source: Source, sampler: _Sampler, stop: threading.Event) -> Iterator[Frame]:
    """Frames of the Pi camera ``camera:N`` through picamera2 (libcamera)."""
    picamera2 = _picamera2()
    try:
        cameras = picamera2.global_camera_info()
        if source.camera is None or source.camera >= len(cameras):
            raise StreamError(f"no camera {source.shown}: libcamera sees {len(cameras)}")
        camera = picamera2(source.camera)
        # "RGB888" is B, G, R in memory (libcamera names formats by little-endian words).
        config = camera.create_video_configuration({"size": (640, 480), "format": "RGB888"})
        camera.configure(config)
        camera.start()
    except StreamError:
        raise
    except Exception as e:
        reason = str(e)[:120] or type(e).__name__
        raise StreamError(f"cannot open {source.shown}: {reason}") from None
    started = time.monotonic()
    index = 0
    try:
        while not stop.is_set():
            pixels = camera.capture_array()
            seconds = time.monotonic() - started
            if sampler.done(seconds):
                return
            if sampler.take(index, seconds):
                yield Frame(index, seconds, np.ascontiguousarray(pixels[:, :, 2::-1]))
                if sampler.full:
                    return
            index += 1
    finally:
        camera.close()
