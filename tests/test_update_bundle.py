"""``edgecnn keys``, ``edgecnn bundle --key`` and ``--model-only``: what a device installs
and keeps, signed by its owner.

The update file's reader is the device's (``edgecnn update``, tested in the runtime); here
the file is opened as the contract describes it and checked with ``runtime.signing``. The
slow test installs a signed bundle on this machine: the model lands in the venv's store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import tiny_exports_with_references

from edgecnn.pipeline.bundle_readme import readme
from edgecnn.pipeline.bundle_sample import png_bytes, slug
from edgecnn.runtime import signing

N = 200
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
UPDATE_NAME = re.compile(r"fashion-mnist-\d{8}-\d{6}-[0-9a-f]{8}-pi64\.edgecnn-update")
PLAIN = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, test_images):
    folder = tmp_path_factory.mktemp("run") / "exports"
    folder.mkdir()
    return tiny_exports_with_references(folder, test_images.x[:N], test_images.y[:N])


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    """The owner's private key, made by edgecnn keys."""
    folder = tmp_path_factory.mktemp("keys")
    result = invoke("keys", "--out", folder)
    assert result.exit_code == 0, result.stdout + result.stderr
    return folder / "owner"


def _allowed(tmp_path: Path, public: Path) -> Path:
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(signing.allowed_signers_line(signing.public_key_text(public)))
    return allowed


def test_keys_makes_a_pair_says_where_and_never_overwrites(tmp_path):
    folder = tmp_path / "my keys"
    result = invoke("keys", "--out", folder)
    assert result.exit_code == 0, result.stdout + result.stderr
    private, public = folder / "owner", folder / "owner.pub"
    assert private.stat().st_mode & 0o077 == 0 and public.is_file()
    assert signing.fingerprint(public) in result.stdout
    assert f"private key: {private}" in result.stdout and f"--key {private}" in result.stdout
    before = private.read_bytes()
    assert_one_line_error(invoke("keys", "--out", folder), "exists: a key is never overwritten")
    assert private.read_bytes() == before


def test_model_only_writes_a_small_update_signed_by_the_owner(exports, key, tmp_path):
    result = invoke("bundle", exports, "--target", "pi64", "--model-only", "--key", key,
                    "--model", "model_int8.tflite")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    (path,) = exports.parent.glob("*.edgecnn-update")
    try:
        assert UPDATE_NAME.fullmatch(path.name), path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert str(path) in result.stdout and digest in result.stdout
        assert path.stat().st_size < 256 * 1024  # kilobytes, not the wheels' megabytes
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            data = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    finally:
        path.unlink()
    assert all(m.isreg() and PLAIN.fullmatch(m.name) for m in members) and len(members) <= 16
    raw = data["update.json"]
    good = signing.verify(raw, data["update.json.sig"], _allowed(tmp_path, Path(f"{key}.pub")))
    assert "Good" in good
    update = json.loads(raw)
    model = "model_int8.tflite"
    assert update["format"] == "edgecnn-update" and update["format_version"] == 1
    assert update["model"] == model and update["target"] == "pi64"
    assert update["machine"] == "aarch64" and update["name"] == "fashion-mnist"
    assert set(update["files"]) == {model, f"{model}.json", f"{model}.reference.npz"}
    assert set(data) == {"update.json", "update.json.sig", *update["files"]}
    for name, sha in update["files"].items():
        assert hashlib.sha256(data[name]).hexdigest() == sha
        assert data[name] == (exports / name).read_bytes()
    assert update["version"].endswith("-" + update["files"][model][:8])
    assert update["input_shape"] == [28, 28, 1] and len(update["classes"]) == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", update["created"])


def test_model_only_takes_out_and_name(exports, key, tmp_path):
    out = tmp_path / "new.edgecnn-update"
    result = invoke("bundle", exports, "--target", "generic", "--model-only", "--key", key,
                    "--name", "shoes", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    with tarfile.open(out) as tar:
        update = json.load(tar.extractfile("update.json"))  # type: ignore[arg-type]
    assert update["name"] == "shoes" and update["machine"] is None
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_the_device_takes_the_update_and_refuses_another_keys(exports, key, tmp_path,
                                                              monkeypatch):  # fmt: skip
    """edgecnn update (the runtime's reader) installs what --model-only wrote, and refuses
    the same file signed by a key its allowed_signers does not hold."""
    home = tmp_path / "device"
    (home / "keys").mkdir(parents=True)
    _allowed(home / "keys", Path(f"{key}.pub"))
    monkeypatch.setenv("EDGECNN_HOME", str(home))
    out = tmp_path / "u.edgecnn-update"
    result = invoke("bundle", exports, "--target", "generic", "--model-only", "--key", key,
                    "--model", "weights.npz", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    applied = invoke("update", out)
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    with tarfile.open(out) as tar:
        update = json.load(tar.extractfile("update.json"))  # type: ignore[arg-type]
    current = home / "models" / "current"
    assert os.readlink(current) == f"{update['name']}/{update['version']}"
    other = tmp_path / "other"
    signing.make_key(other)
    foreign = tmp_path / "f.edgecnn-update"
    result = invoke("bundle", exports, "--target", "generic", "--model-only", "--key", other,
                    "--model", "model_int8.tflite", "--out", foreign)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert_one_line_error(invoke("update", foreign), "signature")
    assert os.readlink(current) == f"{update['name']}/{update['version']}"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model-only"], "--model-only needs --key"),
        (["--model-only", "--key", "/nonexistent/owner"], "no such key file"),
        (["--model-only", "--key", "KEY", "--video"], "--video is for full bundles"),
        (["--model-only", "--key", "KEY", "--python", "3.11"], "--python is for full bundles"),
        (["--model-only", "--key", "KEY", "--model", "model_int8.tflite,weights.npz"],
         "--model-only carries one model"),
        (["--model-only", "--key", "KEY.pub"], "give the private key"),
        (["--model-only", "--key", "KEY", "--name", "../x"], "--name '../x'"),
        (["--model-only", "--key", "KEY", "--name", "current"], "taken by the store's own link"),
        (["--key", "/nonexistent/owner"], "no such key file"),
        (["--model-only", "--key", "KEY", "--model", "nope.tflite"], "not a file of this export"),
    ],
)  # fmt: skip
def test_bad_signing_options_get_one_line(exports, key, tmp_path, args, match):
    out = tmp_path / "out.edgecnn-update"
    args = [str(key) + a[3:] if a.startswith("KEY") else a for a in args]
    result = invoke("bundle", exports, "--target", "pi64", *args, "--out", out)
    assert_one_line_error(result, match)
    assert not any(tmp_path.iterdir())


def test_a_key_pair_that_is_not_one_is_refused(exports, key, tmp_path):
    """Another key's .pub beside the private key: no bundle every device would refuse."""
    other = tmp_path / "other"
    signing.make_key(other)
    shutil.copy(f"{key}.pub", f"{other}.pub")
    result = invoke("bundle", exports, "--target", "generic", "--key", other, "--out",
                    tmp_path / "b")  # fmt: skip
    assert_one_line_error(result, f"cannot sign with {other}")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def signed(exports, key, tmp_path_factory):
    """A signed generic bundle folder, built once."""
    out = tmp_path_factory.mktemp("signed") / "edgecnn-generic"
    result = invoke("bundle", exports, "--target", "generic", "--key", key, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ", signed" in result.stdout
    return out


def test_a_signed_bundle_carries_the_key_and_a_good_signature(signed, key, tmp_path):
    sums = (signed / "SHA256SUMS").read_bytes()
    allowed = _allowed(tmp_path, Path(f"{key}.pub"))
    assert "Good" in signing.verify(sums, (signed / "SHA256SUMS.sig").read_bytes(), allowed)
    assert (signed / "keys/owner.pub").read_text() == Path(f"{key}.pub").read_text()
    listed = [line.split("  ", 1)[1] for line in sums.decode().splitlines()]
    assert "keys/owner.pub" in listed and "SHA256SUMS.sig" not in listed
    manifest = json.loads((signed / "bundle.json").read_text())
    assert manifest["signed"] is True and manifest["name"] == "fashion-mnist"
    model_sha = hashlib.sha256((signed / "model" / manifest["model"]).read_bytes()).hexdigest()
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{model_sha[:8]}", manifest["version"])
    with pytest.raises(signing.SignatureError):
        signing.verify(sums + b"\n", (signed / "SHA256SUMS.sig").read_bytes(), allowed)


def test_the_sample_is_a_test_picture_the_model_gets_right(signed, exports, test_images):
    """Its name says its class; it is one of the run's test pictures, and the bundled
    model classifies the PNG as that class, as edgecnn predict would read it."""
    from edgecnn.runtime import load_classifier
    from edgecnn.runtime.images import load_image
    from edgecnn.runtime.labels import FASHION_MNIST_LABELS

    manifest = json.loads((signed / "bundle.json").read_text())
    sample = signed / manifest["sample"]
    assert manifest["sample"].startswith("sample/sample-") and sample.suffix == ".png"
    label = next(i for i, c in enumerate(FASHION_MNIST_LABELS)
                 if sample.name == f"sample-{slug(c)}.png")  # fmt: skip
    clf = load_classifier(signed / "model" / manifest["model"])
    pixels = load_image(sample)  # as edgecnn predict reads a picture
    assert any((pixels.reshape(28, 28) == x).all() and y == label
               for x, y in zip(test_images.x[:N], test_images.y[:N], strict=True))  # fmt: skip
    assert int(clf.predict(pixels[None, ..., None]).argmax()) == label


def test_png_bytes_round_trip_through_pillow():
    from PIL import Image

    grey = (255 * (1 + np.arange(12).reshape(3, 4)) // 12).astype(np.uint8)
    colour = np.stack([grey, grey[::-1], 255 - grey], axis=-1)
    for pixels in (grey, grey[..., None], colour):
        with Image.open(io.BytesIO(png_bytes(pixels))) as image:
            assert (np.asarray(image).reshape(pixels.shape) == pixels).all()


def test_readme_claims_only_what_the_manifest_holds(signed):
    """No wheel, Python, model or PyAV the bundle does not carry is named."""
    text = (signed / "README.txt").read_text()
    manifest = json.loads((signed / "bundle.json").read_text())
    assert "Wheels: edgecnn's only" in text and "Signed:" in text
    assert f"model/{manifest['model']}" in text and manifest["sample"] in text
    assert f"{manifest['name']} {manifest['version']}" in text
    assert "serve follows edgecnn update by itself" in text and "reload" not in text
    pythons = {"3.11": {"requirements": ["edgecnn", "ai-edge-litert", "pillow"],
                        "model": "model_int8.tflite"}}  # fmt: skip
    made = {**manifest, "target_name": "Raspberry Pi OS 64-bit (bookworm, trixie)",
            "pythons": pythons, "models": ["model_int8.tflite"], "signed": False,
            "sample": None, "model": "model_int8.tflite", "notes": "n"}  # fmt: skip
    text = readme(made)
    for absent in ("onnxruntime", "3.13", "3.10", "weights.npz", "Signed:", "sample", "av)"):
        assert absent not in text, absent
    assert "3.11: edgecnn ai-edge-litert pillow; runs model/model_int8.tflite" in text
    assert "Not signed" in text and "edgecnn bundle --video" in text
    assert "refuses it (exit 2) unless run as" in text and "VENV --allow-unsigned" in text


def test_the_bundles_notes_claim_no_wheels():
    """A target's notes are true of every bundle for it: wheels, Pythons and PyAV are
    the manifest's to name."""
    from edgecnn.pipeline.devices import BUNDLE_TARGETS

    for target in BUNDLE_TARGETS.values():
        for claim in ("onnxruntime wheel", "LiteRT and", "3.10 to 3.13", "--video carries"):
            assert claim not in target.notes, (target.key, claim)


def _render_unit(venv: str) -> str:
    """The unit as install.sh --service renders it (its own Python does, the same way)."""
    from importlib import resources

    text = resources.files("edgecnn.pipeline").joinpath("templates/edgecnn-serve.service")
    quoted = venv
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("%", "%%")):
        quoted = quoted.replace(a, b)
    rendered = text.read_text().replace("@HOME@", quoted)
    return rendered.replace("@VENV@", quoted.replace("$", "$$"))


def _analyze(unit: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --user`` of a unit file, with a runtime folder of its own
    (a session's may not exist: a container, root over ssh)."""
    runtime = unit.parent / ".runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(["systemd-analyze", "verify", "--user", str(unit)], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_service_unit_passes_systemd_analyze(tmp_path):
    venv = tmp_path / "edge venv %h"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "edgecnn").write_text("#!/bin/sh\n")
    (venv / "bin" / "edgecnn").chmod(0o755)
    unit = tmp_path / "edgecnn-serve.service"
    unit.write_text(_render_unit(str(venv)))
    done = _analyze(unit)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    text = unit.read_text()
    assert (
        f'ExecStart="{tmp_path}/edge venv %%h/bin/edgecnn" serve --host 127.0.0.1 --port 8080'
        in text
    )
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "Restart=on-failure" in text
    # The store the unit serves is the venv's, whatever EDGECNN_HOME a shell has.
    assert f'Environment="EDGECNN_HOME={tmp_path}/edge venv %%h"' in text
    assert "follows edgecnn update by itself" in text


# --- install.sh on this machine: the model goes into the store --------------------------


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV",
                                                                     "XDG_CONFIG"))}  # fmt: skip
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1", HOME=str(home))
    env["PATH"] = str(Path(sys.executable).resolve().parent) + os.pathsep + env.get("PATH", "")
    return env


def _install(bundle: Path, venv: Path, env: dict[str, str], *options: str):
    return subprocess.run(["sh", str(bundle / "install.sh"), str(venv), *options],
                          capture_output=True, text=True, timeout=900, env=env)  # fmt: skip


def test_a_damaged_signature_is_refused_before_a_venv_is_made(signed, tmp_path):
    """SHA256SUMS.sig is not listed in SHA256SUMS: a flipped byte in it is caught by the
    signature check, which comes before the venv and pip (exit 2, one line)."""
    bundle = tmp_path / signed.name
    shutil.copytree(signed, bundle)
    sig = bundle / "SHA256SUMS.sig"
    data = bytearray(sig.read_bytes())
    data[len(data) // 2] ^= 0x01
    sig.write_bytes(bytes(data))
    venv = tmp_path / "venv"
    done = _install(bundle, venv, _env(tmp_path / "home"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "SHA256SUMS.sig is not a signature by keys/owner.pub" in done.stderr
    assert done.stdout == "" and not venv.exists()


def test_a_signed_bundle_without_ssh_keygen_names_the_package(signed, tmp_path):
    """A PATH with what install.sh runs before the signature check, and no ssh-keygen."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("sh", "dirname", "find", "sed", "grep", "sort", "wc", "sha256sum", "python3"):
        found = shutil.which(tool)
        assert found, tool
        (bin_ / tool).symlink_to(found)
    venv = tmp_path / "venv"
    done = _install(signed, venv, {**_env(tmp_path / "home"), "PATH": str(bin_)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "sudo apt install openssh-client" in done.stderr
    assert done.stdout == "" and not venv.exists()


@pytest.mark.slow
def test_install_sh_puts_the_model_into_the_store_and_trusts_the_owner(exports, key, tmp_path):
    """A signed linux-x86 bundle, installed offline with --service: the model is
    VENV/models/NAME/VERSION and current; allowed_signers trusts the owner's key;
    ~/.local/bin/edgecnn links the venv's; the unit passes systemd-analyze; the closing
    command classifies the sample as its name says. Installed again: the same version is
    made current again. A bundle signed by another key is refused before anything runs."""
    out = tmp_path / "signed.tar.gz"
    result = invoke("bundle", exports, "--target", "linux-x86", "--python", PYTHON,
                    "--key", key, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    bundle = tmp_path / "device" / "edgecnn-linux-x86"
    manifest = json.loads((bundle / "bundle.json").read_text())
    home = tmp_path / "home"
    env = _env(home)
    elsewhere = tmp_path / "elsewhere"  # the user's EDGECNN_HOME: the store is the venv's
    venv = tmp_path / "edge venv"
    done = _install(bundle, venv, {**env, "EDGECNN_HOME": str(elsewhere)}, "--service")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not elsewhere.exists()
    model, name, version = manifest["model"], manifest["name"], manifest["version"]
    stored = venv / "models" / name / version
    assert (stored / model).read_bytes() == (bundle / "model" / model).read_bytes()
    assert (stored / f"{model}.reference.npz").is_file()
    current = venv / "models" / "current"
    assert current.is_symlink() and os.readlink(current) == f"{name}/{version}"
    allowed = (venv / "keys" / "allowed_signers").read_text()
    assert allowed == signing.allowed_signers_line(signing.public_key_text(Path(f"{key}.pub")))
    link = home / ".local" / "bin" / "edgecnn"
    assert link.is_symlink() and Path(os.readlink(link)) == venv / "bin" / "edgecnn"
    assert f"{home}/.local/bin is not on your PATH" in done.stdout
    unit = home / ".config" / "systemd" / "user" / "edgecnn-serve.service"
    assert f'ExecStart="{venv}/bin/edgecnn" serve --host 127.0.0.1 --port 8080' in unit.read_text()
    assert f'Environment="EDGECNN_HOME={venv}"' in unit.read_text()
    assert "systemctl --user enable --now edgecnn-serve" in done.stdout
    assert "reload" not in done.stdout.replace("daemon-reload", "")  # serve follows updates
    assert "loginctl enable-linger" in done.stdout
    if shutil.which("systemd-analyze"):
        analyzed = _analyze(unit)
        assert analyzed.returncode == 0, analyzed.stderr
    closing = done.stdout.rstrip().splitlines()[-3].strip()
    expected = [f"{venv}/bin/edgecnn", "predict", f"{bundle}/{manifest['sample']}"]
    assert shlex.split(closing) == expected, closing
    predicted = subprocess.run(["sh", "-c", closing + " --json"], capture_output=True,
                               text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    (answer,) = json.loads(predicted.stdout)["results"]
    assert Path(manifest["sample"]).name == f"sample-{slug(answer['label'])}.png", answer

    again = _install(bundle, venv, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        "in the store already; edgecnn verify" in again.stdout
        and "PASS" in again.stdout
        and os.readlink(current) == f"{name}/{version}"
    )

    other = tmp_path / "other-keys" / "owner"
    signing.make_key(other)
    foreign = tmp_path / "foreign"
    result = invoke("bundle", exports, "--target", "linux-x86", "--python", PYTHON,
                    "--key", other, "--out", foreign)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    refused = _install(foreign, venv, env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "signed by a key that" in refused.stderr and refused.stdout == ""
    assert (venv / "keys" / "allowed_signers").read_text() == allowed

    # As the unit runs it (EDGECNN_HOME=VENV): edgecnn update finds the key install.sh
    # trusted and switches the store the model was installed into.
    update = tmp_path / "u.edgecnn-update"
    result = invoke("bundle", exports, "--target", "linux-x86", "--model-only", "--key", key,
                    "--model", "weights.npz", "--out", update)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    applied = subprocess.run([str(venv / "bin" / "edgecnn"), "update", str(update)],
                             capture_output=True, text=True, timeout=300,
                             env={**env, "EDGECNN_HOME": str(venv)})  # fmt: skip
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert os.readlink(current) != f"{name}/{version}"
    assert os.readlink(current).startswith(f"{name}/")
