"""``edgecnn serve``: classify pictures over HTTP on a small device, standard library only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.options import (
    AUTO,
    BackendOption,
    IntegrityOption,
    NoRejectOption,
    OptionalModelArg,
    RawConfidenceOption,
    RejectBelowOption,
    reject_option,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from edgecnn.runtime.classifier import Classifier
    from edgecnn.runtime.frames import Crop
    from edgecnn.runtime.serve.viewers import Viewers
    from edgecnn.runtime.video import Source


def serve_command(
    model: OptionalModelArg = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 0.0.0.0 serves every machine that can reach this "
            "one, without authentication."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8080,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Requests classified at once, each by its own single-threaded interpreter, "
            "so N busy clients keep N cores busy. [default: one per core, up to 4]",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Larger bodies are refused (413) unread.")
    ] = 4 * 1024 * 1024,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1,
            max=4096,
            help="Open connections at most. Beyond it, new clients wait in the listen queue "
            "until one closes, or take the slot of one idle, silent or still sending its "
            "request after a second, which is answered 503 (Retry-After) and closed.",
        ),
    ] = 256,
    max_buffered_bytes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Memory for bodies being received, over all connections; a request that "
            "would exceed it gets 503.",
        ),
    ] = 64 * 1024 * 1024,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=3600,
            help="Seconds a request's head and body may take to arrive, from its first "
            "byte; slower requests get 408.",
        ),
    ] = 10.0,
    backend: BackendOption = AUTO,
    integrity_check: IntegrityOption = True,
    raw_confidence: RawConfidenceOption = False,
    reject_below: RejectBelowOption = None,
    no_reject: NoRejectOption = False,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="One line per request on stderr.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            help="A video file (played at its own speed, looped), /dev/videoN or camera:N, "
            "or an rtsp:// or http:// stream, classified as it plays and shown at /live "
            "(label stream at /events). Needs edgecnn[video].",
        ),
    ] = None,
    crop: Annotated[
        str | None,
        typer.Option(
            help="With --source: 'center' (the centred square) or X,Y,W,H. [default: center]"
        ),
    ] = None,
    invert: Annotated[
        str | None,
        typer.Option(help="With --source: auto, yes or no (dark-on-light frames). [default: auto]"),
    ] = None,
    source_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1, max=3600, help="With --source: seconds to open it and per frame. [default: 10]"
        ),
    ] = None,
    max_viewers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="With --source: live viewers at once (/events, /live/stream.mjpg), each "
            "holding a connection; more get 503. Below --max-connections, so that requests "
            "always have a slot. [default: 8, or half of --max-connections if fewer]",
        ),
    ] = None,
) -> None:
    """Serve a model over HTTP: POST /classify, GET /health, GET /metadata.

    POST a picture (PNG, JPEG, BMP) or a .npy array as the raw body to /classify
    (?top_k=N) and get JSON back: the label ("unknown" when the model is not sure
    enough), the most likely class, the calibrated confidence and the top classes. With
    --source, a video is classified as it plays: GET /live is a page showing it,
    /live/frame.jpg its latest frame with the crop box, /events the results as
    Server-Sent Events. SIGTERM or Ctrl-C stops accepting, lets
    in-flight requests finish, and exits 0. SIGHUP, or a change of the model file (or of
    the store's current model, without MODEL), loads the new model beside the old and
    switches between requests; a model that fails to load leaves the old one serving.
    """
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.backends import default_threads
    from edgecnn.runtime.classifier import check_threads
    from edgecnn.runtime.serve.reload import Hangups, Reloader, resolve_model, watched_state
    from edgecnn.runtime.serve.server import (
        Limits,
        is_loopback,
        make_server,
        serve_until_signalled,
    )
    from edgecnn.runtime.serve.service import ClassifierService

    # SIGHUP is caught from here to the end: one that comes while the model loads or
    # while serve stops would otherwise end serve, and systemd takes that for a clean exit.
    hangups = Hangups()
    hangups.install()
    try:
        workers = check_threads(threads, "--threads") or default_threads()
        calibrated, reject = not raw_confidence, reject_option(reject_below, no_reject)
        given = {"--crop": crop, "--invert": invert, "--source-timeout": source_timeout,
                 "--max-viewers": max_viewers}  # fmt: skip
        live = None
        if source is not None:
            max_viewers = _max_viewers(max_viewers, max_connections)
            live = _live_options(source, crop or "center", invert or "auto", source_timeout or 10.0)
        elif any(value is not None for value in given.values()):
            name = next(name for name, value in given.items() if value is not None)
            raise InputError(f"{name} applies with --source (a video, camera or stream to show)")
        seen = watched_state(model)  # before loading: a change during startup is a change

        def load(path: Path) -> Classifier:
            # Reloads load with these options too: a new model answers as the first did.
            return load_classifier(
                path, backend=backend.value, num_threads=1, check_integrity=integrity_check,
                calibrated=calibrated, reject=reject,
            )  # fmt: skip

        path = resolve_model(model)
        # Every worker's interpreter is made here, so LiteRT's banner is hidden once for all.
        with native_stderr_hidden():
            classifier = load(path)
            service = ClassifierService(classifier, workers)
        reloader = Reloader(service, model, load, seen)
        limits = Limits(
            max_connections=max_connections,
            max_body_bytes=max_body_bytes,
            max_buffered_bytes=max(max_buffered_bytes, max_body_bytes),
            request_timeout=request_timeout,
        )
        viewers = None
        try:
            if live is not None and max_viewers is not None:
                viewers = _viewers(lambda: service.classifier, live, path.name, max_viewers)
            server = make_server(service, host, port, limits, access_log, viewers)
        except BaseException:
            service.close()
            raise
        if not is_loopback(server):
            typer.echo(
                f"warning: listening on {host}: any machine that can reach this one can use the "
                "model, and edgecnn serve has no authentication or TLS; put a reverse proxy in "
                "front, or keep --host 127.0.0.1",
                err=True,
            )

        info = service.served.info
        store = f"{info.name} {info.version}, " if info.name else ""

        def started() -> None:
            typer.echo(
                f"serving {info.file} ({store}{classifier.backend_name}, {workers} workers) "
                f"on {server.url} ; Ctrl-C or SIGTERM stops, SIGHUP reloads the model"
            )

        if viewers is not None:
            viewers.feed.start()
        reloader.start()
        try:
            hangups.forward_to(reloader.request)
            reason = serve_until_signalled(server, on_started=started)
        finally:
            reloader.stop()
            if viewers is not None:
                viewers.feed.stop()
        typer.echo(f"stopped on {reason} after {service.counters.requests} requests")
    finally:
        hangups.restore()


def _max_viewers(asked: int | None, max_connections: int) -> int:
    """Live viewers at once: fewer than the connections, so that requests keep a slot.

    A viewer holds its connection as long as it watches and is never made to give way,
    so viewers as many as ``--max-connections`` would leave ``/classify`` and
    ``/health`` waiting in the listen queue.

    Raises:
        InputError: ``asked`` is not below ``max_connections``.
    """
    from edgecnn.runtime.serve.viewers import MAX_VIEWERS

    if asked is None:
        if max_connections < 2:
            raise InputError("--source needs --max-connections of at least 2: one for a "
                             "viewer, one for requests")  # fmt: skip
        return min(MAX_VIEWERS, max_connections // 2)
    if asked >= max_connections:
        raise InputError(
            f"--max-viewers must be below --max-connections ({max_connections}), so that "
            f"requests always have a connection; got {asked}"
        )
    return asked


def _live_options(
    source: str, crop: str, invert: str, timeout: float
) -> tuple[Source, Crop, str, float]:
    """``(Source, Crop, invert, timeout)``, the source opened once to prove it works.

    Raises:
        InputError: not a video source, a bad crop or polarity, or PyAV or Pillow missing.
        StreamError: the source cannot be opened or sends no frame within ``timeout``.
    """
    from edgecnn.runtime.frames import Crop, invert_choice
    from edgecnn.runtime.serve.live import check_source
    from edgecnn.runtime.video import check_support, stream_source

    found = stream_source(source)
    if found is None:
        raise InputError(
            f"--source {source!r:.80} is not a video: give a video file (.mp4, .mkv, .avi, ...), "
            "/dev/videoN, camera:N, or an rtsp:// or http:// URL"
        )
    parsed = Crop.parse(crop)
    invert_choice(invert)
    check_support(found)
    check_source(found, parsed, timeout)
    return found, parsed, invert, timeout


def _viewers(current: Callable[[], Classifier], live: tuple[Source, Crop, str, float],
             model: str, max_viewers: int) -> Viewers:  # fmt: skip
    from edgecnn.runtime.serve.live import LiveFeed, print_note
    from edgecnn.runtime.serve.viewers import Viewers

    source, crop, invert, timeout = live
    feed = LiveFeed(current, source, crop, invert, timeout, notify=print_note)
    return Viewers(feed, model, max_viewers)
