"""The C library on a Cortex-M4 against Arm's CMSIS-NN, and beside LiteRT on this machine.

    python bench/mcu.py [EXPORTS_DIR | MODEL.tflite] [--cmsis-nn DIR]
    (default: runs/latest/exports)

The model is a full-integer int8 flatbuffer: an export's (``tflm/model_data.cc`` holds
it, as does a ``model_int8.tflite`` written with ``--full-integer``) or such a ``.tflite``
file given directly. Everything below comes from this one run:

* on QEMU's Cortex-M4 board (mps2-an386, ``-icount shift=0``), built by the same
  arm-none-eabi-gcc at -Os, -O2 and -O3: edgecnn's library, generated now from the file,
  and the same network on CMSIS-NN (``bench/cmsis_nn.py``). Per engine and flag:
  instructions per inference and per layer, RAM (buffers and painted stack), library
  flash at -Os, scores against TFLite's reference kernels on the test vectors; the
  ratios, the issue's targets (met or NOT met) and milliseconds estimated at 168 MHz;
* instructions on every core the toolchain knows, where it has a core table;
* host latency per image, one thread, the engines interleaved round by round so that a
  busy machine slows them alike: the C library (through ctypes, one call per image),
  LiteRT on XNNPACK, and LiteRT on TFLite's reference kernels (what the C code reproduces).

CMSIS-NN's source: ``--cmsis-nn DIR``, else ``$CMSIS_NN_DIR``, else a clone of the pinned
commit in ``~/.cache/edgecnn/cmsis-nn`` (``bench/cmsis_nn.py``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cmsis_nn
import numpy as np

from edgecnn.export.formats.c import M4_CPI, M4_MHZ, TEST_VECTORS
from edgecnn.export.mcu import cgen, graph, reference, toolchain

ROUNDS = 15
IMAGES_PER_ROUND = 40
FLAGS = ("-Os", "-O2", "-O3")
#: The issue's targets for the default network.
OS_TARGET = 8_000_000
BEST_TARGET = 7_000_000
RAM_TARGET = 8 * 1024
FLASH_TARGET = 256_000
#: Test images, the reference kernels' scores for them, their labels.
Vectors = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Measured:
    """One engine built with one flag and run once under QEMU."""

    run: cmsis_nn.Run
    buffers: int  # the work buffer or arena the caller provides

    @property
    def ram(self) -> int | None:
        """Buffers and the painted stack of one inference."""
        return None if self.run.stack_bytes is None else self.buffers + self.run.stack_bytes


# ---- the model and its test vectors ------------------------------------------------------


def load_model(path: Path) -> tuple[bytes, Path | None]:
    """The full-integer flatbuffer at ``path`` (a folder of exports or a ``.tflite`` file).

    Returns its bytes and the file whose ``.reference.npz`` may hold test images.
    """
    if path.is_file():
        return path.read_bytes(), path
    candidates = [path / "model_int8.tflite"]
    for file in candidates:
        if file.is_file():
            try:
                graph.read(file.read_bytes())
                return file.read_bytes(), file
            except graph.UnsupportedModel:
                pass
    bundle = path / "tflm" / "model_data.cc"
    if bundle.is_file():
        data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", bundle.read_text()))
        return data, path / "model_int8.tflite"
    raise SystemExit(
        f"bench/mcu.py: no full-integer int8 model in {path} (neither tflm/model_data.cc nor a "
        "full-integer model_int8.tflite); pass one, or run edgecnn export --formats all"
    )


def test_set(g: graph.Graph, beside: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """Up to TEST_VECTORS uint8 images (N, H, W, C) with their labels, and where they come from.

    The export's own test images (``<file>.reference.npz``), else Fashion-MNIST's test set
    when the model takes its shape, else random pixels.
    """
    from edgecnn.runtime.errors import ModelError
    from edgecnn.runtime.verify_reference import read_reference, reference_path

    shape = g.input.shape[1:]
    if beside is not None and reference_path(beside).is_file():
        try:
            saved = read_reference(reference_path(beside))
            images = saved["images"][:TEST_VECTORS].reshape(-1, *shape)
            labels = saved["labels"][:TEST_VECTORS]
            return images, labels, f"the export's test images ({beside.name})"
        except (ModelError, ValueError):
            pass
    if shape == (28, 28, 1):
        from edgecnn.trainer.idx import load_arrays

        (_, _, x_test, y_test), _ = load_arrays("fashion", None)
        return x_test[:TEST_VECTORS, ..., None], y_test[:TEST_VECTORS], "Fashion-MNIST test images"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (TEST_VECTORS, *shape), dtype=np.uint8)
    return images, np.zeros(TEST_VECTORS, dtype=np.int64), "random pixels"


def reference_outputs(data: bytes, g: graph.Graph, images: np.ndarray) -> dict[int, np.ndarray]:
    """TFLite's reference kernels on ``images``: every tensor the bench compares, by index."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    assert g.input.quant is not None
    inputs = reference.int8_inputs(images, g.input.quant.scale, g.input.quant.zero_point)
    tensors = tuple(dict.fromkeys([layer.result.index for layer in g.layers] + [g.output.index]))
    interpreter = Interpreter(model_content=data,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)  # fmt: skip
    values = reference.invoke_in_chunks(interpreter, inputs, tensors)
    return dict(zip(tensors, values, strict=True))


# ---- the two engines on the Cortex-M4 ----------------------------------------------------


def run_edgecnn(model_dir: Path, check_dir: Path, work: Path, optimize: str) -> cmsis_nn.Run:
    """edgecnn's check build (the export's, with the layer hooks) run under QEMU."""
    elf = work / f"edgecnn{optimize}.elf"
    toolchain.cortex_m4_check(model_dir, check_dir, elf, optimize=optimize,
                              extra=(cmsis_nn.MEASURE_LAYERS,))  # fmt: skip
    return cmsis_nn.parse_run(toolchain.run_on_qemu(elf))


def run_cmsis_nn(source: Path, folder: Path, work: Path, optimize: str) -> cmsis_nn.Run:
    """The CMSIS-NN driver and kernels built with ``optimize``, run under QEMU."""
    archive = cmsis_nn.build_library(source, work, optimize)
    elf = work / f"cmsis-nn{optimize}.elf"
    cmsis_nn.build_check(source, archive, folder, elf, optimize)
    return cmsis_nn.parse_run(toolchain.run_on_qemu(elf))


def edgecnn_flash(model_dir: Path, check_dir: Path, work: Path) -> tuple[int, int]:
    """The library's flash at -Os: its object file (what the export reports), and linked."""
    sizes = toolchain.cortex_m4_library(model_dir / cgen.SOURCE, work)
    obj = work / "edgecnn_model.o"
    map_file = cmsis_nn.link([obj], [model_dir], check_dir / "main.c",
                             work / "edgecnn-flash.elf", "-Os")  # fmt: skip
    linked, _ = cmsis_nn.linked_sizes(map_file, r"edgecnn_model\.o$")
    return sizes["flash"], linked


# ---- printing ----------------------------------------------------------------------------


def millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} M"


def ms(instructions: int) -> str:
    """Estimated milliseconds at M4_MHZ for the range of cycles per instruction M4_CPI."""
    low, high = (instructions * cpi / M4_MHZ / 1000 for cpi in M4_CPI)
    return f"{low:.0f} to {high:.0f} ms"


def print_table(results: dict[str, dict[str, Measured]], flash: dict[str, str]) -> None:
    print(f"\n{'engine':9s} {'flag':4s} {'instructions':>13s} {'at 168 MHz':>15s} "
          f"{'RAM (buffers + stack)':>26s}  library flash (-Os)")  # fmt: skip
    for engine, runs in results.items():
        for flag, m in runs.items():
            ram = "-" if m.ram is None else f"{m.ram:,} B ({m.buffers:,} + {m.run.stack_bytes:,})"
            est = "-" if m.run.instructions is None else ms(m.run.instructions)
            print(f"{engine:9s} {flag:4s} {millions(m.run.instructions):>13s} {est:>15s} "
                  f"{ram:>26s}  {flash.get(engine, '-') if flag == '-Os' else ''}")  # fmt: skip


def print_layers(g: graph.Graph, steps: list[cmsis_nn.Step],
                 results: dict[str, dict[str, Measured]]) -> None:  # fmt: skip
    """Instructions per layer: edgecnn's layers beside the CMSIS-NN steps of each."""
    print("\nPer layer, instructions (the board's timer read after each layer)")
    for flag in FLAGS:
        ours = results["edgecnn"].get(flag)
        theirs = results.get("CMSIS-NN", {}).get(flag)
        print(f"  {flag}")
        for i, layer in enumerate(g.layers):
            name = " + ".join(cmsis_nn.describe_step(s, g) for s in steps if s.layer == i)
            if layer.pool and layer.pool["activation"] != "none":
                name += " + " + layer.pool["activation"].replace("relu", "ReLU")
            mine = ours.run.layers[i] if ours and i < len(ours.run.layers) else None
            line = f"    {i} {name:44s} edgecnn {millions(mine):>8s}"
            if theirs:
                parts = [(s, _at(theirs.run.layers, k)) for k, s in enumerate(steps)
                         if s.layer == i or (i == 0 and s.layer == -1)]  # fmt: skip
                total = sum(n or 0 for _, n in parts)
                detail = " + ".join(f"{s.kind} {millions(n)}" for s, n in parts)
                line += f"   CMSIS-NN {millions(total):>8s} ({detail})"
            print(line)
        if ours and not ours.run.layers:
            print("    edgecnn: no per-layer counts (this library calls no EDGECNN_LAYER_DONE)")


def _at(values: list[int], i: int) -> int | None:
    return values[i] if i < len(values) else None


def print_scores(results: dict[str, dict[str, Measured]], g: graph.Graph) -> None:
    print("\nScores on the test vectors against TFLite's reference kernels")
    for engine, runs in results.items():
        for flag, m in runs.items():
            kept = "; ".join(
                f"layer {layer} ({_kind(g, layer)}) output: {d} of {n:,} values differ"
                + (f", by at most {w}" if d else "")
                for layer, (d, n, w) in sorted(m.run.kept.items())
            )  # fmt: skip
            print(f"  {engine:9s} {flag}: {m.run.scores_line or m.run.output.strip()[-200:]}"
                  + (f"\n{'':17s}{kept}" if kept else ""))  # fmt: skip


def _kind(g: graph.Graph, layer: int) -> str:
    w = g.layers[layer].weights
    return "dense" if w is None else f"dense {w.shape[1]} -> {w.shape[0]}"


def print_ratios(results: dict[str, dict[str, Measured]], flash: dict[str, int]) -> None:
    if "CMSIS-NN" not in results:
        return
    ours, theirs = results["edgecnn"], results["CMSIS-NN"]
    print("\nedgecnn / CMSIS-NN")
    for flag in FLAGS:
        a, b = ours[flag].run.instructions, theirs[flag].run.instructions
        if a and b:
            print(f"  instructions {flag}: {a / b:.2f}x")
    best_a, best_b = _best(ours), _best(theirs)
    if best_a and best_b:
        print(f"  instructions, each at its best flag ({best_a[0]} / {best_b[0]}): "
              f"{best_a[1] / best_b[1]:.2f}x")  # fmt: skip
    ram_a, ram_b = ours["-Os"].ram, theirs["-Os"].ram
    if ram_a and ram_b:
        print(f"  RAM at -Os: {ram_a / ram_b:.2f}x")
    if flash.get("edgecnn") and flash.get("CMSIS-NN"):
        ratio = flash["edgecnn"] / flash["CMSIS-NN"]
        print(f"  library flash at -Os (both as linked): {ratio:.2f}x")


def _best(runs: dict[str, Measured]) -> tuple[str, int] | None:
    counted = [(flag, m.run.instructions) for flag, m in runs.items() if m.run.instructions]
    return min(counted, key=lambda fm: fm[1]) if counted else None


def print_targets(ours: dict[str, Measured], object_flash: int,
                  theirs: dict[str, Measured] | None) -> None:  # fmt: skip
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nTargets (edgecnn)")
    os_count = ours["-Os"].run.instructions or 0
    cmsis_best = _best(theirs) if theirs else None
    anchor = ""
    if cmsis_best:
        anchor = f"; CMSIS-NN's best: {millions(cmsis_best[1])} at {cmsis_best[0]}"
    print(f"  -Os <= {millions(OS_TARGET)}: {millions(os_count)} -> "
          f"{verdict(0 < os_count <= OS_TARGET)}{anchor}")  # fmt: skip
    best = _best(ours)
    if best:
        print(f"  best flag <= {millions(BEST_TARGET)}: {millions(best[1])} at {best[0]} -> "
              f"{verdict(best[1] <= BEST_TARGET)}")  # fmt: skip
    rams = [m.ram for m in ours.values() if m.ram is not None]
    if rams:
        print(f"  RAM incl. stack <= {RAM_TARGET:,} B: {max(rams):,} B (the largest of the three "
              f"flags) -> {verdict(max(rams) <= RAM_TARGET)}")  # fmt: skip
    print(f"  library flash <= {FLASH_TARGET:,} B: {object_flash:,} B (-Os object file) -> "
          f"{verdict(object_flash <= FLASH_TARGET)}")  # fmt: skip
    o3 = ours["-O3"].run.instructions or 0
    print(f"  -O3 no slower than -Os: {millions(o3)} against {millions(os_count)} -> "
          f"{verdict(0 < o3 <= os_count)}")  # fmt: skip
    print(f"  Estimated time at {M4_MHZ} MHz: instructions x {M4_CPI[0]} to {M4_CPI[1]} cycles "
          "per instruction (most Cortex-M4 instructions take one cycle, loads two or one when "
          "pipelined, taken branches two to four); QEMU models no pipeline, wait states or "
          "caches")  # fmt: skip


def print_cores(model_dir: Path, work: Path) -> None:
    """edgecnn's check program on every core the toolchain knows, at -Os."""
    cores = getattr(toolchain, "CORES", None)
    if not cores:
        print("\nOther cores: skipped (this edgecnn's toolchain has no core table yet)")
        return
    print("\nedgecnn on each core (-Os, the export's check program; QEMU -icount)")
    check_dir = model_dir / "check"
    for core in cores.values():
        elf = work / f"core-{core.key}.elf"
        try:
            toolchain.build_check(core, model_dir, check_dir, elf, "-Os")
            ran = toolchain.run_check(core, elf)
        except toolchain.ToolchainError as e:
            print(f"  {core.name:12s} {core.machine:11s} not measured: {e}")
            continue
        ok = "scores equal" if ran["returncode"] == 0 else "SCORES DIFFER"
        stack = ran.get("stack_bytes")
        print(f"  {core.name:12s} {core.machine:11s} {millions(ran.get('instructions')):>9s}"  # type: ignore[arg-type]
              f"  stack {stack if stack is not None else '-'} B  {'DSP' if core.dsp else 'no DSP'}"
              f"  {ok}")  # fmt: skip


# ---- the host --------------------------------------------------------------------------


def litert_runner(data: bytes, images: np.ndarray, reference: bool) -> Callable[[], object]:
    """One image at a time through LiteRT, as an app calls it."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interpreter = Interpreter(model_content=data, num_threads=1,
                              experimental_op_resolver_type=resolver)  # fmt: skip
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]
    scale, zero = detail["quantization"]
    inputs = [
        np.clip(np.round(im / 255.0 / scale) + zero, -128, 127).astype(np.int8)[None, ...]
        for im in images
    ]

    def run() -> None:
        for x in inputs:
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            interpreter.get_tensor(out)

    return run


def interleaved(runners: dict[str, Callable[[], object]]) -> dict[str, float]:
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


def host_latency(data: bytes, model_dir: Path, images: np.ndarray, work: Path) -> None:
    from edgecnn.runtime.backends.c import CBackend

    library = toolchain.build_shared([model_dir / cgen.SOURCE], work / "libedgecnn_model.so",
                                     ("-O3", f"-I{model_dir}"))  # fmt: skip
    rng = np.random.default_rng(0)
    batch = images[rng.choice(len(images), IMAGES_PER_ROUND)]
    latency = interleaved({
        "C library (ctypes, -O3)": CBackend(library).raw_runner(batch),
        "LiteRT XNNPACK": litert_runner(data, batch, reference=False),
        "LiteRT reference kernels": litert_runner(data, batch, reference=True),
    })  # fmt: skip
    ours = latency["C library (ctypes, -O3)"]
    print(f"\nHost latency per image, 1 thread, {ROUNDS} interleaved rounds of "
          f"{IMAGES_PER_ROUND} images (median)")  # fmt: skip
    for name, us in latency.items():
        print(f"  {name:28s} {us:8.0f} us   C library / this: {ours / us:5.2f}x")
    print(f"  target: faster than the reference kernels -> "
          f"{'met' if ours < latency['LiteRT reference kernels'] else 'NOT met'}")  # fmt: skip


# ---- the run ---------------------------------------------------------------------------


@dataclass
class Engine:
    """One engine's runs at each flag and its library flash at -Os."""

    runs: dict[str, Measured]
    linked_flash: int  # as linked into the check program (--gc-sections)
    flash_text: str


def measure_edgecnn(g: graph.Graph, data: bytes, work: Path, vectors: Vectors
                    ) -> tuple[Engine, int, Path]:  # fmt: skip
    """edgecnn's library, generated now from ``data``, at each flag.

    Returns the engine, the flash of its -Os object file and the library's folder.
    """
    model_dir, check_dir = work / "c", work / "c" / "bench"
    check_dir.mkdir(parents=True)
    classes = int(np.prod(g.output.shape[1:]))
    library = cgen.generate(g, cgen.sha256(data), "bench", tuple(map(str, range(classes))), False)
    for name, text in library.files.items():
        (model_dir / name).write_text(text)
    (check_dir / "vectors.h").write_text(cmsis_nn.test_vectors(*vectors))
    (check_dir / "main.c").write_text(cmsis_nn.check_program("edgecnn"))
    _standard_check(model_dir, *vectors)
    runs = {flag: Measured(run_edgecnn(model_dir, check_dir, work, flag), library.work_bytes)
            for flag in FLAGS}  # fmt: skip
    object_flash, linked = edgecnn_flash(model_dir, check_dir, work)
    text = f"{object_flash:,} B object ({linked:,} B linked)"
    return Engine(runs, linked, text), object_flash, model_dir


def measure_cmsis_nn(g: graph.Graph, data: bytes, source: Path, work: Path,
                     vectors: Vectors, ref: dict[int, np.ndarray],
                     driver: cmsis_nn.Driver) -> Engine:  # fmt: skip
    """The same network on CMSIS-NN at each flag, and its flash at -Os."""
    folder = work / "cmsis-nn"
    folder.mkdir()
    for name, text in driver.files.items():
        (folder / name).write_text(text)
    kept = {layer: ref[g.layers[layer].result.index] for layer, _, _ in driver.kept}
    (folder / "vectors.h").write_text(cmsis_nn.test_vectors(*vectors, kept))
    (folder / "main.c").write_text(cmsis_nn.check_program("cmsis-nn", driver.kept))
    runs = {flag: Measured(run_cmsis_nn(source, folder, work, flag), driver.arena_bytes)
            for flag in FLAGS}  # fmt: skip
    flash_map = cmsis_nn.build_check(source, work / "libcmsis-nn-Os.a", folder,
                                     work / "cmsis-nn-flash.elf", "-Os", hooks=False)  # fmt: skip
    kernels, _ = cmsis_nn.linked_sizes(flash_map, r"libcmsis-nn")
    own, _ = cmsis_nn.linked_sizes(flash_map, rf"{cmsis_nn.DRIVER}\.o$")
    text = (f"{kernels + own:,} B linked: kernels {kernels:,} + driver (weights, constants, "
            f"calls) {own:,}")  # fmt: skip
    return Engine(runs, kernels + own, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="runs/latest/exports",
                        help="a folder of exports, or a full-integer .tflite file")  # fmt: skip
    parser.add_argument("--cmsis-nn", metavar="DIR",
                        help="a CMSIS-NN checkout (default: $CMSIS_NN_DIR, else a clone of "
                        "the pinned commit in ~/.cache/edgecnn/cmsis-nn)")  # fmt: skip
    args = parser.parse_args()
    for tool in (toolchain.ARM_GCC, toolchain.QEMU):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/mcu.py: {tool} is not installed")
    data, beside = load_model(Path(args.model))
    try:
        g = graph.read(data)
    except graph.UnsupportedModel as e:
        raise SystemExit(f"bench/mcu.py: {args.model}: {e}") from None
    images, labels, origin = test_set(g, beside)
    ref = reference_outputs(data, g, images)
    vectors = (images, ref[g.output.index], labels)
    print(f"model: {args.model} (SHA-256 {cgen.sha256(data)[:12]}), "
          f"{len(g.layers)} layers; {len(images)} test vectors: {origin}")  # fmt: skip
    try:
        source: Path | None = cmsis_nn.source_dir(args.cmsis_nn)
        print(f"CMSIS-NN: {source}")
    except cmsis_nn.SourceMissing as e:
        source = None
        print(f"CMSIS-NN: not measured ({e})")
    driver = cmsis_nn.driver(g, cgen.sha256(data))
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-mcu-") as scratch:
        work = Path(scratch)
        try:
            ours, object_flash, model_dir = measure_edgecnn(g, data, work, vectors)
            engines = {"edgecnn": ours}
            if source is not None:
                engines["CMSIS-NN"] = measure_cmsis_nn(g, data, source, work, vectors, ref, driver)
        except toolchain.ToolchainError as e:
            raise SystemExit(f"bench/mcu.py: {e}") from None
        results = {name: engine.runs for name, engine in engines.items()}
        print(f"\nCortex-M4F, QEMU mps2-an386 -icount shift=0, {_gcc_version()}, hard float; "
              "one inference of test image 0")  # fmt: skip
        print_table(results, {name: engine.flash_text for name, engine in engines.items()})
        print_layers(g, driver.steps, results)
        print_scores(results, g)
        print_ratios(results, {name: engine.linked_flash for name, engine in engines.items()})
        print_targets(results["edgecnn"], object_flash, results.get("CMSIS-NN"))
        print_cores(model_dir, work)
        host_latency(data, model_dir, images, work)


def _standard_check(model_dir: Path, images: np.ndarray, scores: np.ndarray,
                    labels: np.ndarray) -> None:  # fmt: skip
    """``check/`` as the export writes it, for the other cores."""
    folder = model_dir / "check"
    folder.mkdir(exist_ok=True)
    (folder / "main.c").write_text(cgen.CHECK_PROGRAM)
    (folder / "test_vectors.h").write_text(cgen.test_vectors(images, scores, labels))


def _gcc_version() -> str:
    out = toolchain.run([toolchain.ARM_GCC, "--version"], "arm-none-eabi-gcc --version")
    return "arm-none-eabi-gcc " + out.splitlines()[0].split()[-2]


if __name__ == "__main__":
    main()
