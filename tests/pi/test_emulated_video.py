"""Video files on emulated Raspberry Pi OS, installed from ``edgecnn bundle --video``.

64-bit: the bundle carries PyAV's (and Pillow's) aarch64 wheels. 32-bit: PyAV publishes
an armv7l wheel, which decodes the clip there exactly as on x86; Pillow (which resizes the
frames) has none, so the venv takes Debian's python3-pil, as it takes python3-numpy (the
emulated system has it, as Raspberry Pi OS has). On both, ``edgecnn predict MODEL
clip.mp4`` answers every frame as on x86.

Each system gets its own venv (/opt/edgecnn-video), so the bundles of
test_emulated_pi.py, installed in /opt/edgecnn, are left alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from pi_tools import run_or_fail, tail
from video_files import make_video

pytestmark = [pytest.mark.pi, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "pi_emulation.sh"
EDGECNN = [sys.executable, "-m", "edgecnn"]
VENV = "/opt/edgecnn-video"
MODEL = "model_int8.tflite"
#: The bookworm systems and the bundle each installs.
TARGETS = {"arm64": "pi64", "armhf": "pi32"}
#: As in test_emulated_pi.py: int8 kernels are not bit-identical across CPUs (XNNPACK on
#: ARM rounds some intermediate values otherwise than on x86); measured there on 1,000
#: images, at most 0.036 apart.
INT8_ATOL = 0.05
#: Test pictures shown, and the frames each is held for.
PICTURES, HOLD = 6, 5


@pytest.fixture(scope="module")
def clip(test_images, tmp_path_factory):
    """A short H.264 MP4 of real Fashion-MNIST test pictures, each held for a few frames."""
    folder = tmp_path_factory.mktemp("video")
    return make_video(folder / "clip.mp4", test_images.x[:PICTURES], hold=HOLD)


@pytest.fixture(scope="module")
def video_installed(exported, tmp_path_factory):
    """``edgecnn bundle --video`` for each bookworm system (Python 3.11 only), installed
    there by its install.sh into VENV, both systems at once; the bundle, its build log and
    the install's output."""
    run_or_fail(["bash", str(SCRIPT), "build", *TARGETS], "bash tools/pi_emulation.sh build")
    folder = tmp_path_factory.mktemp("video-bundles")
    results = {}
    for arch, target in TARGETS.items():
        bundle = folder / f"edgecnn-{target}-video.tar.gz"
        done = run_or_fail(
            [
                *EDGECNN,
                "bundle",
                str(exported.out),
                "--target",
                target,
                "--video",
                "--python",
                "3.11",
                "--model",
                MODEL,
                "--out",
                str(bundle),
            ],
            f"edgecnn bundle --target {target} --video",
        )
        results[arch] = SimpleNamespace(bundle=bundle, log=done.stdout)
    procs = {
        arch: subprocess.Popen(["bash", str(SCRIPT), "install", arch, str(r.bundle), VENV],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for arch, r in results.items()
    }  # fmt: skip
    for arch, proc in procs.items():
        results[arch].output = proc.communicate()[0]
        if proc.returncode != 0:
            pytest.fail(f"install.sh failed on {arch}:\n{tail(results[arch].output)}",
                        pytrace=False)  # fmt: skip
    return results


def _predict_emulated(arch: str, exported, clip) -> subprocess.CompletedProcess[str]:
    """``edgecnn predict MODEL clip.mp4 --jsonl`` inside the system, from VENV."""
    command = ["bash", str(SCRIPT), "run", arch, "--bind", str(exported.out), "--bind",
               str(clip.path.parent), f"{VENV}/bin/edgecnn", "predict",
               str(exported.out / MODEL), str(clip.path), "--jsonl"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True)


def _frames(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _probabilities(frame: dict) -> dict[str, float]:
    return {entry["label"]: entry["probability"] for entry in frame["top_k"]}


def _assert_classified_as_on_x86(arch: str, exported, clip) -> None:
    """``edgecnn predict MODEL clip.mp4 --jsonl`` in the system answers every frame as on
    x86, within the int8 tolerance."""
    arm = _predict_emulated(arch, exported, clip)
    assert arm.returncode == 0, tail(arm.stderr)
    host = run_or_fail(
        [*EDGECNN, "predict", str(exported.out / MODEL), str(clip.path), "--jsonl"],
        "edgecnn predict on x86",
    )
    arm_frames, host_frames = _frames(arm.stdout), _frames(host.stdout)
    assert len(arm_frames) == len(host_frames) == PICTURES * HOLD
    for a, h in zip(arm_frames, host_frames, strict=True):
        assert (a["frame"], a["time"]) == (h["frame"], h["time"])
        assert a["label"] == h["label"], (a, h)
        assert a["confidence"] == pytest.approx(h["confidence"], abs=INT8_ATOL)
        # Both top-k lists name the same classes where both are confident enough to count.
        arm_p, host_p = _probabilities(a), _probabilities(h)
        for label in arm_p.keys() & host_p.keys():
            assert arm_p[label] == pytest.approx(host_p[label], abs=INT8_ATOL), (label, a, h)
    # Real pictures, a trained model: each picture's frames agree with one another.
    labels = [f["label"] for f in host_frames]
    assert all(len(set(labels[i : i + HOLD])) == 1 for i in range(0, len(labels), HOLD)), labels


def test_the_64_bit_bundle_carries_pyav_and_classifies_a_video_as_x86(
    video_installed, exported, clip
):
    result = video_installed["arm64"]
    with tarfile.open(result.bundle) as tar:
        manifest = json.load(tar.extractfile("edgecnn-pi64/bundle.json"))
        wheels = [Path(n).name for n in tar.getnames() if "/wheels/av-" in n]
    assert manifest["video"] is True
    assert "av" in manifest["pythons"]["3.11"]["requirements"]
    assert len(wheels) == 1 and wheels[0].endswith("aarch64.whl"), wheels
    assert "PASS" in result.output and "FAIL" not in result.output
    assert "python3-av" not in result.output and "--video" not in result.output
    _assert_classified_as_on_x86("arm64", exported, clip)


#: Each decoded frame's luma plane, hashed: H.264 decoding is bit-exact by the standard,
#: so the same bytes come out on any CPU.
_DECODE = """
import hashlib, json, sys
import av
with av.open(sys.argv[1]) as container:
    planes = [bytes(f.planes[0]) for f in container.decode(video=0)]
print(json.dumps({"version": av.__version__, "frames": len(planes),
                  "sha256": hashlib.sha256(b"".join(planes)).hexdigest()}))
"""


def test_the_32_bit_bundle_carries_pyav_and_classifies_a_video_as_x86(
    video_installed, exported, clip
):
    """PyAV's armv7l wheel decodes the clip as on x86; Pillow has no armv7l wheel, so the
    venv (which sees the system's packages, as for numpy) takes Debian's python3-pil, and
    predict classifies every frame as on x86."""
    result = video_installed["armhf"]
    with tarfile.open(result.bundle) as tar:
        wheels = [Path(n).name for n in tar.getnames() if "/wheels/" in n]
        manifest = json.load(tar.extractfile("edgecnn-pi32/bundle.json"))
    assert manifest["video"] is True
    assert manifest["pythons"]["3.11"]["requirements"] == ["edgecnn", "tflite-runtime", "av"]
    assert [w for w in wheels if w.startswith("av-")][0].endswith("armv7l.whl"), wheels
    assert not [w for w in wheels if w.startswith(("pillow", "numpy"))], wheels
    assert "no pillow wheel" in result.log, result.log
    assert "PASS" in result.output and "FAIL" not in result.output
    # The system's python3-pil is there: install.sh has nothing to ask for.
    assert "python3-pil" not in result.output and "python3-av" not in result.output

    command = ["bash", str(SCRIPT), "run", "armhf", "--bind", str(clip.path.parent),
               f"{VENV}/bin/python", "-c", _DECODE, str(clip.path)]  # fmt: skip
    arm = json.loads(run_or_fail(command, "decoding the clip on armhf").stdout)
    host = json.loads(
        run_or_fail([sys.executable, "-c", _DECODE, str(clip.path)], "decoding").stdout
    )
    assert arm == host and arm["frames"] == PICTURES * HOLD, (arm, host)
    _assert_classified_as_on_x86("armhf", exported, clip)
