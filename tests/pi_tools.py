"""What the emulated Raspberry Pi OS tests share: running a host command, the helpers of
tests/pi/test_emulated_pi.py (its build, install and bundle steps) for the other files, and
the names of the signed install that tests/pi/conftest.py makes once a session."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

_EMULATED_PI = Path(__file__).parent / "pi" / "test_emulated_pi.py"
EDGECNN = [sys.executable, "-m", "edgecnn"]
#: Where the update and fleet tests' signed bundles are installed (tests/pi/conftest.py),
#: apart from the venvs of the other pi tests.
SIGNED_VENV = "/opt/edgecnn-signed"
#: The bookworm systems those bundles are made for, and the bundle target of each.
SIGNED_SYSTEMS = {"arm64": "pi64", "armhf": "pi32"}
#: The signed bundles' model: the one install.sh verifies and makes current.
SIGNED_BUNDLED = "model_int8.tflite"


def tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of a long output, for a failure message."""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_or_fail(command: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """``command``'s result; the test fails with its output's tail if it exits non-zero."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{tail(done.stdout + done.stderr)}",
                    pytrace=False)  # fmt: skip
    return done


def pi_cache() -> Path:
    """Where tools/pi_emulation.sh keeps the root filesystems (its own default)."""
    return Path(os.environ.get("EDGECNN_PI_CACHE", Path.home() / ".cache/edgecnn/pi"))


def emulated_pi() -> ModuleType:
    """test_emulated_pi.py as a module, loaded by its path.

    With --import-mode=importlib no test folder is a package on sys.path; its fixtures
    are not registered again, since pytest collects fixtures from the modules it collects.
    """
    spec = importlib.util.spec_from_file_location("_emulated_pi_helpers", _EMULATED_PI)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_only_update(exports: Path, target: str, key: Path, model: str, out: Path) -> Path:
    """``edgecnn bundle EXPORTS --target T --model-only --key K --model M --out OUT``."""
    run_or_fail([*EDGECNN, "bundle", str(exports), "--target", target, "--model-only",
                 "--key", str(key), "--model", model, "--out", str(out)],
                f"edgecnn bundle --target {target} --model-only")  # fmt: skip
    return out


def signed_bundle(exports: Path, target: str, key: Path, model: str, out: Path) -> Path:
    """``edgecnn bundle EXPORTS --target T --key K --python 3.11 --model M --out OUT``."""
    run_or_fail([*EDGECNN, "bundle", str(exports), "--target", target, "--key", str(key),
                 "--python", "3.11", "--model", model, "--out", str(out)],
                f"edgecnn bundle --target {target} --key")  # fmt: skip
    return out
