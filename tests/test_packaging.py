"""The installed layout (everything under ``edgecnn``) and the exact versions CI installs."""

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

# packaging comes with pytest, so it is always here; it reads requirements as pip does.
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
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
    # Each stage folder whole: a subpackage left out of pyproject's list is missing here,
    # though an editable install finds it.
    for folder in ("trainer", "export", "runtime", "pipeline"):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"edgecnn/{folder}/{path.relative_to(ROOT / folder)}" in names, path
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


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _pins() -> dict[str, Version]:
    """constraints.txt as {canonical name: version}; each line must be exactly name==version."""
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"constraints.txt:{number}: not name==version: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt:{number}: {name} is pinned twice"
        pins[name] = Version(match[2])
    return pins


def _requirements() -> list[Requirement]:
    """Every requirement pyproject names, extras included, but not edgecnn's own extras."""
    project = _project()["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "edgecnn"]


def test_constraints_pin_every_distribution_pyproject_names():
    """CI installs exactly these; each satisfies pyproject's lower bound for users."""
    pins = _pins()
    # CI runs on Linux x86_64: tensorflow-cpu there, tensorflow elsewhere (not pinned).
    ci = {"sys_platform": "linux", "platform_machine": "x86_64"}
    named = [r for r in _requirements() if r.marker is None or r.marker.evaluate(ci)]
    assert {canonicalize_name(r.name) for r in named} >= {"numpy", "tensorflow-cpu", "tf2onnx"}
    for requirement in named:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt pins no version of {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_constraints_say_where_they_were_checked():
    """bootstrap.sh reads the '# pythons:' line; CI's Python 3.11 must be on it."""
    text = (ROOT / "constraints.txt").read_text()
    (line,) = re.findall(r"^# pythons: (.*)$", text, re.MULTILINE)
    versions = line.split()
    assert "3.11" in versions
    assert all(re.fullmatch(r"3\.\d+", v) for v in versions), versions
    assert "bash tools/bootstrap.sh refresh" in text


def test_bootstrap_installs_with_the_constraints():
    script = (ROOT / "tools" / "bootstrap.sh").read_text()
    assert "constraints=(-c constraints.txt)" in script
    assert re.search(
        r'pip_install \.venv/bin/python "\$\{constraints\[@\]\}" -e "\.\[\$extras\]"', script
    )
    assert "usage: bash tools/bootstrap.sh run|test|refresh" in script
    # CI runs the README's command, which installs from constraints.txt.
    assert "exec bash tools/bootstrap.sh test\n" in (ROOT / ".ci" / "run").read_text()


def test_classifiers_name_only_the_pythons_that_are_tested():
    """Classifiers claim what CI and the emulated Pis run; the tools check the lowest Python."""
    project = _project()
    classifiers = project["project"]["classifiers"]
    claimed = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.search(r":: 3\.\d+$", c)]
    # CI: 3.11 on the host and on bookworm; 3.13 on trixie (tests/pi).
    assert claimed == ["3.11", "3.13"], claimed
    floor = re.fullmatch(r">=(3\.\d+)", project["project"]["requires-python"])
    assert floor, project["project"]["requires-python"]
    assert project["tool"]["mypy"]["python_version"] == floor[1]
    assert project["tool"]["ruff"]["target-version"] == "py" + floor[1].replace(".", "")
