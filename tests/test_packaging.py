"""The installed layout: everything under ``edgecnn``, nothing generic at the top level."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from shared import source_copy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = source_copy(out)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("edgecnn-*.whl")
    return found


@pytest.mark.slow
def test_wheel_puts_every_module_under_edgecnn(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"edgecnn"}, top
    for module in (
        "edgecnn/__init__.py",
        "edgecnn/cli.py",
        "edgecnn/py.typed",
        "edgecnn/trainer/train.py",
        "edgecnn/trainer/idx.py",
        "edgecnn/runtime/predict/workers.py",
        "edgecnn/export/__init__.py",
        "edgecnn/export/formats/tflite.py",
        "edgecnn/runtime/__init__.py",
        "edgecnn/runtime/backends/litert.py",
        "edgecnn/runtime/serve/server.py",
        "edgecnn/pipeline/stages.py",
        "edgecnn/pipeline/report/html.py",
    ):
        assert module in names, module
    # Every module of the source is in the wheel, and nothing twice.
    assert len(names) == len(set(names))
    for folder, package in (("runtime", "runtime"), ("pipeline", "pipeline")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"edgecnn/{package}/{path.relative_to(ROOT / folder)}" in names, path
    assert not any(n.startswith("edgecnn/tests") for n in names)


@pytest.mark.slow
def test_plain_install_imports_every_stage(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # The base install only: numpy and Typer; no interpreter, no TensorFlow.
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True)
    code = (
        "import edgecnn, edgecnn.trainer, edgecnn.export, edgecnn.runtime, edgecnn.pipeline, "
        "edgecnn.runtime.labels, importlib.util as u; "
        "assert all(u.find_spec(m) is None for m in ('trainer', 'export', 'runtime', 'pipeline'))"
    )
    done = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cli = subprocess.run([env_dir / "bin" / "edgecnn", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "export" in cli.stdout, cli.stderr


def test_no_generic_top_level_modules_in_this_environment():
    """However edgecnn was installed here (editable or not), only ``edgecnn`` is importable."""
    code = (
        "import importlib.util as u, edgecnn.trainer; "
        "print([m for m in ('trainer', 'export', 'runtime', 'pipeline') if u.find_spec(m)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.home()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
