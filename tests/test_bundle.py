"""``edgecnn bundle``: an archive that installs edgecnn and a verified model offline.

The emulated Raspberry Pi tests install the pi64 and pi32 bundles inside both systems;
here the linux-x86 bundle is installed on this machine with its own install.sh, and bad
input gets its one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from report_helpers import bench_result
from shared import tiny_exports_with_references

from edgecnn import __version__
from edgecnn.export.records import ExportReport
from edgecnn.pipeline.bundle import _recommended
from edgecnn.pipeline.bundle_readme import readme
from edgecnn.pipeline.devices import BUNDLE_TARGETS

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
    for target in BUNDLE_TARGETS.values():
        assert target.notes and target.systems
    text = readme({"edgecnn_version": "1", "target_name": "X", "model": "m.tflite",
                   "notes": "n", "pythons": {"3.11": {"requirements": ["edgecnn"],
                                                      "model": "weights.npz",
                                                      "missing": "tflite-runtime"}}})  # fmt: skip
    assert "sh install.sh" in text and "no tflite-runtime wheel" in text
    assert "SHA256SUMS" in text and "archive's SHA-256" in text
    assert "GNU coreutils' sha256sum" in text and "python3 -I" in text
    assert "need PyAV (av)" not in text and "edgecnn bundle --video" in text
    video = {"3.11": {"requirements": ["edgecnn", "pillow", "av"], "model": "m"}}
    assert "need PyAV (av)" in readme({"edgecnn_version": "1", "target_name": "X", "model": "m",
                                       "notes": "n", "pythons": video, "video": True})  # fmt: skip


@pytest.mark.slow
def test_the_x86_bundle_installs_offline_and_verifies_here(exports, tmp_path, test_images):
    """Build for this machine's Python, unpack in a path with spaces, run install.sh with no
    index: verify passes, and the command it closes with runs as printed.

    Then a tampered model is refused before anything runs (exit 2); the same file with
    SHA256SUMS and bundle.json hashed again fails edgecnn verify (exit 1, in a new venv:
    the first holds the sound file under that version); a reference verify cannot read
    exits 2, and so does a foreign bundle.
    """
    out = tmp_path / "edgecnn-linux-x86.tar.gz"
    result = invoke("bundle", exports, "--target", "linux-x86", "--python", PYTHON, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"tar xzf {out.name} && sh edgecnn-linux-x86/install.sh" in result.stdout
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"SHA-256 of {out.name}: {digest}" in result.stdout
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "my device", filter="data")
    bundle = tmp_path / "my device" / "edgecnn-linux-x86"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["pythons"][PYTHON]["requirements"][0] == "edgecnn"
    for name, digest in manifest["files"].items():
        assert len(digest) == 64 and (bundle / name).is_file(), name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    # No package index reachable: a proxy that does not exist.
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1", HOME=str(tmp_path))
    python_dir = str(Path(sys.executable).resolve().parent)
    env["PATH"] = python_dir + os.pathsep + env.get("PATH", "")
    venv = tmp_path / "edge venv"
    done = _install(bundle, venv, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    assert "a bundle made with edgecnn bundle --video carries PyAV" in done.stdout
    model = bundle / "model" / manifest["model"]
    closing = f"'{venv}/bin/edgecnn' predict '{bundle}/{manifest['sample']}'"
    assert done.stdout.rstrip().endswith(
        closing + f"\nand a picture of yours:\n  '{venv}/bin/edgecnn' predict picture.png"
    ), done.stdout
    np.save(tmp_path / "two.npy", test_images.x[:2])
    command = closing.replace(f"'{bundle}/{manifest['sample']}'", f"'{tmp_path}/two.npy' --json")
    predicted = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env)
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["results"]) == 2
    _flip(model)
    tampered = _install(bundle, venv, env=env)
    assert tampered.returncode == 2, tampered.stdout + tampered.stderr
    assert f"model/{model.name} does not match its SHA-256" in tampered.stderr
    _reseal(bundle)  # the same damage, hashed again: edgecnn verify still catches it
    venv = tmp_path / "edge venv 2"
    resealed = _install(bundle, venv, env=env)
    assert resealed.returncode == 1, resealed.stdout + resealed.stderr
    assert "FAIL" in resealed.stdout and "did not pass edgecnn verify" in resealed.stderr
    assert not (venv / "models" / "current").exists()
    Path(f"{model}.reference.npz").write_bytes(b"not a reference")
    _reseal(bundle)  # a reference verify cannot read: bad input, exit 2
    unreadable = _install(bundle, venv, env=env)
    assert unreadable.returncode == 2, unreadable.stdout + unreadable.stderr
    assert "edgecnn verify could not check" in unreadable.stderr
    manifest["machine"] = "riscv64"
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    _reseal(bundle)
    foreign = _install(bundle, venv, env=env)
    assert foreign.returncode == 2 and foreign.stderr.count("\n") == 1
    assert "this bundle is for" in foreign.stderr and "riscv64" in foreign.stderr


@pytest.mark.slow
def test_a_video_bundle_installs_pyav_offline_and_classifies_a_clip(exports, tmp_path,
                                                                     test_images):  # fmt: skip
    """``--video`` carries PyAV's wheel: installed with no index, the venv's edgecnn
    classifies an MP4 frame by frame as this machine's does."""
    from video_files import make_video

    out = tmp_path / "video"
    result = invoke("bundle", exports, "--target", "linux-x86", "--python", PYTHON, "--video",
                    "--model", "model_int8.tflite", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["video"] is True
    assert manifest["pythons"][PYTHON]["requirements"][-2:] == ["pillow", "av"]
    assert "need PyAV (av)" in (out / "README.txt").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1", HOME=str(tmp_path))
    env["PATH"] = str(Path(sys.executable).resolve().parent) + os.pathsep + env.get("PATH", "")
    done = _install(out, tmp_path / "venv", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PyAV" not in done.stdout and "Pillow" not in done.stdout, done.stdout
    clip = make_video(tmp_path / "clip.mp4", test_images.x[:3], hold=2).path
    model = str(out / "model" / "model_int8.tflite")
    answers = [
        subprocess.run([*edgecnn, "predict", model, str(clip), "--jsonl"], capture_output=True,
                       text=True, env=env)
        for edgecnn in ([str(tmp_path / "venv" / "bin" / "edgecnn")],
                        [sys.executable, "-m", "edgecnn"])
    ]  # fmt: skip
    assert [a.returncode for a in answers] == [0, 0], [a.stderr for a in answers]
    assert answers[0].stdout == answers[1].stdout and answers[0].stdout.count("\n") == 6


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


def test_a_damaged_bundle_json_is_one_line_from_install_sh(generic, tmp_path):
    """Caught by SHA256SUMS; and with SHA256SUMS edited to match, python3 reads it (only
    after the check) and says so in one line."""
    out = _copy(generic, tmp_path)
    (out / "bundle.json").write_text("{not json")
    done = _install(out, tmp_path / "venv")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "bundle.json does not match its SHA-256 in SHA256SUMS" in done.stderr
    digest = hashlib.sha256(b"{not json").hexdigest()
    sums = (out / "SHA256SUMS").read_text().splitlines()
    sums = [f"{digest}  bundle.json" if s.endswith("  bundle.json") else s for s in sums]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    done = _install(out, tmp_path / "venv")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "bundle.json is unreadable" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "venv").exists()


# --- what install.sh checks before it installs anything ----------------------------------


@pytest.fixture(scope="module")
def generic(exports, tmp_path_factory):
    """A generic bundle folder, built once; tests change copies of it."""
    out = tmp_path_factory.mktemp("generic") / "edgecnn-generic"
    result = invoke("bundle", exports, "--target", "generic", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    return out


def _copy(bundle: Path, folder: Path) -> Path:
    copy = folder / bundle.name
    shutil.copytree(bundle, copy, symlinks=True)
    return copy


def _install(bundle: Path, venv: Path, *options: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run install.sh; a HOME of its own unless the test gives one (it links ~/.local/bin)."""
    env = dict(kwargs.pop("env", os.environ))
    if env.get("HOME") == os.environ.get("HOME"):
        env["HOME"] = str(venv.parent / "home")
    return subprocess.run(["sh", str(bundle / "install.sh"), str(venv), *options],
                          capture_output=True, text=True, timeout=600, env=env,
                          **kwargs)  # fmt: skip


def _reseal(bundle: Path) -> None:
    """Hash every file again into bundle.json and SHA256SUMS, as someone who edits a bundle
    would: only the archive's own SHA-256, printed by edgecnn bundle, catches that."""

    def digests() -> dict[str, str]:
        return {p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(bundle.rglob("*")) if p.is_file() and not p.is_symlink()
                and p.relative_to(bundle).as_posix() != "SHA256SUMS"}  # fmt: skip

    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"] = {k: v for k, v in digests().items() if k != "bundle.json"}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    sums = "".join(f"{d}  {p}\n" for p, d in digests().items())
    (bundle / "SHA256SUMS").write_text(sums)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_sha256sums_lists_every_file_and_bundle_json_agrees(generic):
    sums = dict(reversed(line.split("  ", 1)) for line in
                (generic / "SHA256SUMS").read_text().splitlines())  # fmt: skip
    on_disk = {p.relative_to(generic).as_posix() for p in generic.rglob("*") if p.is_file()}
    assert set(sums) == on_disk - {"SHA256SUMS"}
    assert {"install.sh", "README.txt", "bundle.json"} <= set(sums)
    assert any(p.startswith("wheels/edgecnn-") for p in sums)
    for name in ("model_int8.tflite", "weights.npz"):
        for suffix in ("", ".json", ".reference.npz"):
            assert f"model/{name}{suffix}" in sums
    manifest = json.loads((generic / "bundle.json").read_text())
    assert manifest["files"] == {k: v for k, v in sums.items() if k != "bundle.json"}
    done = subprocess.run(["sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS"],
                          cwd=generic, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_sound_bundle_passes_the_check_even_in_a_path_with_spaces(generic, tmp_path):
    """The check and bundle.json's plan pass; a file where the venv should go stops
    install.sh before anything is installed."""
    folder = tmp_path / "my bundles"
    folder.mkdir()
    bundle = _copy(generic, folder)
    taken = tmp_path / "a file"
    taken.write_text("")
    done = _install(bundle, taken)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "exists and is not a working venv" in done.stderr


def _tamper_wheel(b: Path) -> None:
    _flip(next((b / "wheels").glob("edgecnn-*.whl")))


def _swap_model(b: Path) -> None:
    """Another export's model, sidecar and reference under the bundled file's names."""
    for suffix in ("", ".json", ".reference.npz"):
        source = b / "model" / f"weights.npz{suffix}"
        shutil.copy(source, b / "model" / f"model_int8.tflite{suffix}")


def _model_outside(b: Path) -> None:
    manifest = json.loads((b / "bundle.json").read_text())
    manifest["model"] = "../../other.tflite"
    (b / "bundle.json").write_text(json.dumps(manifest))
    _reseal(b)


def _listed_outside(b: Path, path: str) -> None:
    with open(b / "SHA256SUMS", "a") as f:
        f.write(f"{hashlib.sha256(b'').hexdigest()}  {path}\n")


def _listed_with_a_dash(b: Path) -> None:
    """A file that grep, as a pattern, would take for its option -v."""
    (b / "-v").write_text("")
    _reseal(b)


def _requirement(b: Path, requirement: str) -> None:
    """bundle.json, hashed again, asks this Python's pip for ``requirement``."""
    manifest = json.loads((b / "bundle.json").read_text())
    entry = {"requirements": ["edgecnn", requirement], "model": "model_int8.tflite"}
    manifest["pythons"] = {PYTHON: entry}
    (b / "bundle.json").write_text(json.dumps(manifest))
    _reseal(b)


def _symlinked_model(b: Path) -> None:
    outside = b.parent / "other.tflite"
    shutil.copy(b / "model" / "model_int8.tflite", outside)
    (b / "model" / "model_int8.tflite").unlink()
    (b / "model" / "model_int8.tflite").symlink_to(outside)


@pytest.mark.parametrize(
    "damage, match",
    [
        (_tamper_wheel, "wheels/edgecnn-0"),
        (_swap_model, "model/model_int8.tflite does not match its SHA-256"),
        (_model_outside, "not a plain name"),
        (lambda b: _listed_outside(b, "../other.tflite"), "not a SHA-256 and a plain path"),
        (lambda b: _listed_outside(b, "/etc/passwd"), "not a SHA-256 and a plain path"),
        (lambda b: (b / "model" / "extra.py").write_text("import os\n"),
         "model/extra.py is not one of its files"),
        (lambda b: (b / "sitecustomize.py").write_text(""), "sitecustomize.py is not one of"),
        (lambda b: os.mkfifo(b / "model" / "pipe"), "model/pipe is not one of its files"),
        (lambda b: (b / "lib").mkdir(), "lib is not one of its folders"),
        (_symlinked_model, "model/model_int8.tflite is a symlink"),
        (lambda b: (b / "model" / "model_int8.tflite.reference.npz").unlink(),
         "model/model_int8.tflite.reference.npz is missing"),
        (lambda b: (b / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
        (_listed_with_a_dash, "not a SHA-256 and a plain path in the bundle: "),
        (lambda b: _requirement(b, "--pre"), "names a requirement that is not a plain package"),
        (lambda b: _requirement(b, "pillow --pre"), "a requirement that is not a plain package"),
        # find prints it as two lines, both names of listed files.
        (lambda b: (b / "bundle.json\nREADME.txt").write_text(""), "holds a line break"),
        (lambda b: (b / "model\nwheels").mkdir(), "holds a line break"),
    ],
    ids=["tampered-wheel", "swapped-model", "model-outside", "dotdot-listed", "absolute-listed",
         "extra-file", "extra-top-file", "fifo", "extra-folder", "symlink-model",
         "missing-reference", "no-sha256sums", "dash-listed", "dash-requirement",
         "spaced-requirement", "newline-file", "newline-folder"],
)  # fmt: skip
def test_install_sh_refuses_a_damaged_bundle_before_installing(generic, tmp_path, damage,
                                                                match):  # fmt: skip
    bundle = _copy(generic, tmp_path)
    damage(bundle)
    venv = tmp_path / "venv"
    done = _install(bundle, venv)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("install.sh: "), done.stderr
    assert match in done.stderr and "Traceback" not in done.stderr
    assert not venv.exists() and done.stdout == ""


def _stub(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + body)
    (folder / name).chmod(0o755)


def _path_with(folder: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_install_sh_imports_nothing_from_the_current_folder(generic, tmp_path):
    """Run from a folder holding json.py, re.py and an edgecnn package (a clone's root):
    none is imported, though python3 reads bundle.json (it gets as far as the venv)."""
    bundle = _copy(generic, tmp_path)
    here = tmp_path / "cwd"
    (here / "edgecnn").mkdir(parents=True)
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("json.py", "re.py", "platform.py", "edgecnn/__init__.py"):
        (here / name).write_text(code)
    taken = tmp_path / "a file"
    taken.write_text("")
    done = _install(bundle, taken, cwd=here)
    assert done.returncode == 2 and "exists and is not a working venv" in done.stderr, done.stderr
    assert not marker.exists(), marker.read_text()


def test_every_python_install_sh_runs_is_isolated(generic, tmp_path):
    """python3 (a wrapper on PATH) and a stand-in venv's python log their first argument;
    install.sh runs to its end, and every one of them was -I."""
    bundle = _copy(generic, tmp_path)
    calls = tmp_path / "calls"
    log = f'printf "%s %s\\n" "${{0##*/}}" "$1" >> "{calls}"\n'
    _stub(tmp_path / "bin", "python3", f'{log}exec "{sys.executable}" "$@"\n')
    venv = tmp_path / "venv"
    for name in ("python", "edgecnn"):
        _stub(venv / "bin", name, log)
    (venv / "pyvenv.cfg").write_text("include-system-site-packages = true\n")
    done = _install(bundle, venv, env=_path_with(tmp_path / "bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = calls.read_text().splitlines()
    pythons = [line for line in lines if line.startswith("python")]
    assert "edgecnn models" in lines and len(pythons) >= 6, lines
    assert all(line.split()[1] == "-I" for line in pythons), lines
    # The lines this run did not reach (a new venv, Debian's numpy) say -I as well.
    script = (generic / "install.sh").read_text()
    assert set(re.findall(r'(?:\bpython3|/bin/python") +(-\w*)', script)) == {"-I"}


def _stub_venv(venv: Path, calls: Path) -> None:
    """A stand-in venv whose python and edgecnn log their first argument and the
    EDGECNN_HOME they see: install.sh runs to its end in a moment."""
    log = f'printf "%s %s %s\\n" "${{0##*/}}" "$1" "${{EDGECNN_HOME-}}" >> "{calls}"\n'
    for name in ("python", "edgecnn"):
        _stub(venv / "bin", name, log)
    (venv / "pyvenv.cfg").write_text("include-system-site-packages = true\n")


def test_a_venv_that_trusts_a_key_refuses_an_unsigned_bundle_unless_allowed(generic, tmp_path):
    """One line, exit 2, nothing run; with --allow-unsigned it installs and leaves the
    trusted key as it is."""
    bundle = _copy(generic, tmp_path)
    venv, calls = tmp_path / "venv", tmp_path / "calls"
    _stub_venv(venv, calls)
    allowed = venv / "keys" / "allowed_signers"
    allowed.parent.mkdir()
    allowed.write_text('edgecnn-owner namespaces="edgecnn-update" ssh-ed25519 AAAA\n')
    refused = _install(bundle, venv)
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr == (
        f"install.sh: this device trusts an owner key ({allowed}) and this bundle is not "
        "signed: make it with edgecnn bundle --key, or run install.sh --allow-unsigned\n"
    )
    assert not calls.exists()
    done = _install(bundle, venv, "--allow-unsigned")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"This bundle is not signed (--allow-unsigned); {allowed} is left as it is" in (
        done.stdout
    )
    assert "edgecnn models" in calls.read_text()
    assert allowed.read_text() == 'edgecnn-owner namespaces="edgecnn-update" ssh-ed25519 AAAA\n'


def test_install_sh_runs_edgecnn_with_the_venv_as_its_home(generic, tmp_path):
    """A user's EDGECNN_HOME elsewhere: every edgecnn install.sh runs keeps the model and
    the key in the venv (what the unit serves)."""
    bundle = _copy(generic, tmp_path)
    venv, calls = tmp_path / "venv", tmp_path / "calls"
    _stub_venv(venv, calls)
    done = _install(bundle, venv, env={**os.environ, "EDGECNN_HOME": str(tmp_path / "else")})
    assert done.returncode == 0, done.stdout + done.stderr
    edgecnns = [line for line in calls.read_text().splitlines() if line.startswith("edgecnn ")]
    assert edgecnns and all(line.endswith(f" {venv.resolve()}") for line in edgecnns), edgecnns


def test_a_sha256sum_without_strict_is_named(generic, tmp_path):
    """BusyBox's sha256sum knows no --strict: install.sh says what it needs, not that a
    file of a sound bundle does not match."""
    bundle = _copy(generic, tmp_path)
    real = shutil.which("sha256sum")
    _stub(
        tmp_path / "bin",
        "sha256sum",
        'for a; do case $a in --*) echo "sha256sum: '
        f'unrecognized option \'$a\'" >&2; exit 1 ;; esac; done\nexec "{real}" "$@"\n',
    )
    venv = tmp_path / "venv"
    done = _install(bundle, venv, env=_path_with(tmp_path / "bin"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "install.sh needs GNU coreutils' sha256sum" in done.stderr
    assert not venv.exists() and done.stdout == ""


# --- what edgecnn bundle checks before it packs -----------------------------------------


def _flip_int8(e: Path) -> None:
    _flip(e / "model_int8.tflite")


def _flip_int8_and_its_sidecar(e: Path) -> None:
    """The sidecar's digest updated too: the digest inside the file still catches it."""
    _flip(e / "model_int8.tflite")
    sidecar = json.loads((e / "model_int8.tflite.json").read_text())
    sidecar["file"]["sha256"] = hashlib.sha256((e / "model_int8.tflite").read_bytes()).hexdigest()
    (e / "model_int8.tflite.json").write_text(json.dumps(sidecar))


def _symlink(e: Path, name: str, target: str) -> None:
    (e / name).unlink()
    (e / name).symlink_to(target)


def _fifo_reference(e: Path) -> None:
    (e / "weights.npz.reference.npz").unlink()
    os.mkfifo(e / "weights.npz.reference.npz")


def _other_source(e: Path) -> None:
    report = json.loads((e / "export_report.json").read_text())
    report["source_sha256"] = "0" * 64
    (e / "export_report.json").write_text(json.dumps(report))


def _reference_of_another_file(e: Path) -> None:
    shutil.copy(e / "model_float32.onnx.reference.npz", e / "model_int8.tflite.reference.npz")


def _sidecar_of_another_source(e: Path) -> None:
    sidecar = json.loads((e / "model_int8.onnx.json").read_text())
    sidecar["source_sha256"] = "1" * 64
    (e / "model_int8.onnx.json").write_text(json.dumps(sidecar))


def _reference_of_another_export(e: Path) -> None:
    """As the exporter writes it, with the SHA-256 of another export of the same file."""
    from edgecnn.runtime.verify import read_reference, reference_bytes

    path = e / "model_int8.tflite.reference.npz"
    ref = read_reference(path)
    gate = {**ref["meta"], "file_sha256": "2" * 64}
    path.write_bytes(reference_bytes(ref["images"], ref["labels"], ref["keras"],
                                     ref["exported"], gate))  # fmt: skip


@pytest.mark.parametrize(
    "damage, match",
    [
        (_flip_int8, "its SHA-256 differs from the one in model_int8.tflite.json"),
        (_flip_int8_and_its_sidecar, "do not match the SHA-256 recorded inside it"),
        (lambda e: _flip(e / "model_int8.onnx"), "model_int8.onnx: its SHA-256 differs"),
        (lambda e: _symlink(e, "weights.npz", "/etc/passwd"), "weights.npz is a symlink"),
        (lambda e: _symlink(e, "model_int8.tflite", "model_float32.onnx"),
         "model_int8.tflite is a symlink"),
        (lambda e: _symlink(e, "model_int8.tflite.json", "/etc/hostname"),
         "model_int8.tflite.json is a symlink"),
        (_fifo_reference, "is not a regular file"),
        (_other_source, "made from another model than the one export_report.json records"),
        (_reference_of_another_file, "its verify reference was made for model_float32.onnx"),
        (_sidecar_of_another_source, "model_int8.onnx: made from another model"),
        (_reference_of_another_export, "made for another export of it"),
    ],
    ids=["flipped-int8", "flipped-int8-and-sidecar", "flipped-onnx", "symlink-to-etc",
         "symlink-to-export", "symlinked-sidecar", "fifo-reference", "other-source",
         "other-reference", "sidecar-of-other-source", "reference-of-other-export"],
)  # fmt: skip
def test_bundle_packs_only_files_it_checked(exports, tmp_path, damage, match):
    source = tmp_path / "exports"
    shutil.copytree(exports, source)
    damage(source)
    out = tmp_path / "out" / "b.tar.gz"
    result = invoke("bundle", source, "--target", "pi64", "--out", out,
                    "--model", "model_int8.tflite,model_int8.onnx")  # fmt: skip
    assert_one_line_error(result, match)
    assert not out.exists() and not _leftovers(out.parent)


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def _file_size_limit() -> None:
    """In the child: writes past 16 KB fail with EFBIG instead of killing it."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 10, 16 << 10))


@pytest.mark.parametrize("limit", ["tmpfs", "fsize"])
def test_a_full_disk_names_the_bundle_not_the_source(exports, tmp_path, limit):
    """A 64 KB tmpfs (in a user and mount namespace) fills up with ENOSPC; RLIMIT_FSIZE
    fails a write with EFBIG. Either way the line names what was being written."""
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "b.tar.gz"
    command = [sys.executable, "-m", "edgecnn.cli", "bundle", str(exports), "--target",
               "generic", "--out", str(out)]  # fmt: skip
    if limit == "tmpfs":
        if not _unshare_works():
            # Containers may forbid user namespaces; the fsize case below checks the same
            # message on every machine (CI here has them, so both cases run there).
            pytest.skip("no user namespaces here (unshare -rm)")
        mount = 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"'
        command = ["unshare", "-rm", "sh", "-c", mount, str(disk), *command]
        done = subprocess.run(command, capture_output=True, text=True)
    else:
        done = subprocess.run(command, capture_output=True, text=True,
                              preexec_fn=_file_size_limit)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot write {out}: "), lines[0]
    assert str(exports) not in lines[0]
    assert not out.exists() and not _leftovers(disk)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="linux-x86 is measured here only")
def test_the_x86_bundle_takes_its_model_from_the_bench_stage(exports, tmp_path):
    """bench.json as the bench stage writes it decides what 'this machine' gets."""
    run = tmp_path / "run"
    shutil.copytree(exports.parent, run)
    rows = ExportReport.from_dict(
        json.loads((run / "exports/export_report.json").read_text())
    ).files
    target = next(t for t in BUNDLE_TARGETS.values() if t.key == "linux-x86")
    assert _recommended(rows, target, run) == "model_int8.tflite"  # no bench: int8
    results = [bench_result(r.file, 10.0 if r.file == "model_float32.tflite" else 100.0)
               for r in rows if r.passed]  # fmt: skip
    (run / "bench.json").write_text(json.dumps({"batch_sizes": [1], "results": results}))
    assert _recommended(rows, target, run) == "model_float32.tflite"
