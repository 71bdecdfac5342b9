"""Run inside an emulated Raspberry Pi OS: a device's life with signed model-only updates.

Usage: ``python3 update_runner.py WORK EDGECNN PHASE[,PHASE...]``. ``EDGECNN`` is the
``edgecnn`` of a venv that install.sh filled from a signed bundle (its store:
``VENV/models``); ``WORK`` holds the update files the host made, and receives
``info.json``: every command run, with its exit code, output, wall time and the store's
``current`` link afterwards.

The order: the good update, the refused ones (wrong key, damaged) and the one that fails
verify, ``models rollback``; then, for each ``PHASE`` (a key of PHASES), ``edgecnn update
kill-NN.edgecnn-update`` killed with SIGKILL as soon as the store shows it in that phase,
each followed by ``edgecnn verify`` of whatever is current (the first one cut while its
version was being written or verified is run again at once); then
``after.edgecnn-update``, which must succeed. Only the standard library is imported here:
the commands are what a user would type.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def run(command: list[str], timeout: float = 900) -> dict:
    """One command, timed: exit code, stdout, stderr, seconds."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return {
        "command": command[1:],
        "returncode": done.returncode,
        "stdout": done.stdout[-4000:],
        "stderr": done.stderr[-4000:],
        "seconds": time.perf_counter() - start,
    }


#: Where an update is cut, by the temporary entry of the store that shows it has begun
#: (``{name}`` and ``{version}``: the update's): ``checking``, the update's scratch folder,
#: where the file is unpacked and checked before anything of the new version exists;
#: ``verifying``, the new version's temporary folder, where its files are moved and then
#: verified (most of an update's time) before the folder is named and made current.
PHASES = {"checking": ".update.tmp-", "verifying": "{name}/.{version}.tmp-"}
#: How often the store is looked at while an update runs.
POLL_SECONDS = 0.05


def killed_in(command: list[str], begun) -> dict:
    """``command`` started, then SIGKILL once ``begun()`` is true (unless it ended first)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not begun():
        time.sleep(POLL_SECONDS)
    delay = time.perf_counter() - start
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate()
    return {
        "command": command[1:],
        "delay": delay,
        "killed": proc.returncode == -signal.SIGKILL,
        "returncode": proc.returncode,
        "stdout": stdout[-4000:],
        "stderr": stderr[-4000:],
        "seconds": time.perf_counter() - start,
    }


class Device:
    """The venv's edgecnn and its store, every step recorded."""

    def __init__(self, edgecnn: str, work: Path) -> None:
        self.edgecnn, self.work = edgecnn, work
        self.models = Path(edgecnn).parents[1] / "models"

    def current(self) -> str | None:
        link = self.models / "current"
        return os.readlink(link) if link.is_symlink() else None

    def entries(self) -> list[str]:
        """Every entry of the store, two levels deep (version folders, links, leftovers);
        a folder removed while it is read (an update is running) is listed empty."""
        found = []
        for entry in sorted(self.models.iterdir()):
            found.append(entry.name)
            try:
                if entry.is_dir() and not entry.is_symlink():
                    found += [f"{entry.name}/{sub.name}" for sub in sorted(entry.iterdir())]
            except FileNotFoundError:
                pass
        return found

    def step(self, *args: str) -> dict:
        result = run([self.edgecnn, *args])
        result["current"] = self.current()
        return result

    def update(self, file: str) -> dict:
        return self.step("update", str(self.work / file))

    def listed(self) -> dict:
        done = run([self.edgecnn, "models", "list", "--json"])
        return json.loads(done["stdout"]) if done["returncode"] == 0 else done

    def verified(self) -> dict:
        """``edgecnn verify --json`` with no MODEL: the current model."""
        done = run([self.edgecnn, "verify", "--json"])
        try:
            document = json.loads(done["stdout"])
        except json.JSONDecodeError:
            document = {}
        return {"returncode": done["returncode"], "passed": document.get("passed"),
                "model": document.get("model"), "stderr": done["stderr"]}  # fmt: skip


def kill_points(device: Device, phases: list[str]) -> list[dict]:
    """``edgecnn update`` killed in each of ``phases``; after each, the store as it was left
    and ``edgecnn verify`` of its current model."""
    points = []
    for i, phase in enumerate(phases):
        before = device.current()
        file = f"kill-{i:02d}.edgecnn-update"
        mark = PHASES[phase].format(name=(before or "/").split("/")[0],
                                    version=file.removesuffix(".edgecnn-update"))  # fmt: skip
        there = set(device.entries())

        def begun(mark: str = mark, there: set[str] = there) -> bool:
            return any(e.startswith(mark) for e in set(device.entries()) - there)

        point = killed_in([device.edgecnn, "update", str(device.work / file)], begun)
        point.update(file=file, phase=phase, current_before=before, current=device.current(),
                     entries=device.entries(), verify=device.verified())  # fmt: skip
        if cut_mid_way(point) and not [p for p in points if "again" in p]:
            # Run again at once, as a user would after the cut.
            point["again"] = device.update(file)
            point["again"]["entries"] = device.entries()
        points.append(point)
    return points


def cut_mid_way(point: dict) -> bool:
    """Whether the kill came while the new version was being written or verified: its
    temporary folder is there, ``current`` did not move."""
    version = point["file"].removesuffix(".edgecnn-update")
    name = (point["current"] or "/").split("/")[0]
    writing = [e for e in point["entries"] if e.startswith(f"{name}/.{version}.tmp-")]
    return bool(writing) and point["current"] == point["current_before"]


def main() -> None:
    work, edgecnn, phases = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
    device = Device(edgecnn, work)
    keys = device.models.parent / "keys" / "allowed_signers"
    trusted = keys.read_text() if keys.is_file() else None
    info: dict = {"installed": {"current": device.current(), "list": device.listed(),
                                "allowed_signers": trusted}}  # fmt: skip
    info["update"] = device.update("update.edgecnn-update")
    info["update"]["list"] = device.listed()
    for what in ("wrong-key", "damaged", "fails-verify"):
        info[what] = device.update(f"{what}.edgecnn-update")
        info[what]["entries"] = device.entries()
    info["rollback"] = device.step("models", "rollback")
    info["kills"] = kill_points(device, phases)
    # after verifies its model before it switches: its output says so.
    info["after"] = device.update("after.edgecnn-update")
    info["after"]["entries"] = device.entries()
    (work / "info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
