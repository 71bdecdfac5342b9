"""Peak memory and time to turn the worst pictures under the pixel limit into a model input.

Each picture is decoded in a fresh process by ``edgecnn.runtime.images.load_image``; the
growth of that process's peak RSS (VmHWM) over its state just before the call is what
one decode costs. A server's decoding memory is at most its ``--threads`` times the
largest figure here.

    python bench/decode.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.runtime.images import MAX_PIXELS

CHILD = """
import sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from edgecnn.runtime import InputError
from edgecnn.runtime.images import load_image
data = open(sys.argv[1], "rb").read()
load_image(open(sys.argv[2], "rb").read())  # decoders imported and warmed up
before = hwm()
start = time.perf_counter()
try:
    load_image(data)
    outcome = "decoded"
except InputError as e:
    outcome = "refused"
print(hwm() - before, time.perf_counter() - start, outcome)
"""


def pictures(folder: Path) -> dict[str, Path]:
    """The worst cases: widest modes at the limit, a JPEG the decoder scales, a bomb."""
    side = int(MAX_PIXELS**0.5)
    made = {}

    def save(name: str, image: Image.Image, **kw: object) -> None:
        made[name] = folder / name
        image.save(made[name], **kw)

    ramp = np.tile(np.arange(side, dtype=np.uint32) * 16 % 65536, (side, 1)).astype(np.uint16)
    save(f"{side}x{side} 16-bit grey.png", Image.fromarray(ramp))
    save(f"{side}x{side} RGBA.png", Image.new("RGBA", (side, side), (40, 90, 200, 128)))
    save(f"{side}x{side} RGB.png", Image.new("RGB", (side, side), (40, 90, 200)))
    gradient = Image.linear_gradient("L").resize((10000, 8000)).convert("RGB")
    save("10000x8000 JPEG (80 MP).jpg", gradient, quality=85)
    save("7000x7000 16-bit grey.png (over the limit)", Image.fromarray(
        np.zeros((7000, 7000), np.uint16)), format="PNG")  # fmt: skip
    save("small.png", Image.new("L", (28, 28)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Write the pictures here instead of a temp dir.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        made = pictures(folder)
        small = made.pop("small.png")
        print(f"limit: {MAX_PIXELS:,} decoded pixels; one decode per fresh process")
        print(f"{'picture':45s} {'file':>9s} {'peak RSS growth':>16s} {'time':>8s}  outcome")
        for name, path in made.items():
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(small)],
                capture_output=True,
                text=True,
                check=True,
            )
            grown, seconds, outcome = done.stdout.split()
            print(
                f"{name:45s} {path.stat().st_size / 1024:7.0f}KB {float(grown):13.0f} MB "
                f"{1000 * float(seconds):6.0f}ms  {outcome}"
            )


if __name__ == "__main__":
    main()
