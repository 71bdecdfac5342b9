"""A shared library is code: it runs only when asked for by name, and only once sealed.

A foreign library here has a constructor that writes a marker file the moment the
dynamic loader maps it, before any symbol is looked up; the marker must never appear
under ``auto`` or for a library without a sidecar whose SHA-256 matches its bytes, with
or without ``--no-integrity-check``. The real edgecnn C library (generated from the tiny
int8 model and built with the system compiler, as the exporter does) still loads with
``--backend c``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from mcu_helpers import TINY_INT8, generate_tiny, tiny_metadata
from shared import ARRAY, PICTURE, TINY

from edgecnn.export.formats import c as c_format
from edgecnn.export.mcu import toolchain
from edgecnn.runtime import ModelError, load_classifier
from edgecnn.runtime.backends import BACKENDS, candidates

LIBRARY = "libedgecnn_model.so"
CONSTRUCTOR = """
#include <stdio.h>
__attribute__((constructor)) static void edgecnn_test_ran(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("the constructor ran\\n", f); fclose(f); }
}
int answer(void) { return 42; }
"""


def _compile(source: Path, out: Path, *flags: str) -> Path:
    cc = toolchain.host_compiler()
    assert cc is not None, "the tests need a C compiler"
    toolchain.run([cc, "-shared", "-fPIC", *flags, str(source), "-o", str(out)], "compiling")
    return out


@pytest.fixture
def foreign(tmp_path):
    """A folder holding a foreign ``libedgecnn_model.so``, and the marker it would write."""
    marker = tmp_path / "marker"
    source = tmp_path / "foreign.c"
    source.write_text(CONSTRUCTOR)
    folder = tmp_path / "c"
    folder.mkdir()
    library = _compile(source, folder / LIBRARY, f'-DMARKER="{marker}"')
    return folder, library, marker


@pytest.fixture(scope="module")
def real_c(tmp_path_factory):
    """The tiny int8 model as edgecnn's C library, built and sealed as the exporter does."""
    folder = tmp_path_factory.mktemp("real") / "c"
    generate_tiny(folder)
    host, _ = c_format.build_host_library(folder, tiny_metadata())
    return folder, host


def _predict(*args) -> subprocess.CompletedProcess[str]:
    """``edgecnn predict ARGS`` in a new interpreter, as a user runs it."""
    code = "import sys\nfrom edgecnn.cli import main\nsys.argv = ['edgecnn', *sys.argv[1:]]\nmain()"
    command = [sys.executable, "-c", code, "predict", *(str(a) for a in args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _one_line_error(done: subprocess.CompletedProcess[str], match: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert match in lines[0], lines[0]


def _seal(library: Path, digest: str | None = None) -> None:
    """Write the sidecar an export would, recording ``digest`` (the library's own if None)."""
    document = json.loads((TINY_INT8.with_name(TINY_INT8.name + ".json")).read_text())
    digest = digest or hashlib.sha256(library.read_bytes()).hexdigest()
    document["file"] = {"name": library.name, "sha256": digest}
    library.with_name(library.name + ".json").write_text(json.dumps(document))


def test_auto_never_chooses_native_code():
    assert BACKENDS["c"].native and not BACKENDS["c"].auto
    for suffix in (".so", ".dylib", ".dll"):
        assert candidates(suffix, "auto") == ()
        assert candidates(suffix, "c") == ("c",)


def test_auto_never_loads_a_library(foreign):
    folder, library, marker = foreign
    _seal(library)  # even one whose sidecar vouches for it: loading code needs asking
    for target in (folder, library):
        with pytest.raises(ModelError, match="native library.*--backend c"):
            load_classifier(target)
        with pytest.raises(ModelError, match="native library"):
            load_classifier(target, check_integrity=False)
        _one_line_error(_predict(target, PICTURE), "load it with --backend c")
        _one_line_error(_predict(target, PICTURE, "--no-integrity-check"), "--backend c")
    # A library under another suffix is told by its bytes, and renamed is still refused.
    disguised = folder / "model.tflite"
    shutil.copy(library, disguised)
    _one_line_error(_predict(disguised, PICTURE), "is a .so file with a .tflite name")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["bench", "serve", "evaluate"])
def test_no_command_loads_a_library_under_auto(foreign, command):
    folder, library, marker = foreign
    _seal(library)
    for target in (folder, library):
        assert_one_line_error(invoke(command, target), "load it with --backend c")
    assert not marker.exists()


@pytest.mark.parametrize("sidecar", ["none", "wrong digest", "no file record"])
def test_an_unsealed_library_is_never_loaded_even_when_asked(foreign, sidecar):
    folder, library, marker = foreign
    if sidecar == "wrong digest":
        _seal(library, hashlib.sha256(b"another library").hexdigest())
    elif sidecar == "no file record":
        _seal(library)
        document = json.loads(library.with_name(LIBRARY + ".json").read_text())
        del document["file"]
        library.with_name(LIBRARY + ".json").write_text(json.dumps(document))
    for target in (folder, library):
        for check in (True, False):
            with pytest.raises(ModelError, match="code that runs with your privileges"):
                load_classifier(target, backend="c", check_integrity=check)
        for extra in ((), ("--no-integrity-check",)):
            done = _predict(target, PICTURE, "--backend", "c", *extra)
            _one_line_error(done, "--no-integrity-check does not apply to code")
    assert not marker.exists()


def test_a_library_changed_after_its_export_is_not_loaded(real_c, tmp_path):
    folder = tmp_path / "c"
    shutil.copytree(real_c[0], folder)
    library = folder / real_c[1].name
    marker = tmp_path / "marker"
    source = tmp_path / "foreign.c"
    source.write_text(CONSTRUCTOR)
    _compile(source, library, f'-DMARKER="{marker}"')  # the export's sidecar left as it was
    _one_line_error(_predict(folder, PICTURE, "--backend", "c", "--no-integrity-check"),
                    "SHA-256 differs")  # fmt: skip
    assert not marker.exists()


def test_the_real_c_library_loads_when_asked(real_c):
    folder, host = real_c
    for target in (folder, host):
        clf = load_classifier(target, backend="c")
        assert clf.backend_name == "c"
        assert clf.classify(np.load(ARRAY))[0][0] == "Ankle boot"
    done = _predict(folder, PICTURE, "--backend", "c")
    assert done.returncode == 0 and "Ankle boot" in done.stdout, done.stderr
    _one_line_error(_predict(folder, PICTURE), "load it with --backend c")


def test_the_c_backend_is_installed_everywhere():
    BACKENDS["c"].check_installed()  # an empty "library" is refused before any loader


def test_the_loader_gets_the_bytes_that_were_hashed_not_the_path(real_c, monkeypatch):
    """No check-then-swap: the loader opens a private copy of the bytes read once."""
    import ctypes

    from edgecnn.runtime.backends import c as c_backend

    folder, host = real_c
    opened = []
    real_cdll = ctypes.CDLL

    def recording_cdll(name, *args, **kwargs):
        path = Path(name)
        opened.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(c_backend.ctypes, "CDLL", recording_cdll)
    load_classifier(folder, backend="c")
    ((path, digest),) = opened
    recorded = json.loads(host.with_name(host.name + ".json").read_text())["file"]["sha256"]
    assert digest == recorded and path.resolve() != host.resolve()
    assert not path.exists()  # removed once mapped


def test_the_installed_check_of_native_code_reads_no_file(tmp_path, monkeypatch):
    """``--verify-with c`` checks the backend is installed: no file of the cwd is read."""
    from edgecnn.runtime.backends import c as c_backend

    monkeypatch.chdir(tmp_path)
    (tmp_path / "installed-check.json").write_text("{}")  # once read from the cwd
    read = []
    monkeypatch.setattr(c_backend, "read_sidecar", lambda path: read.append(path))
    monkeypatch.setattr(c_backend, "CBackend", lambda *a: read.append(a))
    BACKENDS["c"].check_installed()
    assert read == []


@pytest.mark.parametrize("failing", ["mkdtemp", "open", "write"])
def test_a_private_copy_that_cannot_be_written_is_one_error_and_leaves_nothing(
    tmp_path, monkeypatch, failing
):
    import errno
    import os
    import tempfile

    from edgecnn.runtime.backends import c as c_backend

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if failing == "mkdtemp":
        monkeypatch.setattr(c_backend.tempfile, "mkdtemp", full)
    elif failing == "open":  # the copy only: rmtree opens folders with os.open too
        real_open = os.open

        def create(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                full()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(c_backend.os, "open", create)
    else:
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fd, mode):
                self.file = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

            def write(self, data):
                full()

        monkeypatch.setattr(c_backend.os, "fdopen", Full)
    with pytest.raises(ModelError, match="cannot copy the library for loading: No space left"):
        c_backend.CBackend(Path("libedgecnn_model.so"), b"\x7fELF")
    assert list(tmp_path.iterdir()) == []  # no folder of edgecnn-c-* left behind


def test_the_folder_and_the_library_in_it_are_named_once():
    from edgecnn.runtime.backends import c as c_backend
    from edgecnn.runtime.loading import library_in

    assert c_backend.LIBRARY_STEM == BACKENDS["c"].folder_stem == Path(LIBRARY).stem
    assert library_in(TINY) == TINY  # a folder of no backend stands for itself


def test_verify_checks_the_sha256_of_the_library_it_loaded(real_c, tmp_path, test_images):
    """``verify exports/c``: the reference's file SHA-256 is checked for a folder too,
    against the bytes the C backend loaded."""
    from edgecnn.runtime.verify import reference_bytes, reference_path, verify

    folder = tmp_path / "c"
    shutil.copytree(real_c[0], folder)
    library = folder / real_c[1].name
    digest = hashlib.sha256(library.read_bytes()).hexdigest()
    images, labels = test_images.x[:200], test_images.y[:200]
    probs = load_classifier(folder, backend="c").predict(images)
    gate = {"file": "c/", "precision": "int8", "backend": "c", "min_agreement": 0.99}
    for target in (folder, library):
        for recorded, passed in ((digest, True), ("0" * 64, False)):
            meta = {**gate, "file_sha256": recorded}
            document = reference_bytes(images, labels, probs, probs, meta)
            reference_path(target).write_bytes(document)
            r = verify(target, backend="c")
            assert r.passed is passed, r.failures
            assert passed or any("SHA-256 differs" in f for f in r.failures)
            assert r.max_steps_from_export is None  # a native library: softmax of logits
