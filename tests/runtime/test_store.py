"""The model store: versions, the ``current`` and ``previous`` links, and power cuts.

A power cut is approximated: the operation runs in a child process that calls
``os._exit`` (no cleanup, no ``finally``) just before its Nth change to the file system
(a rename, a link, a removal, a folder made, a flush), for every N until it completes.
The kernel's page cache survives ``os._exit``, so this proves the order of the
operations (every state between two steps is a working store), not that the flushes
reach the disk. After each cut, ``current`` must point at a complete version,
``current`` and ``previous`` must be one of the pairs the operation may leave, and the
next operation must clean what the cut left.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from cli_helpers import assert_one_line_error, invoke

from edgecnn.runtime.errors import InputError
from edgecnn.runtime.store import Store, check_name, current_model, home, resolve_model

MODEL = "m.tflite"


def manifest(version: str) -> bytes:
    return json.dumps({"model": MODEL, "created": f"2026-12-03T12:00:0{version[-1]}Z"}).encode()


def files(folder, version):
    """A version's files (their content names the version)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in (MODEL, f"{MODEL}.json", f"{MODEL}.reference.npz"):
        (folder / name).write_text(f"{name} of {version}")
        out[name] = folder / name
    return out


def add(store, tmp_path, version):
    with store.locked():
        v = store.install("m", version, files(tmp_path / f"src-{version}", version),
                          manifest(version))  # fmt: skip
        store.switch(v)
        store.prune("m")
    return v


def link(store, which):
    path = store.root / which
    return os.readlink(path) if path.is_symlink() else None


def assert_working(store, allowed, pairs=None):
    """``current`` points at one of ``allowed``, complete; a later lock cleans the rest.

    With ``pairs``, ``(current, previous)`` once the lock has recovered is one of them.
    """
    target = link(store, "current")
    assert target in {f"m/{v}" for v in allowed}, target
    version = target.split("/")[1]
    current = store.current()
    assert current is not None and current.model.read_text() == f"{MODEL} of {version}"
    for name in (f"{MODEL}.json", f"{MODEL}.reference.npz", "manifest.json"):
        assert (current.folder / name).is_file()
    with store.locked():
        pass
    assert [p.name for p in store.root.rglob(".*tmp-*")] == []
    assert [p.name for p in store.root.glob(".previous*")] == []
    if pairs is not None:
        found = (link(store, "current"), link(store, "previous"))
        assert found in {(f"m/{c}", f"m/{p}") for c, p in pairs}, found
    # Every version folder left is complete.
    for v in store.versions():
        assert v.model.is_file() and (v.folder / "manifest.json").is_file()
    return version


def test_install_switch_rollback_and_links_are_relative(tmp_path):
    store = Store(tmp_path / "models")
    assert store.current() is None and store.versions() == []
    add(store, tmp_path, "v1")
    assert link(store, "current") == "m/v1" and link(store, "previous") is None
    add(store, tmp_path, "v2")
    assert link(store, "current") == "m/v2" and link(store, "previous") == "m/v1"
    with store.locked():
        assert store.rollback().version == "v1"
    assert link(store, "current") == "m/v1" and link(store, "previous") == "m/v2"
    # Moving the whole store keeps it working: the links are relative.
    os.rename(tmp_path / "models", tmp_path / "moved")
    assert Store(tmp_path / "moved").current().version == "v1"


def test_install_refuses_a_version_twice_and_bad_names(tmp_path):
    store = Store(tmp_path / "models")
    add(store, tmp_path, "v1")
    with pytest.raises(InputError, match="installed already"), store.locked():
        store.install("m", "v1", files(tmp_path / "again", "v1"), manifest("v1"))
    for bad in ("", ".", "..", ".hidden", "a/b", "x" * 65, "-x", "current", "previous"):
        with pytest.raises(InputError):
            check_name(bad, "name")


def test_prune_keeps_the_newest_three_and_current_and_previous(tmp_path):
    store = Store(tmp_path / "models")
    for v in ("v1", "v2", "v3", "v4", "v5"):
        add(store, tmp_path, v)
    assert [v.version for v in store.versions()] == ["v3", "v4", "v5"]
    with store.locked():
        store.switch(store.find("v3"))  # previous: v5
        store.switch(store.find("v4"))  # previous: v3
    add(store, tmp_path, "v6")  # previous: v4
    add(store, tmp_path, "v7")  # previous: v6
    assert [v.version for v in store.versions()] == ["v5", "v6", "v7"]


def test_home_and_resolve_model(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path))
    assert home() == tmp_path and current_model() is None
    with pytest.raises(InputError, match="no MODEL given and no current model installed"):
        resolve_model(None)
    assert resolve_model(tmp_path / "x.tflite") == tmp_path / "x.tflite"
    add(Store(), tmp_path, "v1")
    assert current_model() == (tmp_path / "models" / "m" / "v1" / MODEL).resolve()
    assert resolve_model(None) == current_model()
    monkeypatch.delenv("EDGECNN_HOME")
    assert home() == __import__("pathlib").Path(sys.prefix)


#: Run in the child: the file system calls, each cut before its Nth use.
CUT = """
import os, shutil, sys
from pathlib import Path
limit, calls = int(sys.argv[1]), [0]
def cut(real):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] > limit:
            os._exit(77)
        return real(*args, **kwargs)
    return wrapper
for name in ("rename", "replace", "symlink", "unlink", "mkdir", "rmdir", "fsync"):
    setattr(os, name, cut(getattr(os, name)))
sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]
from edgecnn.runtime.store import Store
from test_store import files, manifest
store, tmp = Store(Path(sys.argv[3]) / "models"), Path(sys.argv[3])
with store.locked():
"""
BEFORE = ("v3", "v2")
OPERATIONS = {
    # operation: (its code in the child, the (current, previous) pairs a cut may leave)
    "install and switch": (
        "    v = store.install('m', 'v4', files(tmp / 'src-v4', 'v4'), manifest('v4'))\n"
        "    store.switch(v)\n    store.prune('m')\n",
        {BEFORE, ("v4", "v3")},
    ),
    "rollback": ("    store.rollback()\n", {BEFORE, ("v2", "v3")}),
    "rollback twice": (
        "    store.rollback()\n    store.rollback()\n",
        {BEFORE, ("v2", "v3")},
    ),  # fmt: skip
    "use": ("    store.switch(store.find('v1'))\n", {BEFORE, ("v1", "v3")}),
    "remove": ("    store.remove(store.find('v1'))\n", {BEFORE}),
    "prune": ("    store.prune('m', keep=1)\n", {BEFORE}),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_power_cut_at_any_step_leaves_a_working_current(operation, tmp_path):
    code, pairs = OPERATIONS[operation]
    allowed = {current for current, _ in pairs}
    tests = os.path.dirname(__file__)
    cuts = 0
    for limit in range(200):
        run = tmp_path / str(limit)
        store = Store(run / "models")
        for v in ("v1", "v2", "v3"):
            add(store, run, v)
        # v1, v2, v3 installed; current v3, previous v2
        child = subprocess.run([sys.executable, "-c", CUT + code, str(limit), tests, str(run)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert child.returncode in (0, 77), child.stderr
        assert_working(store, allowed, pairs)
        if child.returncode == 0:
            break
        cuts += 1
    else:
        pytest.fail("the operation never completed")
    assert cuts >= 3  # it was cut at several steps
    # And after the whole operation, the store is what it says.
    final = {"install and switch": "m/v4", "rollback": "m/v2", "use": "m/v1",
             "rollback twice": "m/v3"}  # fmt: skip
    assert link(store, "current") == final.get(operation, "m/v3")


def test_an_error_at_any_rename_of_models_add_leaves_a_working_current(tmp_path, monkeypatch, tiny):
    """The same with an exception (a full disk, say) at each rename: one line, exit 2."""
    import shutil

    monkeypatch.setenv("EDGECNN_HOME", str(tmp_path))
    src = tmp_path / "src"
    src.mkdir()
    for f in ("model_int8.tflite", "model_int8.tflite.json"):
        shutil.copy(tiny / f, src / f)
    (src / "model_int8.tflite.reference.npz").write_bytes(b"not checked with --no-verify")

    def add_version(version):
        return invoke("models", "add", src / "model_int8.tflite", "--name", "m",
                      "--version", version, "--no-verify")  # fmt: skip

    assert add_version("v1").exit_code == 0
    real = {name: getattr(os, name) for name in ("rename", "replace")}
    for limit in range(20):
        calls = [0]
        for name, fn in real.items():
            monkeypatch.setattr(os, name, _failing_after(fn, limit, calls))
        result = add_version(f"w{limit}")
        for name, fn in real.items():
            monkeypatch.setattr(os, name, fn)
        store = Store(tmp_path / "models")
        target = link(store, "current")
        assert target in ("m/v1", f"m/w{limit}") or target.startswith("m/w"), target
        assert store.current().model.is_file()
        if result.exit_code == 0:
            break
        assert_one_line_error(result, "no space left on the device")
    else:
        pytest.fail("models add never completed")
    with store.locked():
        pass
    assert [p.name for p in store.root.rglob(".*tmp-*")] == []


def _failing_after(real_call, limit, calls):
    """``real_call``, raising "no space left" once ``calls`` (shared) exceeds ``limit``."""

    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] > limit:
            raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))
        return real_call(*args, **kwargs)

    return call


def test_a_new_name_folder_is_flushed_in_the_store(tmp_path, monkeypatch):
    import edgecnn.runtime.store as store_module

    flushed = []
    real = store_module.sync_dir
    monkeypatch.setattr(store_module, "sync_dir", lambda p: (flushed.append(p), real(p))[1])
    store = Store(tmp_path / "models")
    with store.locked():
        store.install("m", "v1", files(tmp_path / "src", "v1"), manifest("v1"))
    assert flushed.index(store.root) < flushed.index(store.root / "m")


def test_a_file_of_an_installed_version_is_copied_not_moved(tmp_path):
    store = Store(tmp_path / "models")
    v1 = add(store, tmp_path, "v1")
    with store.locked():
        store.install("n", "w1", {MODEL: v1.model}, manifest("w1"))
    assert v1.model.read_text() == f"{MODEL} of v1"
    with store.locked():
        scratch = store.scratch("update")
        moved = files(scratch, "v2")
        store.install("m", "v2", moved, manifest("v2"), scratch=scratch)
        assert not moved[MODEL].exists()  # the update's own files are moved
