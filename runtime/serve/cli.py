"""``edgecnn serve``: classify pictures over HTTP on a small device, standard library only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.runtime.cli import BackendName, BackendOption, ModelArg

#: Large enough for a phone photo; the limit is what a connection may hold in memory.
DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 16


def serve_command(
    model: ModelArg,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 serves other machines too.")
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
    ] = DEFAULT_MAX_BODY,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1,
            help="Open connections at most; more clients wait to be accepted. Bounds memory "
            "to about this times --max-body-bytes.",
        ),
    ] = DEFAULT_MAX_CONNECTIONS,
    backend: BackendOption = BackendName.auto,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="One line per request on stderr.")
    ] = False,
) -> None:
    """Serve a model over HTTP: POST /classify, GET /health, GET /metadata.

    POST a picture (PNG, JPEG, BMP) or a .npy array as the raw body to /classify
    (?top_k=N) and get JSON back. SIGTERM or Ctrl-C stops accepting, lets in-flight
    requests finish, and exits 0.
    """
    from edgecnn._quiet import native_stderr_hidden
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.litert import default_threads
    from edgecnn.runtime.serve import make_server, serve_until_signalled
    from edgecnn.runtime.service import ClassifierService

    workers = threads or default_threads()
    # Every worker's interpreter is made here, so LiteRT's banner is hidden once for all.
    with native_stderr_hidden():
        classifier = load_classifier(model, backend=backend.value, num_threads=1)
        service = ClassifierService(classifier, workers)
    try:
        server = make_server(service, host, port, max_connections, max_body_bytes, access_log)
    except BaseException:
        service.close()
        raise
    typer.echo(
        f"serving {Path(model).name} ({classifier.backend_name}, {workers} workers) "
        f"on {server.url} ; Ctrl-C or SIGTERM stops"
    )
    reason = serve_until_signalled(server)
    typer.echo(f"stopped on {reason} after {service.counters.requests} requests")
