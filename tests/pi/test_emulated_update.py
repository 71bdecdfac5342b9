"""A device's life on emulated Raspberry Pi OS (bookworm, 64- and 32-bit): signed updates.

A key made on this host with ``edgecnn keys``; a full bundle signed with it (``edgecnn
bundle --key``) installed by its install.sh, which puts the model into the venv's store
and trusts the key (the ``signed_devices`` of tests/pi/conftest.py, shared with the fleet
tests, in a venv of their own); then, inside the emulated system, ``edgecnn update`` of a
model-only update (``edgecnn bundle --model-only``), updates that must be refused or fail
verify, ``edgecnn models rollback``, and updates killed with SIGKILL (tests/pi/
update_runner.py runs that part inside, both systems at once).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pi_tools import (
    SIGNED_BUNDLED,
    SIGNED_SYSTEMS,
    SIGNED_VENV,
    emulated_pi,
    model_only_update,
    tail,
)
from update_files import manifest_for, write_update

from edgecnn.runtime import signing

pytestmark = [pytest.mark.pi, pytest.mark.slow]


pi = emulated_pi()
RUNNER = Path(__file__).with_name("update_runner.py")
VENV = SIGNED_VENV
#: The bookworm systems, and the bundle target of each.
TARGETS = SIGNED_SYSTEMS
#: The full bundle's model (the one install.sh verifies) and the update's other model.
BUNDLED, UPDATED = SIGNED_BUNDLED, "model_float32.tflite"
#: Where ``edgecnn update`` is killed (update_runner.PHASES): while the file is checked in
#: its scratch folder, before anything of the new version exists; and once the new
#: version's folder is being filled and verified (most of an update's time), not yet
#: named or current. The switch after that is one rename of a link; on this host,
#: tests/runtime/test_store.py cuts the store's operations at every one of their steps.
KILL_PHASES = ("checking", "verifying")


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _model_with_another_reference(exports: Path, folder: Path) -> Path:
    """The bundled model with its sidecar, beside the reference of UPDATED (which records
    that file's SHA-256): verify cannot pass it."""
    folder.mkdir()
    for suffix in ("", ".json"):
        shutil.copy(exports / f"{BUNDLED}{suffix}", folder / f"{BUNDLED}{suffix}")
    shutil.copy(exports / f"{UPDATED}.reference.npz", folder / f"{BUNDLED}.reference.npz")
    return folder / BUNDLED


def _update_json(update: Path) -> dict:
    with tarfile.open(update) as tar:
        member = tar.extractfile("update.json")
        assert member is not None
        return json.load(member)


def _bundle_json(bundle: Path, target: str) -> dict:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile(f"edgecnn-{target}/bundle.json")
        assert member is not None
        return json.load(member)


def _make_update_files(work: Path, target: str, exported, keys, unprovable: Path) -> dict:
    """The update files for one system in ``work``; returns ``update``'s update.json.

    ``update``: ``edgecnn bundle --model-only`` of UPDATED, another version than the
    bundle's; ``wrong-key``: the same signed by another key; ``damaged``: ``update`` with
    one byte flipped; ``fails-verify``: signed by the owner, its reference another
    model's; ``kill-NN`` and ``after``: UPDATED under versions of their own. Made after
    the install, as an owner makes updates: a device refuses one made before its current
    model (a downgrade).
    """
    for file, key in (("update", keys.owner), ("wrong-key", keys.other)):
        model_only_update(exported.out, target, key, UPDATED, work / f"{file}.edgecnn-update")
    shutil.copy(work / "update.edgecnn-update", work / "damaged.edgecnn-update")
    _flip_middle_byte(work / "damaged.edgecnn-update")
    update = _update_json(work / "update.edgecnn-update")
    versions = {"fails-verify": unprovable}
    versions |= {f"kill-{i:02d}": exported.out / UPDATED for i in range(len(KILL_PHASES))}
    versions["after"] = exported.out / UPDATED
    for version, model in versions.items():
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest = manifest_for(model, update["name"], version, machine=update["machine"],
                                target=target, created=created)  # fmt: skip
        write_update(work / f"{version}.edgecnn-update", keys.owner, model, update["name"],
                     version, manifest=manifest)  # fmt: skip
    shutil.copy(RUNNER, work / RUNNER.name)
    return update


@pytest.fixture(scope="module")
def device(signed_devices, exported, owner_keys, tmp_path_factory):
    """Both systems at once: the store as the signed bundle's install.sh left it, then the
    update files made, then update_runner.py inside; per system the install's output, the
    files and what the runner recorded."""
    signed_devices.fresh()
    root = tmp_path_factory.mktemp("device-files")
    unprovable = _model_with_another_reference(exported.out, root / "unprovable")
    files = {}
    for arch, target in TARGETS.items():
        work = root / arch
        work.mkdir()
        update = _make_update_files(work, target, exported, owner_keys, unprovable)
        assert update["machine"] == pi.MACHINES[arch]
        bundled = _bundle_json(signed_devices.bundles[arch], target)
        files[arch] = SimpleNamespace(work=work, name=update["name"], update=update,
                                      bundled=bundled)  # fmt: skip
    procs = {
        arch: subprocess.Popen(
            ["bash", str(pi.SCRIPT), "run", arch, "--bind", str(f.work), f"{VENV}/bin/python3",
             str(f.work / RUNNER.name), str(f.work), f"{VENV}/bin/edgecnn",
             ",".join(KILL_PHASES)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for arch, f in files.items()
    }  # fmt: skip
    logs = {arch: proc.communicate()[0] for arch, proc in procs.items()}
    failed = [f"{arch}:\n{tail(logs[arch])}" for arch, p in procs.items() if p.returncode]
    if failed:
        pytest.fail("update_runner.py failed\n" + "\n".join(failed), pytrace=False)
    return {
        arch: SimpleNamespace(install=signed_devices.install[arch], files=f,
                              info=json.loads((f.work / "info.json").read_text()))
        for arch, f in files.items()
    }  # fmt: skip


def _bundle_version(files) -> str:
    """The version install.sh gives the bundled model: bundle.json's, as it ran it."""
    return files.bundled["version"]


def _one_line_error(step: dict, code: int, message: str) -> None:
    assert step["returncode"] == code, step
    lines = step["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), step["stderr"]
    assert message in lines[0], lines[0]
    assert "Traceback" not in step["stdout"] + step["stderr"]


@pytest.mark.parametrize("arch", list(TARGETS))
def test_a_signed_bundle_installs_into_the_store_and_trusts_its_key(device, owner_keys, arch):
    result = device[arch]
    name, version = result.files.name, _bundle_version(result.files)
    assert f"Installed edgecnn into {VENV}" in result.install, result.install
    fingerprint = signing.fingerprint(owner_keys.owner.with_name("owner.pub"))
    assert (f"This venv now takes updates signed by the owner's key {fingerprint} "
            f"({VENV}/keys/allowed_signers)") in result.install  # fmt: skip
    assert f"The current model is {name} {version} ({VENV}/models/{name}/{version})" in (
        result.install
    )
    installed = result.info["installed"]
    trusted = signing.allowed_signers_line(
        signing.public_key_text(owner_keys.owner.with_name("owner.pub"))
    )
    assert installed["allowed_signers"] == trusted
    assert installed["current"] == f"{name}/{version}"
    assert [(v["name"], v["version"], v["model"], v["state"]) for v in
            installed["list"]["versions"]] == [(name, version, BUNDLED, "current")]  # fmt: skip


@pytest.mark.parametrize("arch", list(TARGETS))
def test_a_model_only_update_switches_after_verify_on_the_device(device, arch):
    result = device[arch]
    name, first = result.files.name, _bundle_version(result.files)
    update, second = result.info["update"], result.files.update["version"]
    assert second != first
    assert update["returncode"] == 0, update
    lines = update["stdout"].splitlines()
    assert lines[0].startswith('checked the signature: Good "edgecnn-update" signature')
    assert lines[-2].startswith("verify: PASS")
    assert lines[-1] == (f"current: {name} {second} (previous: {name} {first}, edgecnn models "
                         "rollback returns to it)")  # fmt: skip
    assert update["current"] == f"{name}/{second}"
    listed = {v["version"]: (v["model"], v["state"]) for v in update["list"]["versions"]}
    assert listed == {first: (BUNDLED, "previous"), second: (UPDATED, "current")}
    print(f"\n{arch}: edgecnn update took {update['seconds']:.1f} s in emulation")


#: (exit code, message) of each update that must leave ``current`` as it was.
NOT_APPLIED = {
    "wrong-key": (2, "the signature is not good"),
    "damaged": (2, "damaged"),
    "fails-verify": (1, "fails-verify failed verify on this device"),
}


@pytest.mark.parametrize("what", list(NOT_APPLIED))
@pytest.mark.parametrize("arch", list(TARGETS))
def test_a_refused_or_failing_update_leaves_current(device, arch, what):
    result = device[arch]
    code, message = NOT_APPLIED[what]
    step = result.info[what]
    _one_line_error(step, code, message)
    assert step["current"] == f"{result.files.name}/{result.files.update['version']}"
    # Nothing of it is left in the store: no version folder, no temporary.
    assert not [e for e in step["entries"] if what in e or ".tmp-" in e], step["entries"]


@pytest.mark.parametrize("arch", list(TARGETS))
def test_rollback_returns_to_the_bundled_model(device, arch):
    result = device[arch]
    rollback = result.info["rollback"]
    name, first = result.files.name, _bundle_version(result.files)
    assert rollback["returncode"] == 0, rollback
    assert rollback["current"] == f"{name}/{first}"
    assert rollback["stdout"].startswith(f"current: {name} {first} (previous: {name} ")


@pytest.mark.parametrize("arch", list(TARGETS))
def test_a_killed_update_leaves_a_current_model_that_verifies(device, arch):
    """SIGKILL in each of KILL_PHASES: ``current`` is the old version or the new one,
    never anything else, and passes ``edgecnn verify``; the store takes a later update."""
    result = device[arch]
    name, points = result.files.name, result.info["kills"]
    assert [p["phase"] for p in points] == list(KILL_PHASES)
    assert all(p["killed"] for p in points), [(p["phase"], p["returncode"]) for p in points]
    for point in points:
        version = point["file"].removesuffix(".edgecnn-update")
        assert point["current"] in (point["current_before"], f"{name}/{version}"), point
        # The kill came in its phase: what the store was left holding says which.
        building = [e for e in point["entries"] if e.startswith(f"{name}/.{version}.tmp-")]
        scratch = [e for e in point["entries"] if e.startswith(".update.tmp-")]
        assert scratch and bool(building) == (point["phase"] == "verifying"), point["entries"]
        check = point["verify"]
        assert check["returncode"] == 0 and check["passed"], (point["delay"], check)
        assert check["model"].startswith(f"{VENV}/models/{point['current']}/"), check
    after = result.info["after"]
    assert after["returncode"] == 0, after
    assert after["current"] == f"{name}/after"
    assert "verify: PASS" in after["stdout"], after["stdout"]
    assert not [e for e in after["entries"] if ".tmp-" in e], after["entries"]
    outcomes = [(p["phase"], round(p["delay"], 1), p["current"] != p["current_before"])
                for p in points]  # fmt: skip
    print(f"\n{arch}: kill phase, after (s), switched: {outcomes}")


@pytest.mark.parametrize("arch", list(TARGETS))
def test_an_update_cut_mid_way_completes_when_run_again(device, arch):
    """The kill in the verifying phase leaves the new version half made; the same update
    run again installs, verifies and switches."""
    result = device[arch]
    point = next((p for p in result.info["kills"] if "again" in p), None)
    assert point is not None, [(p["delay"], p["entries"]) for p in result.info["kills"]]
    again = point["again"]
    version = point["file"].removesuffix(".edgecnn-update")
    assert again["returncode"] == 0, again
    assert again["current"] == f"{result.files.name}/{version}"
    assert "verify: PASS" in again["stdout"]
    assert not [e for e in again["entries"] if ".tmp-" in e], again["entries"]
