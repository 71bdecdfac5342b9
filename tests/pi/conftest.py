"""What the update and fleet tests share: edgecnn installed once a session on both bookworm
systems, from full bundles signed with the owner's key, and put back as installed for
each test file that changes it.

Installing is most of what these files would otherwise repeat (``edgecnn bundle`` builds
edgecnn's wheel; install.sh pip-installs every wheel and verifies the model, all under
emulation), and what an update, a rollback or a rollout changes is the venv's store
(``VENV/models``) alone: a copy of it taken after the install brings a device back to
the state install.sh left.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pi_tools import (
    SIGNED_BUNDLED,
    SIGNED_SYSTEMS,
    SIGNED_VENV,
    emulated_pi,
    pi_cache,
    run_or_fail,
    signed_bundle,
    tail,
)

pi = emulated_pi()


@pytest.fixture(scope="session", autouse=True)
def one_session_at_a_time():
    """Hold a lock on the cached root filesystems for the whole session.

    The tests install into those systems and change their stores; two pytest sessions
    running them at once would break each other's installs. A second session waits here
    until the first ends (the lock goes with the process, however it ends).
    """
    import fcntl

    cache = pi_cache()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".pytest-session.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def owner_keys(tmp_path_factory) -> SimpleNamespace:
    """The owner's key and another one, made by ``edgecnn keys`` (private key paths)."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for who in ("owner", "other"):
        run_or_fail([*pi.EDGECNN, "keys", "--out", str(folder / who)], "edgecnn keys")
        made[who] = folder / who / "owner"
    return SimpleNamespace(**made)


class SignedDevices:
    """Both bookworm systems with edgecnn installed into SIGNED_VENV from signed bundles."""

    def __init__(self, bundles: dict[str, Path], installed: dict, stores: Path) -> None:
        #: Per system: the bundle (.tar.gz) and install.sh's output.
        self.bundles = bundles
        self.install = {system: result.output for system, result in installed.items()}
        self._stores = stores

    def fresh(self) -> None:
        """Every system's store as install.sh left it: the bundled model current, no
        previous, nothing else (both systems at once)."""
        models = f"{SIGNED_VENV}/models"
        _in_each(self._stores, f'rm -rf {models} && cp -a "$0/$1" {models}')


def _in_each(stores: Path, script: str) -> None:
    """``sh -c SCRIPT STORES SYSTEM`` inside every system at once (STORES bound there)."""
    procs = {
        system: subprocess.Popen(["bash", str(pi.SCRIPT), "run", system, "--bind", str(stores),
                                  "sh", "-c", script, str(stores), system],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for system in SIGNED_SYSTEMS
    }  # fmt: skip
    logs = {system: proc.communicate()[0] for system, proc in procs.items()}
    failed = [f"{s}:\n{tail(logs[s])}" for s, p in procs.items() if p.returncode]
    if failed:
        pytest.fail(f"{script} failed\n" + "\n".join(failed), pytrace=False)


@pytest.fixture(scope="session")
def signed_devices(exported, owner_keys, tmp_path_factory) -> SignedDevices:
    """Per system the full bundle signed with the owner's key (Python 3.11, the int8
    .tflite), installed by its install.sh into SIGNED_VENV; the store then copied aside."""
    folder = tmp_path_factory.mktemp("signed-bundles")
    bundles = {
        system: signed_bundle(exported.out, target, owner_keys.owner, SIGNED_BUNDLED,
                              folder / f"edgecnn-{target}.tar.gz")
        for system, target in SIGNED_SYSTEMS.items()
    }  # fmt: skip
    pi._build(*SIGNED_SYSTEMS)
    installed = pi._install(bundles, {system: system for system in SIGNED_SYSTEMS},
                            venv=SIGNED_VENV)  # fmt: skip
    stores = tmp_path_factory.mktemp("installed-stores")
    _in_each(stores, f'cp -a {SIGNED_VENV}/models "$0/$1"')
    return SignedDevices(bundles, installed, stores)
