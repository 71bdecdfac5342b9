"""``edgecnn serve`` reloads its model under load: real server, real LiteRT, 8 busy clients.

The two tiny models answer the same picture with slightly different probabilities, so
every answer tells which model gave it.
"""

import ast
import gc
import http.client
import json
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest
from serve_helpers import call, npy_bytes, running_server, wait_until
from shared import TINY

from edgecnn.runtime import load_classifier

OLD, NEW = TINY / "model_float32.tflite", TINY / "model_int8.tflite"
CLIENTS = 8
PICTURES = 16
NOW_SERVING = re.compile(r"^edgecnn: now serving (\S+) (\S+) \(was (\S+)\), switched in (\d+) ms$")


@pytest.fixture(scope="module")
def pictures(test_images):
    """``(npy bodies, {model: [top_k of each picture]})`` with every top_k told apart."""
    old, new = (load_classifier(m, num_threads=1) for m in (OLD, NEW))
    chosen, answers = [], {"old": [], "new": []}
    for image in test_images.x[:200]:
        a, b = old.classify(image, top_k=10), new.classify(image, top_k=10)
        if a != b:
            chosen.append(npy_bytes(image))
            answers["old"].append(a)
            answers["new"].append(b)
        if len(chosen) == PICTURES:
            break
    assert len(chosen) == PICTURES
    return chosen, answers


class Clients:
    """``CLIENTS`` threads classifying the pictures in turn until stopped.

    Each records ``(sent, received, which model answered)`` per request, in its own
    order; ``which`` is ``old``, ``new``, or what went wrong.
    """

    def __init__(self, port, pictures):
        self.port, (self.bodies, self.answers) = port, pictures
        self.records = [[] for _ in range(CLIENTS)]
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def _run(self, client):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        n = client
        while not self.stopping.is_set():
            picture = n % PICTURES
            n += 1
            sent = time.monotonic()
            try:
                status, reply, _ = call(0, "POST", "/classify?top_k=10", self.bodies[picture],
                                        conn=conn)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - a failed request is the finding
                which = f"{type(e).__name__}: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            else:
                which = f"status {status}: {reply}"
                if status == 200:
                    ranked = [(p["label"], p["probability"]) for p in reply["top_k"]]
                    for name, answers in self.answers.items():
                        if ranked == answers[picture]:
                            which = name
            self.records[client].append((sent, time.monotonic(), which))
        conn.close()

    def count(self, which):
        return min(sum(r[2] == which for r in records) for records in self.records)

    def check_one_switch(self):
        """No failure; each answer one model's exactly; old to new once; the counts.

        Per client, requests go one after another: a request sent after an answer from
        the new model is taken by the service after the switch, so no client may see
        the old model after the new. Across clients, answers overlap: a request handed
        to the old workers before the switch may be answered after another client's
        first new answer. What must hold is that it was *sent* before that first new
        answer was received (the switch happened before the new model answered).
        """
        flat = [r for records in self.records for r in records]
        wrong = [r[2] for r in flat if r[2] not in ("old", "new")]
        assert not wrong, (len(wrong), wrong[:3])
        for client, records in enumerate(self.records):
            order = "".join("o" if r[2] == "old" else "n" for r in records)
            assert re.fullmatch("o+n+", order), (client, order)
        first_new = min(r[1] for r in flat if r[2] == "new")
        late = [r for r in flat if r[2] == "old" and r[0] >= first_new]
        assert not late, late[:3]
        overlap = sum(r[2] == "old" and r[1] > first_new for r in flat)
        return len(flat), overlap


def _replace(target, data):
    """Write ``data`` under a temporary name beside ``target``, then rename it over it."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _reload_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("edgecnn: ")]


def _short_sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _switch_ms(line, what):
    found = NOW_SERVING.match(line)
    assert found, line
    ms = int(found.group(4))
    print(f"\n{what}: switched in {ms} ms ({line})")
    assert ms < 30_000  # a bound, not a speed
    return found


def _run_clients_across(server, pictures, switch, switched):
    """Clients busy before, during and after ``switch()``; until ``switched()`` and after."""
    with Clients(server.port, pictures) as clients:
        wait_until(lambda: clients.count("old") >= 5, "answered by the first model")
        switch()
        wait_until(switched, "switched")
        wait_until(lambda: clients.count("new") >= 5, "answered by the new model")
    return clients


def test_sighup_after_replacing_the_file_switches_without_failing_a_request(tmp_path, pictures):
    model = tmp_path / "model.tflite"
    model.write_bytes(OLD.read_bytes())
    old_sha, new_sha = _short_sha(OLD), _short_sha(NEW)
    with running_server(model, "--threads", 2) as server:
        health = call(server.port, "GET", "/health")[1]
        assert (health["model"], health["model_sha256"]) == ("model.tflite", old_sha)
        assert health["model_version"] is None and health["reloads"] == 0

        def switch():
            _replace(model, NEW.read_bytes())
            server.proc.send_signal(signal.SIGHUP)

        def switched():
            return call(server.port, "GET", "/health")[1]["model_sha256"] == new_sha

        clients = _run_clients_across(server, pictures, switch, switched)
        total, overlap = clients.check_one_switch()
        print(f"\n{total} requests, {overlap} old answers received after the first new one")
        health = call(server.port, "GET", "/health")[1]
        assert health["errors"] == 0 and health["reload_failures"] == 0
        meta = call(server.port, "GET", "/metadata")[1]
        assert meta["precision"] == load_classifier(NEW).metadata.precision == "int8"
        lines = _reload_lines(server.stderr())
    # SIGHUP and the file watch may both see the new file: a second reload is of it too.
    assert 1 <= len(lines) == health["reloads"] <= 2, lines
    found = _switch_ms(lines[0], "SIGHUP, file replaced")
    assert found.groups()[:3] == ("model.tflite", new_sha, old_sha)
    assert all(NOW_SERVING.match(line).group(2) == new_sha for line in lines)


def _store(home):
    """``home/models`` with fashion v1 (float32) and v2 (int8), ``current`` at v1."""
    models = home / "models"
    for version, source in (("v1", OLD), ("v2", NEW)):
        folder = models / "fashion" / version
        folder.mkdir(parents=True)
        (folder / "model.tflite").write_bytes(source.read_bytes())
        manifest = {"format": "edgecnn-update", "format_version": 1, "name": "fashion",
                    "version": version, "target": "generic", "machine": None,
                    "model": "model.tflite", "files": {}, "input_shape": [28, 28, 1],
                    "classes": list(load_classifier(source).labels), "edgecnn_version": "0",
                    "created": "2026-01-01T00:00:00Z"}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest))
    os.symlink("fashion/v1", models / "current")
    return models


def test_switching_the_store_current_link_is_followed_without_failing_a_request(tmp_path, pictures):
    models = _store(tmp_path)
    env = {**os.environ, "EDGECNN_HOME": str(tmp_path)}
    with running_server(None, "--threads", 2, env=env) as server:
        assert "fashion v1" in server.banner
        health = call(server.port, "GET", "/health")[1]
        assert (health["model_name"], health["model_version"]) == ("fashion", "v1")
        assert health["model_sha256"] == _short_sha(OLD)

        def switch():
            tmp = models / ".current.tmp"
            os.symlink("fashion/v2", tmp)
            os.replace(tmp, models / "current")

        def switched():
            return call(server.port, "GET", "/health")[1]["model_version"] == "v2"

        clients = _run_clients_across(server, pictures, switch, switched)
        total, overlap = clients.check_one_switch()
        print(f"\n{total} requests, {overlap} old answers received after the first new one")
        health = call(server.port, "GET", "/health")[1]
        assert health["errors"] == 0 and health["reloads"] == 1
        assert health["model_sha256"] == _short_sha(NEW)
        lines = _reload_lines(server.stderr())
    assert len(lines) == 1, lines
    found = _switch_ms(lines[0], "store current switched")
    assert found.groups()[:3] == ("fashion", "v2", "v1")


def test_a_corrupt_model_leaves_the_old_one_serving_with_one_line(tmp_path, pictures):
    bodies, answers = pictures
    model = tmp_path / "model.tflite"
    model.write_bytes(NEW.read_bytes())
    damaged = bytearray(NEW.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # loads, but no longer matches its own digest
    with running_server(model, "--threads", 2) as server:
        _replace(model, bytes(damaged))

        def failed():
            return call(server.port, "GET", "/health")[1]["reload_failures"] == 1

        wait_until(failed, "refused the damaged model")
        time.sleep(2.5)  # more looks at the same damaged file: still one line
        health = call(server.port, "GET", "/health")[1]
        assert health["reloads"] == 0 and health["reload_failures"] == 1
        assert health["model_sha256"] == _short_sha(NEW)
        assert "SHA-256" in health["last_reload_error"] or "digest" in health["last_reload_error"]
        for body, expected in zip(bodies, answers["new"], strict=True):
            status, reply, _ = call(server.port, "POST", "/classify?top_k=10", body)
            assert status == 200
            assert [(p["label"], p["probability"]) for p in reply["top_k"]] == expected
        lines = _reload_lines(server.stderr())
    assert len(lines) == 1, lines
    assert lines[0].startswith("edgecnn: reload failed: ")
    assert lines[0].endswith(f"; still serving model.tflite {_short_sha(NEW)}")
    print(f"\n{lines[0]}")


def test_a_model_of_another_shape_is_refused_and_the_old_keeps_serving(tmp_path, pictures):
    """In process: the reloader refuses a model whose input differs, with one line."""
    from types import SimpleNamespace

    from edgecnn.runtime.serve.reload import Reloader, watched_state
    from edgecnn.runtime.serve.service import ClassifierService

    bodies, answers = pictures
    model = tmp_path / "model.tflite"
    model.write_bytes(OLD.read_bytes())
    service = ClassifierService(load_classifier(model, num_threads=1), 2)
    other = SimpleNamespace(path=model, input_shape=(32, 32, 3))
    lines = []
    reloader = Reloader(service, model, lambda path: other, watched_state(model), log=lines.append)
    try:
        assert reloader.reload() is False
        assert lines == [
            "edgecnn: reload failed: model.tflite takes 32x32x3 images, the model served takes "
            f"28x28x1; still serving model.tflite {_short_sha(OLD)}"
        ]
        health = service.health()
        assert (health["reloads"], health["reload_failures"]) == (0, 1)
        reply = service.submit(bodies[0], 10).result()
        assert [(p["label"], p["probability"]) for p in reply["top_k"]] == answers["old"][0]
        # The same reloader takes a model of the right shape, and requests go to it.
        reloader.load = lambda path: load_classifier(NEW, num_threads=1)
        assert reloader.reload() is True and lines[-1].startswith("edgecnn: now serving ")
        reply = service.submit(bodies[0], 10).result()
        assert [(p["label"], p["probability"]) for p in reply["top_k"]] == answers["new"][0]
    finally:
        service.close()


def test_the_live_feed_follows_the_model_served(test_images):
    """``--source``'s frames are classified by the model served when each batch starts."""
    from edgecnn.runtime.frames import Crop
    from edgecnn.runtime.serve.live import FollowingFrames

    old, new = (load_classifier(m, num_threads=1) for m in (OLD, NEW))
    served = [old]
    frames = FollowingFrames(lambda: served[0], Crop.parse("center"), "no")
    images = test_images.x[:4]

    def answers(classifier):
        return [r.top_k for r in frames.results(classifier.predict(images), range(4), [0.0] * 4)]

    assert answers(old) != answers(new)
    results = frames.classify_prepared(images, range(4), [0.0] * 4)
    assert [r.top_k for r in results] == answers(old)
    served[0] = new  # a reload
    results = frames.classify_prepared(images, range(4), [0.0] * 4)
    assert frames.classifier is new and [r.top_k for r in results] == answers(new)


def test_serve_without_model_or_store_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "EDGECNN_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "edgecnn", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no MODEL given and no current model installed" in lines[0]


#: Run as ``edgecnn``: serve with a SIGHUP sent to itself while the model loads (before the
#: server exists) and again while the service closes (after the event loop has ended).
HANGUP_AT_START_AND_STOP = """
import os, signal, sys

import edgecnn.runtime
from edgecnn.runtime.serve import service

real_load, real_close, loads = edgecnn.runtime.load_classifier, service.ClassifierService.close, []


def load(*args, **kwargs):
    loads.append(1)
    if len(loads) == 1:  # systemctl reload right after start
        os.kill(os.getpid(), signal.SIGHUP)
    return real_load(*args, **kwargs)


def close(self):
    os.kill(os.getpid(), signal.SIGHUP)
    return real_close(self)


edgecnn.runtime.load_classifier, service.ClassifierService.close = load, close
sys.argv = ["edgecnn", *sys.argv[1:]]
from edgecnn.cli import main
main()
"""


def test_a_sighup_while_starting_or_stopping_is_a_reload_not_an_exit(tmp_path):
    import sys

    command = [sys.executable, "-c", HANGUP_AT_START_AND_STOP]
    with running_server(OLD, command=command) as server:
        # The SIGHUP that came while loading is served once the server is up.
        wait_until(lambda: _reload_lines(server.stderr()), "the held reload")
        assert call(server.port, "GET", "/health")[1]["reloads"] == 1
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0, server.stderr()
        assert server.proc.stdout.read().startswith("stopped on SIGTERM after")


def test_a_log_that_fails_neither_stops_the_reloads_nor_keeps_the_old_workers(tmp_path):
    from edgecnn.runtime.serve.reload import Reloader
    from edgecnn.runtime.serve.service import ClassifierService

    model = tmp_path / "model.tflite"
    model.write_bytes(NEW.read_bytes())
    service = ClassifierService(load_classifier(OLD, num_threads=1), 1)
    said = []

    def log(line):
        said.append(line)
        raise OSError("stderr is gone")

    reloader = Reloader(service, model, lambda p: load_classifier(p, num_threads=1), None,
                        interval=60, log=log)  # fmt: skip
    old = service.served
    try:
        assert reloader.reload() is True
        assert old.pool._shutdown and service.classifier.path == model  # the old ones went
        reloader.start()
        model.write_bytes(b"not a model")
        reloader.request()  # fails, and its line cannot be written either
        wait_until(lambda: len(said) == 2, "the failed reload")
        model.write_bytes(NEW.read_bytes())
        reloader.request()
        wait_until(lambda: len(said) == 3, "the reload after it")
        assert said[2].startswith("edgecnn: now serving") and reloader._thread.is_alive()
    finally:
        reloader.stop()
        service.close()


class TakingTurns:
    """A ``gc.callbacks`` entry: two threads hand each other the GIL at every collection
    that starts inside ``ast.parse``.

    A reload's garbage does this now and then to serve's workers (a collection running
    Python code while numpy parses a ``.npy`` header's text); here it happens at every
    collection, so two parses overlap each time unless something keeps them apart. The
    first thread to collect waits up to ``patience`` seconds for the other; one that never
    comes (it waits for the first to finish) leaves the first to go on alone.
    """

    def __init__(self, names, patience=0.5):
        self.names, self.patience = set(names), patience
        self.turn, self.finished, self.alone = None, set(), False
        self.changed = threading.Condition()

    def __call__(self, phase, info):
        me = threading.current_thread().name
        if phase != "start" or me not in self.names or self.alone:
            return
        if sys._getframe(1).f_code is not ast.parse.__code__:
            return
        (other,) = self.names - {me}
        with self.changed:
            self.turn = other
            self.changed.notify_all()
            back = self.changed.wait_for(
                lambda: self.turn == me or other in self.finished, self.patience
            )
            self.alone = self.alone or not back

    def finish(self):
        """The calling thread has parsed: the other need not wait for it any more."""
        with self.changed:
            self.finished.add(threading.current_thread().name)
            self.changed.notify_all()


def test_two_workers_reading_npy_bodies_at_once_both_answer(test_images):
    """Two of serve's workers parse ``.npy`` headers at once, and both get the array.

    What the 500 (SystemError) seen once in the store-switch test above was: numpy parses
    a header's text with ``ast.literal_eval``, and CPython before 3.11.8 counts the AST
    builder's depth in one place for every thread (python/cpython#106905). The two parses
    here take turns at every collection inside it, so they overlap every run, not once in
    ten.
    """
    from edgecnn.runtime.serve.service import read_npy

    image, shape = test_images.x[0], load_classifier(OLD).input_shape
    body = npy_bytes(image)
    turns, parsed = TakingTurns(("worker-a", "worker-b")), {}

    def parse():
        name = threading.current_thread().name
        try:
            parsed[name] = read_npy(body, shape)
        except Exception as e:  # noqa: BLE001 - a failed parse is the finding
            parsed[name] = f"{type(e).__name__}: {e}"
        finally:
            turns.finish()

    threads = [threading.Thread(target=parse, name=name) for name in sorted(turns.names)]
    thresholds = gc.get_threshold()
    gc.callbacks.append(turns)
    gc.set_threshold(1)  # a collection at almost every allocation
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        gc.callbacks.remove(turns)
        gc.set_threshold(*thresholds)
    failed = {name: got for name, got in parsed.items() if isinstance(got, str)}
    assert not failed and len(parsed) == 2, failed
    for array in parsed.values():
        np.testing.assert_array_equal(array, image)


class HeldClassifier:
    """A real classifier whose ``answer`` waits for ``release`` while ``hold`` is set."""

    def __init__(self, classifier):
        self._classifier = classifier
        self.hold, self.entered, self.release = (threading.Event() for _ in range(3))

    def __getattr__(self, name):
        return getattr(self._classifier, name)

    def answer(self, image, top_k=None):
        if self.hold.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return self._classifier.answer(image, top_k=top_k)


def test_a_request_inside_the_old_model_during_the_switch_is_answered_by_it(tmp_path, pictures):
    """The switch closes nothing under a request: the old workers go once it is answered.

    Meanwhile new requests are answered by the new model.
    """
    from edgecnn.runtime.serve.reload import Reloader
    from edgecnn.runtime.serve.service import ClassifierService

    bodies, answers = pictures
    model = tmp_path / "model.tflite"
    model.write_bytes(NEW.read_bytes())
    old = HeldClassifier(load_classifier(OLD, num_threads=1))
    service = ClassifierService(old, 1)
    reloader = Reloader(service, model, lambda p: load_classifier(p, num_threads=1), None,
                        log=lambda line: None)  # fmt: skip
    old_workers, reloaded = service.served, []
    try:
        old.hold.set()
        held = service.submit(bodies[0], 10)
        assert old.entered.wait(60)
        reloading = threading.Thread(target=lambda: reloaded.append(reloader.reload()))
        reloading.start()
        wait_until(lambda: service.served is not old_workers, "switched")
        reply = service.submit(bodies[1], 10).result(60)
        assert [(p["label"], p["probability"]) for p in reply["top_k"]] == answers["new"][1]
        assert reloading.is_alive()  # closing the old workers waits for the held request
        old.release.set()
        reply = held.result(60)
        assert [(p["label"], p["probability"]) for p in reply["top_k"]] == answers["old"][0]
        reloading.join(60)
        assert reloaded == [True]
    finally:
        old.release.set()
        service.close()
