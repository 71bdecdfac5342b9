"""The microcontroller formats against their targets, and the C library beside LiteRT.

    python bench/mcu.py [EXPORTS_DIR]   (default: runs/latest/exports)

Needs ``c/`` and ``tflm/`` from ``edgecnn export --formats all`` (or ``edgecnn run``) and
the ``model_int8.tflite`` they were made from. All timings come from this one run, one
thread, the engines interleaved round by round so that a busy machine slows them alike:

* host latency per image: the C library (through ctypes, one call per image), LiteRT on
  XNNPACK, and LiteRT on TFLite's reference kernels (what the C code reproduces);
* RAM and flash for one inference on a Cortex-M4 (from the export's QEMU measurements),
  against the issue's targets and TFLM's arena;
* instructions per inference counted by QEMU, and the cycle estimate for 168 MHz.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecnn.runtime import load_classifier

ROUNDS = 15
IMAGES_PER_ROUND = 40
#: The issue's targets for the default network.
RAM_TARGET = 8 * 1024
FLASH_TARGET = 245 * 1024


def litert_runner(path: Path, images: np.ndarray, reference: bool) -> Callable[[], None]:
    """One image at a time through LiteRT, as an app calls it."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interpreter = Interpreter(model_path=str(path), num_threads=1,
                              experimental_op_resolver_type=resolver)  # fmt: skip
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]
    scale, zero = detail["quantization"]
    inputs = [
        np.clip(np.round(im / 255.0 / scale) + zero, -128, 127).astype(np.int8)[None, ..., None]
        for im in images
    ]

    def run() -> None:
        for x in inputs:
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            interpreter.get_tensor(out)

    return run


def interleaved(runners: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Median microseconds per image of each runner, measured round by round."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run()  # warm up
    for _ in range(ROUNDS):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / IMAGES_PER_ROUND * 1e6)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/latest/exports")
    report = json.loads((folder / "export_report.json").read_text())
    rows = {r["format"]: r for r in report["files"]}
    if "c" not in rows or not rows["c"]["passed"]:
        sys.exit(f"bench/mcu.py: no verified c/ in {folder} (edgecnn export --formats all)")
    c, tflm = rows["c"], rows.get("tflm")
    rng = np.random.default_rng(0)
    from edgecnn.trainer.idx import load_arrays

    (_, _, x_test, _), _ = load_arrays("fashion", None)
    images = x_test[rng.choice(len(x_test), IMAGES_PER_ROUND, replace=False)]
    clf = load_classifier(folder / "c", backend="c")
    int8 = folder / "model_int8.tflite"
    latency = interleaved({
        "C library (ctypes, -O3)": clf.backend.raw_runner(images),
        "LiteRT XNNPACK": litert_runner(int8, images, reference=False),
        "LiteRT reference kernels": litert_runner(int8, images, reference=True),
    })  # fmt: skip
    ours = latency["C library (ctypes, -O3)"]
    print(f"Host latency per image, 1 thread, {ROUNDS} interleaved rounds of "
          f"{IMAGES_PER_ROUND} images (median)")  # fmt: skip
    for name, us in latency.items():
        print(f"  {name:28s} {us:8.0f} us   C library / this: {ours / us:5.2f}x")
    print(f"  target: faster than the reference kernels -> "
          f"{'met' if ours < latency['LiteRT reference kernels'] else 'NOT met'}")  # fmt: skip

    mcu = c.get("mcu", {})
    print("\nCortex-M4 (arm-none-eabi-gcc -Os, QEMU mps2-an386)")
    work = c["c"]["work_bytes"]
    if "stack_bytes" in mcu:
        ram = work + mcu["stack_bytes"]
        verdict = "met" if ram <= RAM_TARGET else "NOT met"
        print(f"  RAM for one inference: {ram:,} B (work {work:,} + stack {mcu['stack_bytes']:,})"
              f"  target <= {RAM_TARGET:,}: {verdict}")  # fmt: skip
        flash = mcu["library_flash"]
        weights = c["c"]["weight_bytes"] + c["c"]["bias_bytes"]
        print(f"  library flash: {flash:,} B = weights and biases {weights:,} + code and tables "
              f"{flash - weights:,}  target <= {FLASH_TARGET:,}: "
              f"{'met' if flash <= FLASH_TARGET else 'NOT met'}")  # fmt: skip
        print(
            f"  whole check program: flash {mcu['program_flash']:,} B, static RAM "
            f"{mcu['program_ram']:,} B (newlib, semihosting, stack and test vectors included)"
        )
        low, high = mcu["ms_at_168_mhz"]
        print(
            f"  instructions per inference (QEMU -icount): {mcu['instructions']:,}; "
            f"estimate at 168 MHz: {low} to {high} ms (1.0 to 1.5 cycles per instruction)"
        )
    else:
        print(f"  not measured: {mcu.get('skipped') or mcu.get('run')}")
    if tflm:
        arena = tflm["tflm"]["arena_bytes"]
        print(
            f"  TFLite Micro: tensor arena {arena:,} B (before TFLM's own stack and code); "
            f"the C library's work buffer is {work / arena:.2f}x that"
        )
        print(
            f"  TFLM's int8 scores equal the reference kernels' on "
            f"{100 * tflm['reference_identical']:.2f}% of images, top-1 on "
            f"{100 * tflm['reference_top1']:.2f}%; the C library's: "
            f"{100 * c['reference_identical']:.2f}%"
        )


if __name__ == "__main__":
    main()
