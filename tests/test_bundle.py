"""``edgecnn bundle``: an archive that installs edgecnn and a verified model offline.

The emulated Raspberry Pi tests install the pi64 and pi32 bundles inside both systems;
here the linux-x86 bundle is installed on this machine with its own install.sh, and bad
input gets its one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import tiny_exports_with_references

from edgecnn import __version__
from edgecnn.pipeline.bundle import TARGETS, readme

N = 200
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, test_images):
    folder = tmp_path_factory.mktemp("run") / "exports"
    folder.mkdir()
    return tiny_exports_with_references(folder, test_images.x[:N], test_images.y[:N])


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--target", "pi99"], "--target must be one of pi64, pi32, linux-x86, generic"),
        (["--target", "pi64", "--model", "nope.tflite"], "not a file of this export"),
        (["--target", "pi32", "--model", "model_int8.onnx"], "no interpreter for .onnx files"),
        (["--target", "pi64", "--model", ","], "--model takes exported file names"),
        (["--target", "pi64", "--python", "3"], "--python takes versions such as 3.11"),
        (["--target", "pi64", "--python", "3.9"], "--python takes versions such as 3.11"),
        (["--target", "pi64", "--python", ","], "--python takes versions"),
        (["--target", "pi64", "--wheels", "/nonexistent"], "not a folder"),
    ],
)
def test_bad_options_get_one_line(exports, tmp_path, args, match):
    out = tmp_path / "b.tar.gz"
    result = invoke("bundle", exports, *args, "--out", out)
    assert_one_line_error(result, match)
    assert not out.exists() and not _leftovers(tmp_path)


def test_a_folder_without_exports_gets_one_line(tmp_path):
    assert_one_line_error(invoke("bundle", tmp_path, "--target", "pi64"), "run edgecnn export")
    assert_one_line_error(invoke("bundle", tmp_path / "missing", "--target", "pi64"), "not exist")


def test_a_rejected_or_incomplete_file_is_not_bundled(exports, tmp_path):
    broken = tmp_path / "exports"
    broken.mkdir()
    report = json.loads((exports / "export_report.json").read_text())
    report["files"][0]["passed"] = False
    (broken / "export_report.json").write_text(json.dumps(report))
    rejected = report["files"][0]["file"]
    result = invoke("bundle", broken, "--target", "pi64", "--model", rejected)
    assert_one_line_error(result, "failed its gate")
    result = invoke("bundle", broken, "--target", "pi64", "--model", "model_int8.tflite")
    assert_one_line_error(result, "is missing; export again")  # no file beside the report


def test_a_failed_download_leaves_nothing_behind(exports, tmp_path):
    """With an empty --wheels folder pip finds nothing (not even setuptools to build
    edgecnn's wheel offline); one line, no archive, no temporary folder."""
    empty = tmp_path / "wheels"
    empty.mkdir()
    out = tmp_path / "out" / "b.tar.gz"
    result = invoke("bundle", exports, "--target", "pi64", "--wheels", empty, "--out", out)
    assert_one_line_error(result, "failed")
    assert not out.exists() and not _leftovers(out.parent)


def test_every_target_says_what_it_carries():
    for target in TARGETS.values():
        assert target.notes and target.name
    text = readme({"edgecnn_version": "1", "target_name": "X", "model": "m.tflite",
                   "notes": "n", "pythons": {"3.11": {"requirements": ["edgecnn"],
                                                      "model": "weights.npz",
                                                      "missing": "tflite-runtime"}}})  # fmt: skip
    assert "sh install.sh" in text and "no tflite-runtime wheel" in text


@pytest.mark.slow
def test_the_x86_bundle_installs_offline_and_verifies_here(exports, tmp_path, test_images):
    """Build for this machine's Python, unpack, run install.sh with no index: verify passes.

    Then a tampered model makes install.sh exit 1, and a foreign bundle exits 2.
    """
    out = tmp_path / "edgecnn-linux-x86.tar.gz"
    result = invoke("bundle", exports, "--target", "linux-x86", "--python", PYTHON, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"tar xzf {out.name} && sh edgecnn-linux-x86/install.sh" in result.stdout
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    bundle = tmp_path / "device" / "edgecnn-linux-x86"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["pythons"][PYTHON]["requirements"][0] == "edgecnn"
    for name, digest in manifest["files"].items():
        assert len(digest) == 64 and (bundle / name).is_file(), name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    # No package index reachable: a proxy that does not exist.
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1", HOME=str(tmp_path))
    python_dir = str(Path(sys.executable).resolve().parent)
    env["PATH"] = python_dir + os.pathsep + env.get("PATH", "")
    venv = tmp_path / "venv"
    done = subprocess.run(["sh", str(bundle / "install.sh"), str(venv)], capture_output=True,
                          text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout and f"{venv}/bin/edgecnn predict" in done.stdout
    model = bundle / "model" / manifest["model"]
    np.save(tmp_path / "two.npy", test_images.x[:2])
    predicted = subprocess.run([str(venv / "bin" / "edgecnn"), "predict", str(model),
                                str(tmp_path / "two.npy"), "--json"],
                               capture_output=True, text=True, env=env)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["results"]) == 2
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    tampered = subprocess.run(["sh", str(bundle / "install.sh"), str(venv)], capture_output=True,
                              text=True, env=env, timeout=600)  # fmt: skip
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "FAIL" in tampered.stdout and "did not pass edgecnn verify" in tampered.stderr
    manifest["machine"] = "riscv64"
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    foreign = subprocess.run(["sh", str(bundle / "install.sh"), str(venv)], capture_output=True,
                             text=True, env=env)  # fmt: skip
    assert foreign.returncode == 2 and foreign.stderr.count("\n") == 1
    assert "this bundle is for" in foreign.stderr and "riscv64" in foreign.stderr


def test_the_generic_bundle_carries_edgecnn_and_the_model_only(exports, tmp_path):
    out = tmp_path / "generic"
    result = invoke("bundle", exports, "--target", "generic", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"sh {out.name}/install.sh" in result.stdout
    wheels = [p.name for p in (out / "wheels").iterdir()]
    assert wheels == [f"edgecnn-{__version__}-py3-none-any.whl"]
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["machine"] is None and manifest["pythons"] == {}
    assert os.access(out / "install.sh", os.X_OK)
    assert {"model_int8.tflite", "weights.npz"} <= set(manifest["models"])
    assert "package index" in (out / "README.txt").read_text()


def test_out_never_replaces_a_folder_that_is_not_a_bundle(exports, tmp_path):
    precious = tmp_path / "Desktop"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    result = invoke("bundle", exports, "--target", "generic", "--out", precious)
    assert_one_line_error(result, "is a folder that is not a bundle")
    assert (precious / "notes.txt").read_text() == "mine"
    assert_one_line_error(invoke("bundle", exports, "--target", "generic", "--out",
                                 tmp_path), "not a bundle")  # fmt: skip
    folder = tmp_path / "b.tgz"
    folder.mkdir()
    assert_one_line_error(invoke("bundle", exports, "--target", "pi64", "--out", folder),
                          "is a folder; name the archive")  # fmt: skip
    (exports / "c").mkdir(exist_ok=True)  # as edgecnn export --formats c writes it
    try:
        assert_one_line_error(invoke("bundle", exports, "--target", "pi64", "--model", "c"),
                              "folders (the C library, TFLM) are not bundled")  # fmt: skip
    finally:
        (exports / "c").rmdir()


def test_a_damaged_bundle_json_is_one_line_from_install_sh(exports, tmp_path):
    out = tmp_path / "generic"
    assert invoke("bundle", exports, "--target", "generic", "--out", out).exit_code == 0
    manifest = json.loads((out / "bundle.json").read_text())
    assert "install.sh" in manifest["files"] and "README.txt" in manifest["files"]
    (out / "bundle.json").write_text("{not json")
    done = subprocess.run(["sh", str(out / "install.sh"), str(tmp_path / "venv")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "bundle.json is unreadable" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "venv").exists()
