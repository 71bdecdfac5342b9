"""A device's life on emulated Raspberry Pi OS (bookworm, 64- and 32-bit): signed updates.

A key made on this host with ``edgecnn keys``; a full bundle signed with it (``edgecnn
bundle --key``) installed by its install.sh, which puts the model into the venv's store
and trusts the key; then, inside the emulated system, ``edgecnn update`` of a model-only
update (``edgecnn bundle --model-only``), updates that must be refused or fail verify,
``edgecnn models rollback``, and updates killed with SIGKILL at points spread over an
update's wall time (tests/pi/update_runner.py runs that part inside, both systems at
once). Each system gets its own venv (VENV), so the other pi tests' venvs are left alone.
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
from pi_tools import emulated_pi, model_only_update, run_or_fail, signed_bundle, tail
from update_files import manifest_for, write_update

from edgecnn.runtime import signing

pytestmark = [pytest.mark.pi, pytest.mark.slow]


pi = emulated_pi()
RUNNER = Path(__file__).with_name("update_runner.py")
VENV = "/opt/edgecnn-update"
#: The bookworm systems, and the bundle target of each.
TARGETS = {"arm64": "pi64", "armhf": "pi32"}
#: The full bundle's model (the one install.sh verifies) and the update's other model.
BUNDLED, UPDATED = "model_int8.tflite", "model_float32.tflite"
#: How many times ``edgecnn update`` is killed, at delays spread over its wall time.
KILLS = 6


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The owner's key and another one, made by ``edgecnn keys`` (private key paths)."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for who in ("owner", "other"):
        run_or_fail([*pi.EDGECNN, "keys", "--out", str(folder / who)], "edgecnn keys")
        made[who] = folder / who / "owner"
    return SimpleNamespace(**made)


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


@pytest.fixture(scope="module")
def bundles(exported, keys, tmp_path_factory):
    """Per system, the full bundle signed with the owner's key (Python 3.11, BUNDLED)."""
    folder = tmp_path_factory.mktemp("signed-bundles")
    made = {}
    for arch, target in TARGETS.items():
        made[arch] = folder / f"edgecnn-{target}.tar.gz"
        signed_bundle(exported.out, target, keys.owner, BUNDLED, made[arch])
    return made


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
    versions |= {f"kill-{i:02d}": exported.out / UPDATED for i in range(KILLS)}
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
def device(bundles, exported, keys, tmp_path_factory):
    """Both systems at once: the signed bundle installed into VENV, then the update files
    made, then update_runner.py inside; per system the install's output, the files and
    what the runner recorded."""
    pi._build(*TARGETS)
    installed = pi._install(bundles, {arch: arch for arch in TARGETS}, venv=VENV)
    root = tmp_path_factory.mktemp("device-files")
    unprovable = _model_with_another_reference(exported.out, root / "unprovable")
    files = {}
    for arch, target in TARGETS.items():
        work = root / arch
        work.mkdir()
        update = _make_update_files(work, target, exported, keys, unprovable)
        assert update["machine"] == pi.MACHINES[arch]
        files[arch] = SimpleNamespace(work=work, name=update["name"], update=update,
                                      bundled=_bundle_json(bundles[arch], target))  # fmt: skip
    procs = {
        arch: subprocess.Popen(
            ["bash", str(pi.SCRIPT), "run", arch, "--bind", str(f.work), f"{VENV}/bin/python3",
             str(f.work / RUNNER.name), str(f.work), f"{VENV}/bin/edgecnn", str(KILLS)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for arch, f in files.items()
    }  # fmt: skip
    logs = {arch: proc.communicate()[0] for arch, proc in procs.items()}
    failed = [f"{arch}:\n{tail(logs[arch])}" for arch, p in procs.items() if p.returncode]
    if failed:
        pytest.fail("update_runner.py failed\n" + "\n".join(failed), pytrace=False)
    return {
        arch: SimpleNamespace(install=installed[arch].output, files=f,
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
def test_a_signed_bundle_installs_into_the_store_and_trusts_its_key(device, keys, arch):
    result = device[arch]
    name, version = result.files.name, _bundle_version(result.files)
    assert f"Installed edgecnn into {VENV}" in result.install, result.install
    fingerprint = signing.fingerprint(keys.owner.with_name("owner.pub"))
    assert (f"This venv now takes updates signed by the owner's key {fingerprint} "
            f"({VENV}/keys/allowed_signers)") in result.install  # fmt: skip
    assert f"The current model is {name} {version} ({VENV}/models/{name}/{version})" in (
        result.install
    )
    installed = result.info["installed"]
    trusted = signing.allowed_signers_line(
        signing.public_key_text(keys.owner.with_name("owner.pub"))
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
    """SIGKILL at points spread over an update's wall time: ``current`` is the old
    version or the new one, never anything else, and passes ``edgecnn verify``; the
    store takes a later update."""
    result = device[arch]
    name, points = result.files.name, result.info["kills"]
    killed = [p for p in points if p["killed"]]
    assert len(killed) >= KILLS - 2, [(p["delay"], p["returncode"]) for p in points]
    for point in points:
        version = point["file"].removesuffix(".edgecnn-update")
        assert point["current"] in (point["current_before"], f"{name}/{version}"), point
        check = point["verify"]
        assert check["returncode"] == 0 and check["passed"], (point["delay"], check)
        assert check["model"].startswith(f"{VENV}/models/{point['current']}/"), check
    after = result.info["after"]
    assert after["returncode"] == 0, after
    assert after["current"] == f"{name}/after"
    assert "verify: PASS" in after["stdout"], after["stdout"]
    assert not [e for e in after["entries"] if ".tmp-" in e], after["entries"]
    outcomes = [(round(p["delay"], 1), p["current"] != p["current_before"]) for p in points]
    print(f"\n{arch}: kill delay (s), switched: {outcomes}")


@pytest.mark.parametrize("arch", list(TARGETS))
def test_an_update_cut_mid_way_completes_when_run_again(device, arch):
    """Most of an update's time is its verify, so some kill lands while the new version
    is written or verified; the same update run again installs, verifies and switches."""
    result = device[arch]
    point = next((p for p in result.info["kills"] if "again" in p), None)
    assert point is not None, [(p["delay"], p["entries"]) for p in result.info["kills"]]
    again = point["again"]
    version = point["file"].removesuffix(".edgecnn-update")
    assert again["returncode"] == 0, again
    assert again["current"] == f"{result.files.name}/{version}"
    assert "verify: PASS" in again["stdout"]
    assert not [e for e in again["entries"] if ".tmp-" in e], again["entries"]
