"""``edgecnn update`` and ``edgecnn models``: signed updates installed, verified, switched.

Real parts throughout: the tiny exported models with references made as the exporter
makes them, keys made and signatures checked by ssh-keygen, the CLI in-process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tarfile

import pytest
from cli_helpers import assert_one_line_error, invoke, run_cli_without
from shared import PICTURE, tiny_exports_with_references
from update_files import make_key, manifest_for, trust, write_update

N = 300
NAME = "fashion-mnist"
INT8, ONNX = "model_int8.tflite", "model_float32.onnx"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, test_images):
    """The tiny files, each with a reference as the exporter writes it."""
    folder = tmp_path_factory.mktemp("exports")
    names = (INT8, ONNX, "model_int8.onnx")
    return tiny_exports_with_references(folder, test_images.x[:N], test_images.y[:N], names)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    """The owner's key (private; ``.pub`` beside it)."""
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture
def home(tmp_path, monkeypatch, key):
    """EDGECNN_HOME with the owner's key trusted."""
    home = tmp_path / "home"
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    trust(key.with_name("owner.pub"), home)
    return home


@pytest.fixture
def installed(home, exports):
    """The int8 model added as fashion-mnist v1 (verified, current)."""
    result = invoke("models", "add", exports / INT8, "--name", NAME, "--version", "v1")
    assert result.exit_code == 0, result.stdout + result.stderr
    return home


def current(home):
    link = home / "models" / "current"
    return os.readlink(link) if link.is_symlink() else None


def leftovers(home):
    """Temporary entries and version folders other than those listed."""
    models = home / "models"
    return sorted(str(p.relative_to(models)) for p in models.rglob(".*"))


def test_first_add_verifies_installs_and_switches(home, exports):
    result = invoke("models", "add", exports / INT8, "--name", NAME, "--version", "v1")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"installing {NAME} v1"
    assert lines[1].startswith("verify: PASS: top-1 agreement with Keras")
    assert lines[-1] == f"current: {NAME} v1"
    assert current(home) == f"{NAME}/v1"  # relative
    folder = home / "models" / NAME / "v1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [INT8, f"{INT8}.json", f"{INT8}.reference.npz", "manifest.json"]
    )
    listed = invoke("models", "list")
    assert NAME in listed.stdout and "current" in listed.stdout and INT8 in listed.stdout


def test_add_without_a_version_makes_the_contract_s_version(home, exports):
    import hashlib
    import re

    assert invoke("models", "add", exports / INT8, "--name", NAME).exit_code == 0
    digest = hashlib.sha256((exports / INT8).read_bytes()).hexdigest()[:8]
    assert re.fullmatch(rf"{NAME}/\d{{8}}-\d{{6}}-{digest}", current(home))


def test_a_signed_update_is_checked_verified_and_switched(installed, exports, key, tmp_path):
    update = write_update(tmp_path / f"{NAME}-v2-generic.edgecnn-update", key, exports / ONNX,
                          NAME, "v2")  # fmt: skip
    result = invoke("update", update)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('checked the signature: Good "edgecnn-update" signature')
    assert f"installing {NAME} v2" in lines and lines[-2].startswith("verify: PASS")
    assert lines[-1] == (f"current: {NAME} v2 (previous: {NAME} v1, edgecnn models rollback "
                         "returns to it)")  # fmt: skip
    assert current(installed) == f"{NAME}/v2"
    assert os.readlink(installed / "models" / "previous") == f"{NAME}/v1"
    # The manifest is update.json's exact bytes.
    with tarfile.open(update) as tar:
        raw = tar.extractfile("update.json").read()
    assert (installed / "models" / NAME / "v2" / "manifest.json").read_bytes() == raw
    assert leftovers(installed) == []
    back = invoke("models", "rollback")
    assert back.exit_code == 0 and back.stdout.startswith(
        f"current: {NAME} v1 (previous: {NAME} v2"
    )
    assert current(installed) == f"{NAME}/v1"
    assert invoke("models", "use", "v2").exit_code == 0 and current(installed) == f"{NAME}/v2"


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _link(name, kind, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _file(name):
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _negative_size(name):
    """A pax header giving the member a size of -1024 (tarfile takes it as it is)."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {"size": "-1024"}
    return info


def _sparse(name):
    """A regular file whose pax headers make it sparse (GNU format 0.1)."""
    info = _file(name)
    info.pax_headers = {"GNU.sparse.size": "1048576", "GNU.sparse.map": "0,1"}
    return info


OTHER_MACHINE = "armv7l" if platform.machine() != "armv7l" else "aarch64"
#: (what, changes to write_update's arguments or a function damaging the file, message)
REFUSED = {
    "wrong key": ({"other_key": True}, "the signature is not good"),
    # The middle of the file is inside the largest member: it unpacks, to other bytes.
    "damaged byte": (_flip_middle_byte, "is damaged (its SHA-256 differs"),
    "truncated": (_truncate, "damaged or not an update file"),
    "extra member": ({"extra": {"notes.txt": b"hello"}}, "notes.txt is not listed"),
    "dot-dot name": ({"members": [_file("../evil")]}, "is not a plain file name"),
    "folder name": ({"members": [_file("sub/evil")]}, "is not a plain file name"),
    "absolute name": ({"members": [_file("/tmp/evil")]}, "is not a plain file name"),
    "symlink": ({"members": [_link("link", tarfile.SYMTYPE, "/etc/passwd")]}, "is a symlink"),
    "hard link": ({"members": [_link("hard", tarfile.LNKTYPE, "update.json")]}, "hard link"),
    "folder": ({"members": [_link("dir", tarfile.DIRTYPE)]}, "is a folder"),
    "negative size": ({"members": [_negative_size("neg")]}, "neg has a negative size"),
    "sparse": ({"members": [_sparse("holes")]}, "holes has holes (sparse)"),
    "too many members": ({"extra": {f"x{i}": b"" for i in range(14)}}, "more than 16 files"),
    "wrong machine": ({"machine": OTHER_MACHINE}, f"is made for {OTHER_MACHINE}"),
    # update.json against the model's own metadata (what predict and serve will use)
    "input shape": ({"input_shape": [32, 32, 3]},
                    f"its model {ONNX} takes input [28, 28, 1], update.json says [32, 32, 3]"),
    "classes": ({"classes": "reversed"}, f"its model {ONNX} has other classes than update.json"),
    "file hash": ({"hash": True}, "its SHA-256 differs"),
    "format version": ({"format_version": 2}, "format_version"),
    "bad version name": ({"version": "../v2"}, "'s version is missing or not allowed"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(REFUSED))
def test_a_bad_update_is_refused_and_current_stays(what, installed, exports, key, tmp_path):
    change, message = REFUSED[what]
    kwargs, signer = {}, key
    manifest = manifest_for(exports / ONNX, NAME, "v2")
    if isinstance(change, dict):
        change = dict(change)
        if change.pop("other_key", False):
            signer = make_key(tmp_path)
        if change.pop("hash", False):
            manifest["files"][ONNX] = "0" * 64
        if change.get("classes") == "reversed":
            change["classes"] = manifest["classes"][::-1]
        for field in ("machine", "input_shape", "classes", "format_version", "version"):
            if field in change:
                manifest[field] = change.pop(field)
        kwargs = change
    update = write_update(tmp_path / "u.edgecnn-update", signer, exports / ONNX, NAME, "v2",
                          manifest=manifest, **kwargs)  # fmt: skip
    if callable(change):
        change(update)
    result = invoke("update", update)
    assert_one_line_error(result, message, code=2)
    assert current(installed) == f"{NAME}/v1"
    assert sorted(p.name for p in (installed / "models" / NAME).iterdir()) == ["v1"]
    assert leftovers(installed) == []


def test_no_trusted_key_is_refused(installed, exports, key, tmp_path):
    (installed / "keys" / "allowed_signers").unlink()
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v2")
    assert_one_line_error(invoke("update", update), "no owner key is installed here", code=2)
    assert current(installed) == f"{NAME}/v1"


def test_not_an_update_file_is_refused(installed, tmp_path):
    (tmp_path / "u.edgecnn-update").write_bytes(b"not a gzip file at all")
    assert_one_line_error(invoke("update", tmp_path / "u.edgecnn-update"), "damaged", code=2)
    assert_one_line_error(invoke("update", tmp_path / "missing"), "does not exist", code=2)
    assert current(installed) == f"{NAME}/v1"


@pytest.fixture(scope="module")
def unprovable(exports, tmp_path_factory, test_images):
    """The int8 .tflite beside the reference of the int8 .onnx, as the exporter writes one
    (recording the SHA-256 of the file it was made for): verify cannot pass it."""
    import hashlib

    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.verify import reference_bytes

    folder = tmp_path_factory.mktemp("unprovable")
    for f in (INT8, f"{INT8}.json"):
        shutil.copy(exports / f, folder / f)
    onnx = exports / "model_int8.onnx"
    images, labels = test_images.x[:N], test_images.y[:N]
    keras = load_classifier(exports / ONNX).predict(images)
    gate = {"file": onnx.name, "precision": "int8", "backend": "onnxruntime",
            "min_agreement": 0.99, "max_prob_diff": None,
            "file_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()}  # fmt: skip
    exported = load_classifier(onnx).predict(images)
    reference = reference_bytes(images, labels, keras, exported, gate)
    (folder / f"{INT8}.reference.npz").write_bytes(reference)
    return folder / INT8


def test_an_update_that_fails_verify_is_removed_with_exit_1(installed, unprovable, key, tmp_path):
    update = write_update(tmp_path / "u.edgecnn-update", key, unprovable, NAME, "v2")
    result = invoke("update", update)
    assert_one_line_error(result, f"{NAME} v2 failed verify on this device", code=1)
    assert f"current stays {NAME} v1" in result.stderr
    assert "verify: FAIL" in result.stdout and "SHA-256 differs" in result.stdout
    assert current(installed) == f"{NAME}/v1"
    assert sorted(p.name for p in (installed / "models" / NAME).iterdir()) == ["v1"]
    assert leftovers(installed) == []


def test_add_that_fails_verify_leaves_nothing(home, unprovable):
    result = invoke("models", "add", unprovable, "--name", NAME, "--version", "v1")
    assert_one_line_error(result, "failed verify", code=1)
    assert current(home) is None and not (home / "models" / NAME / "v1").exists()


def test_add_refuses_bad_input(home, exports, tmp_path):
    shutil.copy(exports / INT8, tmp_path / INT8)  # no reference beside it
    cases = [
        (("models", "add", tmp_path / INT8, "--name", NAME), "has no model_int8.tflite.reference"),
        (("models", "add", exports / INT8, "--name", "../x"), "--name '../x' must be"),
        (("models", "add", exports / "missing.tflite", "--name", NAME), "does not exist"),
    ]
    for args, message in cases:
        assert_one_line_error(invoke(*args), message)
    assert current(home) is None


def test_use_rollback_remove(installed, exports):
    assert_one_line_error(invoke("models", "rollback"), "no previous version")
    add = invoke("models", "add", exports / ONNX, "--name", NAME, "--version", "v2")
    assert add.exit_code == 0, add.stderr
    assert_one_line_error(invoke("models", "remove", "v2"), "is the current version")
    assert_one_line_error(invoke("models", "use", "v9"), "no version v9")
    assert invoke("models", "use", "v1", "--name", NAME).exit_code == 0
    assert current(installed) == f"{NAME}/v1"
    removed = invoke("models", "remove", "v2")
    assert removed.exit_code == 0 and removed.stdout.strip() == f"removed {NAME} v2"
    assert not (installed / "models" / "previous").is_symlink()  # it went with v2
    assert_one_line_error(invoke("models", "rollback"), "no previous version")
    listed = invoke("models", "list", "--json")
    versions = json.loads(listed.stdout)["versions"]
    assert [(v["version"], v["state"]) for v in versions] == [("v1", "current")]


def test_prune_keeps_three_and_always_current_and_previous(installed, exports):
    def add(version):
        done = invoke("models", "add", exports / INT8, "--name", NAME, "--version", version,
                      "--no-verify")  # fmt: skip
        assert done.exit_code == 0, done.stderr

    for v in ("v2", "v3", "v4", "v5"):
        add(v)
    folder = installed / "models" / NAME
    assert sorted(p.name for p in folder.iterdir()) == ["v3", "v4", "v5"]
    assert invoke("models", "use", "v3").exit_code == 0  # previous: v5
    add("v6")  # previous: v3, the oldest; kept beside the newest three
    assert sorted(p.name for p in folder.iterdir()) == ["v3", "v4", "v5", "v6"]
    assert os.readlink(installed / "models" / "previous") == f"{NAME}/v3"
    add("v7")
    assert sorted(p.name for p in folder.iterdir()) == ["v5", "v6", "v7"]


def test_predict_and_verify_without_a_model_use_the_current_one(installed):
    result = invoke("predict", PICTURE)
    assert result.exit_code == 0, result.stderr
    assert "Ankle boot" in result.stdout
    verified = invoke("verify")
    assert verified.exit_code == 0 and verified.stdout.strip().endswith("PASS")
    assert f"{NAME}/v1/{INT8}" in verified.stdout


def test_no_model_and_no_store_is_one_line(home):
    message = "no MODEL given and no current model installed ("
    assert_one_line_error(invoke("predict", PICTURE), message)
    assert_one_line_error(invoke("verify"), message)
    document = invoke("verify", "--json")
    assert_one_line_error(document, message)
    said = json.loads(document.stdout)
    assert said["model"] is None and said["passed"] is False and message in said["error"]


def test_a_named_model_is_still_taken_as_the_model(installed, exports):
    result = invoke("predict", exports / ONNX, PICTURE)
    assert result.exit_code == 0 and "Ankle boot" in result.stdout
    assert_one_line_error(invoke("predict", exports / ONNX), "give the pictures")


#: The CLI root registers every stage lazily; the heavy libraries must stay out.
FORBIDDEN = ("tensorflow", "keras")


def test_models_and_update_import_no_tensorflow(installed, exports, key, tmp_path):
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v2")
    run_cli_without(["update", update], FORBIDDEN)
    run_cli_without(["models", "list"], FORBIDDEN)
    run_cli_without(["models", "rollback"], FORBIDDEN)
    assert current(installed) == f"{NAME}/v1"


def _edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    data = json.loads(path.read_bytes())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("current_says", "message"),
    [
        ({"input_shape": [32, 32, 3]}, "takes input [28, 28, 1], the current fashion-mnist v1 "
                                       "takes [32, 32, 3]"),
        ({"classes": list("abcdefghij")}, "has other classes than the current fashion-mnist v1"),
    ],
)  # fmt: skip
def test_an_update_that_does_not_fit_the_current_model_is_refused(current_says, message,
                                                                  installed, exports, key,
                                                                  tmp_path):  # fmt: skip
    _edit_manifest(installed / "models" / NAME / "v1", **current_says)
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v2")
    assert_one_line_error(invoke("update", update), message, code=2)
    assert current(installed) == f"{NAME}/v1" and leftovers(installed) == []


@pytest.mark.parametrize("field", ["input_shape", "classes"])
def test_update_json_must_agree_with_its_own_model_even_with_nothing_installed(
    field, home, exports, key, tmp_path
):
    manifest = manifest_for(exports / ONNX, NAME, "v1")
    manifest[field] = [32, 32, 3] if field == "input_shape" else manifest["classes"][::-1]
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v1",
                          manifest=manifest)  # fmt: skip
    assert_one_line_error(invoke("update", update), f"its model {ONNX} ", code=2)
    assert current(home) is None and not (home / "models" / NAME / "v1").exists()


def test_an_update_older_than_the_current_model_is_refused_unless_allowed(installed, exports,
                                                                        key, tmp_path):  # fmt: skip
    old = manifest_for(exports / ONNX, NAME, "v0", created="2020-01-01T00:00:00Z")
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v0",
                          manifest=old)  # fmt: skip
    made = json.loads((installed / "models" / NAME / "v1" / "manifest.json").read_bytes())
    assert_one_line_error(invoke("update", update),
                          f"{NAME} v0 (made 2020-01-01T00:00:00Z) is older than the current v1 "
                          f"(made {made['created']}): a downgrade; edgecnn update --allow-older",
                          code=2)  # fmt: skip
    assert current(installed) == f"{NAME}/v1" and leftovers(installed) == []
    allowed = invoke("update", update, "--allow-older")
    assert allowed.exit_code == 0, allowed.stderr
    assert current(installed) == f"{NAME}/v0"


def test_an_update_made_before_the_install_of_an_older_export_is_not_a_downgrade(
    home, exports, key, tmp_path
):
    """install.sh adds the bundle's model (version from its export's time) after the
    update was made: the update is newer than that export, so it is taken."""
    added = invoke("models", "add", exports / INT8, "--name", NAME,
                   "--version", "20200101-000000-00000000")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    made = json.loads((home / "models" / NAME / "20200101-000000-00000000" / "manifest.json")
                      .read_bytes())  # fmt: skip
    assert made["created"] == "2020-01-01T00:00:00Z"
    newer = manifest_for(exports / ONNX, NAME, "v2", created="2021-01-01T00:00:00Z")
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v2",
                          manifest=newer)  # fmt: skip
    result = invoke("update", update)
    assert result.exit_code == 0, result.stderr
    assert current(home) == f"{NAME}/v2"


def test_add_from_inside_the_store_copies_and_the_version_stays_whole(installed, exports):
    source = installed / "models" / "current" / INT8
    result = invoke("models", "add", source, "--name", "b", "--version", "w1")
    assert result.exit_code == 0, result.stderr
    v1 = installed / "models" / NAME / "v1"
    assert sorted(p.name for p in v1.iterdir()) == sorted(
        [INT8, f"{INT8}.json", f"{INT8}.reference.npz", "manifest.json"]
    )
    assert invoke("models", "use", "v1", "--name", NAME).exit_code == 0
    predicted = invoke("predict", PICTURE)
    assert predicted.exit_code == 0 and "Ankle boot" in predicted.stdout, predicted.stderr


def test_add_from_inside_the_store_that_fails_verify_leaves_the_source(home, unprovable):
    # The unprovable model installed unverified, then added again from the store, verified.
    added = invoke("models", "add", unprovable, "--name", NAME, "--version", "v1",
                   "--no-verify")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    source = home / "models" / NAME / "v1" / INT8
    result = invoke("models", "add", source, "--name", "b", "--version", "w1")
    assert_one_line_error(result, "failed verify", code=1)
    assert source.is_file() and (home / "models" / NAME / "v1" / f"{INT8}.json").is_file()


def test_a_version_without_its_model_file_is_marked_broken_and_use_refuses_it(installed,
                                                                             exports):  # fmt: skip
    added = invoke("models", "add", exports / ONNX, "--name", NAME, "--version", "v2",
                   "--no-verify")  # fmt: skip
    assert added.exit_code == 0 and "not verified" in added.stdout, added.stderr
    (installed / "models" / NAME / "v1" / INT8).unlink()
    listed = json.loads(invoke("models", "list", "--json").stdout)["versions"]
    assert [(v["version"], v["state"]) for v in listed] == [
        ("v1", "previous, broken"),
        ("v2", "current, unverified"),
    ]
    text = invoke("models", "list").stdout
    assert "previous, broken" in text and "current, unverified" in text
    assert_one_line_error(invoke("models", "use", "v1"), f"{NAME} v1 is broken: its model file "
                          f"{INT8} is missing; edgecnn models remove v1")  # fmt: skip
    assert_one_line_error(invoke("models", "rollback"), f"previous version {NAME} v1 is broken")
    assert current(installed) == f"{NAME}/v2"


def _dangle(home, target=f"{NAME}/gone"):
    link = home / "models" / "current"
    link.unlink()
    os.symlink(target, link)


def test_a_dangling_current_is_taken_as_none_and_repaired(installed, exports, key, tmp_path):
    for v in ("v2", "v3"):
        added = invoke("models", "add", exports / ONNX, "--name", NAME, "--version", v,
                       "--no-verify")  # fmt: skip
        assert added.exit_code == 0, added.stderr
    # current v3, previous v2; current now points at a version removed by hand.
    _dangle(installed)
    repair = f"current: broken link to {NAME}/gone; edgecnn models use VERSION repairs it"
    listed = invoke("models", "list")
    assert listed.exit_code == 0 and listed.stdout.splitlines()[0] == repair, listed.stderr
    document = json.loads(invoke("models", "list", "--json").stdout)
    assert document["broken_current"] == f"{NAME}/gone"
    assert_one_line_error(invoke("predict", PICTURE), f"broken link to {NAME}/gone")
    removed = invoke("models", "remove", "v3")
    assert removed.exit_code == 0, removed.stderr
    back = invoke("models", "rollback")
    assert back.exit_code == 0, back.stderr
    assert current(installed) == f"{NAME}/v2"
    assert not (installed / "models" / "previous").is_symlink()  # nothing to go back to
    assert_one_line_error(invoke("models", "rollback"), "no previous version")
    _dangle(installed)
    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v4")
    updated = invoke("update", update)
    assert updated.exit_code == 0, updated.stderr
    assert current(installed) == f"{NAME}/v4"
    _dangle(installed)
    assert invoke("models", "use", "v1").exit_code == 0 and current(installed) == f"{NAME}/v1"


#: Run in a child: ``edgecnn update FILE`` that dies (no cleanup) while verifying.
CRASH_IN_VERIFY = """
import os, sys
import edgecnn.runtime.verify

edgecnn.runtime.verify.verify = lambda *args, **kwargs: os._exit(77)
sys.argv = ["edgecnn", "update", sys.argv[1]]
from edgecnn.cli import main
main()
"""


def test_a_crash_during_verify_leaves_no_version_and_the_update_runs_again(
    installed, exports, key, tmp_path
):
    import subprocess
    import sys

    update = write_update(tmp_path / "u.edgecnn-update", key, exports / ONNX, NAME, "v2")
    child = subprocess.run([sys.executable, "-c", CRASH_IN_VERIFY, str(update)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert child.returncode == 77, child.stderr
    listed = json.loads(invoke("models", "list", "--json").stdout)["versions"]
    assert [v["version"] for v in listed] == ["v1"]  # nothing unverified is visible
    again = invoke("update", update)
    assert again.exit_code == 0, again.stderr
    assert current(installed) == f"{NAME}/v2" and leftovers(installed) == []


@pytest.mark.parametrize(
    ("uname", "pointer_bytes", "machine"),
    [("aarch64", 8, "aarch64"), ("aarch64", 4, "armv7l"), ("armv7l", 4, "armv7l"),
     ("x86_64", 8, "x86_64"), ("armv6l", 4, "armv6l")],
)  # fmt: skip
def test_a_32_bit_system_on_a_64_bit_kernel_is_its_32_bit_machine(uname, pointer_bytes,
                                                                  machine):  # fmt: skip
    """32-bit Raspberry Pi OS on a Pi 4 or 5: uname says aarch64, the programs are armv7l."""
    from edgecnn.runtime.update import device_machine

    assert device_machine(uname, pointer_bytes) == machine
