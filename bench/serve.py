"""`edgecnn serve` under concurrent clients, beside the same requests through `classify`.

Starts the real server in a subprocess, drives it with N keep-alive clients, and runs the
same bodies through `load_classifier(...).classify` from N threads in this process, in
alternating rounds, so that the HTTP overhead is a ratio measured in one run.

    python bench/serve.py MODEL_OR_DIR [--clients 8] [--requests 250] [--threads N]
                          [--body png|npy] [--rounds 3]

MODEL_OR_DIR is a model file, an exports folder, or a run folder (its exports/), where
model_int8.tflite is taken. Bodies are real Fashion-MNIST test images.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecnn.runtime import load_classifier
from edgecnn.runtime.backends import default_threads
from edgecnn.trainer.idx import load_dataset


def resolve(path: Path) -> Path:
    for candidate in (path, path / "model_int8.tflite", path / "exports" / "model_int8.tflite"):
        if candidate.is_file():
            return candidate
    sys.exit(f"error: no model at {path} (nor model_int8.tflite in it or in its exports/)")


def bodies(kind: str, n: int) -> list[bytes]:
    images = load_dataset("fashion").x_test[:n]
    out = []
    for image in images:
        buffer = io.BytesIO()
        if kind == "png":
            Image.fromarray(image).save(buffer, "PNG")
        else:
            np.save(buffer, image)
        out.append(buffer.getvalue())
    return out


def start_server(model: Path, threads: int) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "edgecnn", "serve", str(model), "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--threads", str(threads)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://[^ ]+:(\d+)/", line)
    if not match:
        proc.kill()
        sys.exit(f"error: the server did not start: {line!r}")
    return proc, int(match.group(1))


def run_clients(n: int, work: Any) -> tuple[float, list[float]]:
    """Run ``work(client, latencies)`` in n threads; wall seconds and all latencies."""
    latencies: list[list[float]] = [[] for _ in range(n)]
    threads = [threading.Thread(target=work, args=(i, latencies[i])) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, [x for lat in latencies for x in lat]


def http_round(port: int, data: list[bytes], clients: int, requests: int) -> tuple[float, list]:
    replies: dict[int, Any] = {}

    def work(client: int, latencies: list[float]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for j in range(requests):
            k = (client * requests + j) % len(data)
            t0 = time.perf_counter()
            conn.request("POST", "/classify", data[k])
            reply = conn.getresponse()
            body = reply.read()
            latencies.append(time.perf_counter() - t0)
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}: {body[:200]!r}")
            replies[k] = json.loads(body)["top_k"]
        conn.close()

    wall, latencies = run_clients(clients, work)
    return wall, [latencies, replies]


def api_round(clf: Any, data: list[Any], clients: int, requests: int) -> tuple[float, list]:
    replies: dict[int, Any] = {}

    def work(client: int, latencies: list[float]) -> None:
        for j in range(requests):
            k = (client * requests + j) % len(data)
            t0 = time.perf_counter()
            ranked = clf.classify(data[k], top_k=3)
            latencies.append(time.perf_counter() - t0)
            replies[k] = [{"label": lab, "probability": p} for lab, p in ranked]

    wall, latencies = run_clients(clients, work)
    return wall, [latencies, replies]


def summary(wall: float, latencies: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(latencies) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(ms) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="per client per round")
    parser.add_argument("--threads", type=int, default=default_threads(), help="server workers")
    parser.add_argument("--body", choices=("png", "npy"), default="png")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = resolve(args.model)
    data = bodies(args.body, 500)
    # In-process the .npy bodies are the arrays an app would already hold.
    api_data: list[Any] = data if args.body == "png" else [np.load(io.BytesIO(b)) for b in data]
    clf = load_classifier(model, num_threads=1)  # what each server worker runs
    proc, port = start_server(model, args.threads)
    total = args.clients * args.requests
    print(
        f"{model.name}, {args.body} bodies, {args.clients} clients x {args.requests} requests "
        f"per round, server --threads {args.threads}, {args.rounds} rounds"
    )
    print(f"{'round':>5s} {'path':6s} {'p50 ms':>7s} {'p99 ms':>7s} {'req/s':>7s}")
    results: dict[str, list[tuple[float, float, float]]] = {"http": [], "api": []}
    mismatches = 0
    try:
        http_round(port, data, args.clients, 20)  # warm both sides up
        api_round(clf, api_data, args.clients, 20)
        for r in range(args.rounds):
            for path, run in (
                ("http", lambda: http_round(port, data, args.clients, args.requests)),
                ("api", lambda: api_round(clf, api_data, args.clients, args.requests)),
            ):
                wall, (latencies, replies) = run()
                assert len(latencies) == total
                results[path].append(summary(wall, latencies))
                p50, p99, rps = results[path][-1]
                print(f"{r + 1:5d} {path:6s} {p50:7.2f} {p99:7.2f} {rps:7.0f}")
                if path == "http":
                    http_replies = replies
                else:
                    mismatches += sum(http_replies[k] != v for k, v in replies.items())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    med = {p: np.median(np.asarray(v), axis=0) for p, v in results.items()}
    print(
        f"median: HTTP p50 {med['http'][0]:.2f} ms, p99 {med['http'][1]:.2f} ms, "
        f"{med['http'][2]:.0f} req/s; classify p50 {med['api'][0]:.2f} ms, "
        f"p99 {med['api'][1]:.2f} ms, {med['api'][2]:.0f} req/s"
    )
    print(
        f"HTTP / classify: p50 {med['http'][0] / med['api'][0]:.1f}x, "
        f"throughput {med['http'][2] / med['api'][2]:.2f}x; "
        f"answers differing from classify: {mismatches}; server exit code {proc.returncode}"
    )


if __name__ == "__main__":
    main()
