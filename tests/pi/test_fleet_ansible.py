"""examples/fleet's Ansible playbooks on a fleet of two emulated Raspberry Pi OS devices.

Bookworm 64-bit (the canary, first in the inventory) and 32-bit, reached by Ansible's
``community.general.chroot`` connection: Ansible runs each device's own python3 in its
root filesystem, on the emulated CPU (qemu-user through binfmt). Each device holds edgecnn
as a full bundle signed with the owner's key (``edgecnn bundle --key``) was installed by
its install.sh (the ``signed_devices`` of tests/pi/conftest.py, shared with the update
tests, in a venv of their own). Then rollout.yml with the update files of ``edgecnn bundle
--model-only``, one that fails verify on the canary, and rollback.yml.

What a network adds (ssh, sudo, a device that drops off mid-copy) is not tested here.
"""

from __future__ import annotations

import json
import os
import re
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
    pi_cache,
    tail,
)
from update_files import manifest_for, write_update

pytestmark = [pytest.mark.pi, pytest.mark.slow]


pi = emulated_pi()
FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet"
VENV = SIGNED_VENV
#: The devices in inventory order (the first is the canary), their system and target.
DEVICES = {"pi64-canary": ("arm64", "pi64"), "pi32": ("armhf", "pi32")}
#: The full bundle's model, and the one the good update brings (another version).
BUNDLED, UPDATED = SIGNED_BUNDLED, "model_float32.tflite"
FAILING_VERSION = "2-fails-verify"


def _update_json(update: Path) -> dict:
    with tarfile.open(update) as tar:
        member = tar.extractfile("update.json")
        assert member is not None
        return json.load(member)


def _store(device: str) -> SimpleNamespace:
    """The device's store as its files say: current, previous, the version folders."""
    models = pi_cache() / DEVICES[device][0] / VENV.lstrip("/") / "models"

    def link(name: str) -> str | None:
        return os.readlink(models / name) if (models / name).is_symlink() else None

    folders = sorted(str(p.relative_to(models)) for p in models.glob("*/*") if p.is_dir())
    return SimpleNamespace(current=link("current"), previous=link("previous"), folders=folders,
                           mtime=models.stat().st_mtime_ns)  # fmt: skip


@pytest.fixture(scope="module")
def fleet(signed_devices, owner_keys, exported, tmp_path_factory):
    """Both devices as installed from signed bundles; the update files; an inventory."""
    if shutil.which("ansible-playbook") is None:
        pytest.fail("ansible-playbook is missing: apt-get install ansible (tools/bootstrap.sh "
                    "test does)", pytrace=False)  # fmt: skip
    assert {system: target for system, target in DEVICES.values()} == SIGNED_SYSTEMS
    signed_devices.fresh()
    root = tmp_path_factory.mktemp("fleet")
    owner = owner_keys.owner
    # The good update's model beside another file's reference (which records that file's
    # SHA-256): signed by the owner, so every check passes but edgecnn verify on the device.
    unprovable = root / "unprovable"
    unprovable.mkdir()
    for suffix in ("", ".json"):
        shutil.copy(exported.out / f"{BUNDLED}{suffix}", unprovable / f"{BUNDLED}{suffix}")
    shutil.copy(exported.out / f"{UPDATED}.reference.npz", unprovable / f"{BUNDLED}.reference.npz")
    # The updates are made after the install, as a user makes them: edgecnn update refuses
    # one made before the current model (a downgrade).
    files = {}
    for system, target in DEVICES.values():
        good = root / f"good-{target}.edgecnn-update"
        model_only_update(exported.out, target, owner, UPDATED, good)
        update = _update_json(good)
        assert update["machine"] == pi.MACHINES[system]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # not older than the good one
        manifest = manifest_for(unprovable / BUNDLED, update["name"], FAILING_VERSION,
                                machine=update["machine"], target=target, created=now)  # fmt: skip
        failing = write_update(root / f"fails-verify-{target}.edgecnn-update", owner,
                               unprovable / BUNDLED, update["name"], FAILING_VERSION,
                               manifest=manifest)  # fmt: skip
        files[target] = SimpleNamespace(good=good, failing=failing, update=update)
    inventory = root / "inventory.ini"
    lines = ["[edgecnn]"]
    lines += [f"{device} ansible_host={pi_cache() / system}" for device, (system, _) in
              DEVICES.items()]  # fmt: skip
    lines += ["[edgecnn:vars]", "ansible_connection=community.general.chroot",
              "ansible_python_interpreter=/usr/bin/python3", f"edgecnn_venv={VENV}"]  # fmt: skip
    inventory.write_text("\n".join(lines) + "\n")
    installed = {device: _store(device).current for device in DEVICES}
    return SimpleNamespace(root=root, inventory=inventory, files=files, installed=installed,
                           name=files["pi64"].update["name"])  # fmt: skip


def _playbook(fleet, playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i inventory.ini PLAYBOOK -e ...`` as the README has it."""
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(fleet.root / "ansible-local"),
        # Inside the device: its /tmp, which Ansible empties after each task.
        "ANSIBLE_REMOTE_TMP": "/tmp",
    }
    command = ["ansible-playbook", "-i", str(fleet.inventory), str(FLEET / playbook), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=fleet.root,
                          timeout=900)  # fmt: skip


def _rollout(fleet, kind: str) -> subprocess.CompletedProcess[str]:
    files = fleet.files
    return _playbook(fleet, "rollout.yml", "-e", f"update_pi64={getattr(files['pi64'], kind)}",
                     "-e", f"update_pi32={getattr(files['pi32'], kind)}")  # fmt: skip


def _summary(output: str) -> list[str]:
    """The final summary's lines (``host: name version``)."""
    block = output.split("TASK [Summary", 1)[1].split("PLAY RECAP", 1)[0]
    return re.findall(r'^\s+"([^"]+: [^"]+)",?$', block, flags=re.M)


def _task(output: str, title: str) -> dict[str, str]:
    """What each device's run of the task ``title`` ended as (ok, changed, skipping, ...)."""
    results = {}
    for block in output.split(f"TASK [{title}")[1:]:
        block = re.split(r"\n(?:TASK|PLAY) \[", block, maxsplit=1)[0]
        for status, host in re.findall(r"^(\w+): \[([^\]\s]+)", block, flags=re.M):
            results[host] = status
    return results


def _recap(output: str, device: str) -> dict[str, int]:
    line = re.search(rf"^{device}\s+:(.*)$", output.split("PLAY RECAP", 1)[1], flags=re.M)
    assert line is not None, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


@pytest.fixture(scope="module")
def good_rollout(fleet) -> subprocess.CompletedProcess[str]:
    """rollout.yml with the good update files, run once: the tests that need the fleet on
    the good update's version take it from here rather than rolling it out again."""
    return _rollout(fleet, "good")


def test_a_good_rollout_updates_the_canary_then_the_rest(fleet, good_rollout):
    name = fleet.name
    version = fleet.files["pi64"].update["version"]
    assert fleet.files["pi32"].update["version"] == version  # one model, two targets
    done = good_rollout
    print(done.stdout)
    assert done.returncode == 0, tail(done.stdout + done.stderr, 60)
    assert _summary(done.stdout) == [f"{device}: {name} {version}" for device in DEVICES]
    for device in DEVICES:
        store = _store(device)
        assert store.current == f"{name}/{version}"
        assert store.previous == fleet.installed[device]
        assert _recap(done.stdout, device)["failed"] == 0
    # The canary alone first: its update ran before the other device was first touched.
    canary_switched = done.stdout.index(f'"msg": "pi64-canary: {name} {version}"')
    assert done.stdout.index("[pi32]") > canary_switched
    assert done.stdout.count("PLAY [Roll out") == 2  # two batches: [1, "100%"]
    assert _task(done.stdout, "Run edgecnn update") == {d: "changed" for d in DEVICES}

    again = _rollout(fleet, "good")
    print(again.stdout)
    assert again.returncode == 0, tail(again.stdout + again.stderr, 60)
    for device in DEVICES:
        assert f"{device}: already on {name} {version}; not updated" in again.stdout
        assert _recap(again.stdout, device)["changed"] == 0
        assert _store(device).current == f"{name}/{version}"
    assert _summary(again.stdout) == _summary(done.stdout)


def test_a_canary_that_fails_verify_stops_the_rollout(fleet):
    before = {device: _store(device) for device in DEVICES}
    done = _rollout(fleet, "failing")
    print(done.stdout)
    assert done.returncode != 0
    current = before["pi64-canary"].current
    assert f'"msg": "pi64-canary: {current.replace("/", " ")}"' in done.stdout
    assert ("pi64-canary: edgecnn update exited 1 (failed verify on the device, which keeps "
            "its model)") in done.stdout  # fmt: skip
    assert "failed verify on this device" in done.stdout
    assert "The rollout stops here" in done.stdout
    assert _recap(done.stdout, "pi64-canary")["failed"] == 1
    assert _task(done.stdout, "Stop the rollout") == {"pi64-canary": "fatal"}
    # The second device was never reached: no task ran there, its store is as it was.
    assert "[pi32]" not in done.stdout and "TASK [Summary" not in done.stdout
    for device, was in before.items():
        now = _store(device)
        assert (now.current, now.previous, now.folders) == (was.current, was.previous,
                                                            was.folders)  # fmt: skip
        assert not any(FAILING_VERSION in folder for folder in now.folders)
    assert _store("pi32").mtime == before["pi32"].mtime


def test_rollback_goes_back_once(fleet, good_rollout):
    """rollback.yml -e rollback_from=VERSION: back to the installed model; run again, left."""
    version = fleet.files["pi64"].update["version"]
    assert good_rollout.returncode == 0, tail(good_rollout.stdout + good_rollout.stderr, 60)
    for device in DEVICES:  # the good update's version, whatever ran since
        assert _store(device).current == f"{fleet.name}/{version}"
    done = _playbook(fleet, "rollback.yml", "-e", f"rollback_from={version}")
    print(done.stdout)
    assert done.returncode == 0, tail(done.stdout + done.stderr, 60)
    expected = [f"{d}: {fleet.installed[d].replace('/', ' ')}" for d in DEVICES]
    assert _summary(done.stdout) == expected
    again = _playbook(fleet, "rollback.yml", "-e", f"rollback_from={version}")
    assert again.returncode == 0, tail(again.stdout + again.stderr, 60)
    assert _summary(again.stdout) == expected
    assert "left as it is" in again.stdout
    # Rolling out again switches to the version the devices hold, without copying it.
    back = _rollout(fleet, "good")
    assert back.returncode == 0, tail(back.stdout + back.stderr, 60)
    assert _task(back.stdout, "Switch back") == {d: "changed" for d in DEVICES}
    assert _task(back.stdout, "Copy the update file") == {d: "skipping" for d in DEVICES}
    assert _summary(back.stdout) == [f"{d}: {fleet.name} {version}" for d in DEVICES]
    for device in DEVICES:
        assert _recap(back.stdout, device)["changed"] == 1  # edgecnn models use only
