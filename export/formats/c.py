"""The int8 network -> ``exports/c/``: a dependency-free C99 library.

Generated from the full-integer int8 flatbuffer (:func:`~edgecnn.export.formats.tflite.\
full_integer_flatbuffer`: the model and calibration of ``model_int8.tflite``, every
operator in int8), the same bytes as the TFLite Micro bundle's ``model_data.cc``.

The folder holds what a firmware project needs, ``edgecnn_model.h`` and
``edgecnn_model.c``, plus ``check/`` (``main.c`` and ``test_vectors.h``: a program that
confirms a port on the device), ``README.md``, and this machine's build of the library
(``libedgecnn_model.so``, with the model's metadata compiled in) that ``edgecnn.runtime``
runs. The folder is kept only if that build

* passes the int8 gate against Keras through ``edgecnn.runtime``, like every file;
* gives, on every image, int8 logits and scores bit-identical to TFLite's reference
  kernels running the flatbuffer it was generated from;
* and, where ``arm-none-eabi-gcc`` and ``qemu-system-arm`` are installed, gives the same
  scores on an emulated Cortex-M4 for the test vectors (its flash, RAM, stack and
  instruction count are measured on the way).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from edgecnn import __version__, _atomic
from edgecnn.export.formats import Check, Job, placeholder_metadata
from edgecnn.export.mcu import cgen, graph, reference, toolchain
from edgecnn.export.measure import verify_file
from edgecnn.runtime import integrity, load_classifier
from edgecnn.runtime.metadata import ModelMetadata

#: Test images in check/test_vectors.h (each costs its pixels in flash).
TEST_VECTORS = 32
#: Cortex-M4 clock for the cycle estimate: STM32F4's usual 168 MHz.
M4_MHZ = 168
#: Cycles per instruction assumed for the estimate: most Cortex-M4 instructions take one
#: cycle, loads two (one when pipelined), taken branches two to four.
M4_CPI = (1.0, 1.5)


def library_name() -> str:
    """This platform's name for the host library."""
    suffix = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")
    return f"libedgecnn_model{suffix}"


def _metadata(job: Job, g: graph.Graph) -> ModelMetadata:
    ends = {"input": g.input, "output": g.output}
    io = {}
    for name, tensor in ends.items():
        assert tensor.quant is not None
        io[name] = {"dtype": "int8", "scale": tensor.quant.scale,
                    "zero_point": tensor.quant.zero_point}  # fmt: skip
    quantization = {
        "scheme": "full integer int8, per-channel weights; C code of TFLite's reference kernels",
        **io,
        "calibration": job.calibration_summary("minmax (TFLite converter)"),
    }
    return placeholder_metadata(job.base, "int8", quantization)


def export(job: Job, source: Path, folder: Path, check: Check) -> dict[str, Any]:
    """Generate, build and verify the library in ``folder``; the report row's numbers.

    Raises:
        ToolchainError: no C compiler (the caller skips the format), or code that does
            not compile cleanly (a bug).
        UnsupportedModel: the ``.tflite`` file is not a network the generator writes.
    """
    from edgecnn.export.formats import tflite  # TensorFlow: only when exporting

    data = tflite.full_integer_flatbuffer(job, source, check.memo)
    g = graph.read(data)
    library = cgen.generate(g, cgen.sha256(data), __version__, job.base.labels,
                            job.base.light_on_dark)  # fmt: skip
    for name, text in library.files.items():
        _atomic.write_text(folder / name, text)
    host, sealed_size = build_host_library(folder, _metadata(job, g))
    row: dict[str, Any] = verify_file(host, check.images, check.labels, check.reference, "c")[0]
    failures: list[str] = []
    backend: Any = load_classifier(host, backend="c").backend  # scores and logits too
    scores = backend.scores(check.images)
    ref = reference.shared(data, library, g, check.images, check.memo)
    inputs = reference.int8_inputs(check.images, g.input.quant.scale, g.input.quant.zero_point)  # type: ignore[union-attr]
    logits = backend.logits(inputs)
    same = np.all(scores == ref.scores, axis=1) & np.all(logits == ref.logits, axis=1)
    row["reference_identical"] = float(np.mean(same))
    row["reference_images"] = len(same)
    if not same.all():
        failures.append(
            f"{int((~same).sum())} of {len(same)} images differ from TFLite's reference kernels"
        )
    row["tflite_agreement"] = _tflite_agreement(
        data, inputs.reshape(len(inputs), *library.input_shape), scores
    )
    row.update(_check_program(folder, check, scores))
    failures += row.pop("check_failures")
    row["c"] = {
        "work_bytes": library.work_bytes,
        "weight_bytes": library.weight_bytes,
        "bias_bytes": library.bias_bytes,
        "host_library_bytes": sealed_size,
    }
    row["mcu"] = _cortex_m4(folder)
    if row["mcu"].get("check_returncode", 0) != 0:
        failures.append("the check program failed on the emulated Cortex-M4")
    _atomic.write_text(folder / "README.md", readme(library, row, job.base.light_on_dark))
    row["size_bytes"] = row["mcu"].get("library_flash", sealed_size)
    row["failures_extra"] = failures
    return row


def build_host_library(folder: Path, meta: ModelMetadata) -> tuple[Path, int]:
    """Compile ``folder``'s library for this machine (-O3), metadata compiled in, sealed.

    Writes ``libedgecnn_model.so`` (``.dylib``, ``.dll``) and its sidecar into ``folder``;
    returns the library's path and size.

    Raises:
        ToolchainError: no C compiler, or the code does not compile without warnings.
    """
    meta = dataclasses.replace(meta, integrity={"content_sha256": integrity.PLACEHOLDER})
    with tempfile.TemporaryDirectory(prefix="edgecnn-c-") as scratch:
        build = Path(scratch)
        (build / "edgecnn_metadata.c").write_text(cgen.metadata_source(meta.to_json()))
        built = toolchain.build_shared(
            [folder / cgen.SOURCE, build / "edgecnn_metadata.c"], build / library_name(),
            ("-O3", f"-I{folder}"),
        )  # fmt: skip
        sealed_bytes = integrity.seal(built.read_bytes())
    digest = integrity.content_digest(sealed_bytes) or ""
    meta = dataclasses.replace(meta, integrity={"content_sha256": digest})
    host = folder / library_name()
    _atomic.write_synced(host, sealed_bytes)
    record = {"name": host.name, "size_bytes": len(sealed_bytes),
              "sha256": cgen.sha256(sealed_bytes)}  # fmt: skip
    _atomic.write_json(host.with_name(host.name + ".json"), {**meta.to_dict(), "file": record})
    return host, len(sealed_bytes)


def _tflite_agreement(data: bytes, inputs: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 agreement with the flatbuffer on LiteRT's default (XNNPACK) kernels."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    output = interpreter.get_output_details()[0]["index"]
    (theirs,) = reference.invoke_in_chunks(interpreter, inputs, (output,))
    return float(np.mean(scores.argmax(1) == theirs.argmax(1)))


def _check_program(folder: Path, check: Check, scores: np.ndarray) -> dict[str, Any]:
    """Write check/ and run it once on this machine, as a user would on theirs."""
    count = min(TEST_VECTORS, len(check.labels))
    check_dir = folder / "check"
    check_dir.mkdir(exist_ok=True)
    vectors = cgen.test_vectors(check.images[:count], scores[:count], check.labels[:count])
    _atomic.write_text(check_dir / "test_vectors.h", vectors)
    _atomic.write_text(check_dir / "main.c", cgen.CHECK_PROGRAM)
    failures = []
    cc = toolchain.host_compiler()
    assert cc is not None  # the host library was just built with it
    with tempfile.TemporaryDirectory(prefix="edgecnn-check-") as scratch:
        program = Path(scratch) / "check"
        toolchain.run([cc, *toolchain.WARNINGS, "-O2", f"-I{folder}", str(folder / cgen.SOURCE),
                       str(check_dir / "main.c"), "-o", str(program)],
                      "compiling check/main.c")  # fmt: skip
        try:
            toolchain.run([str(program)], "running check/main.c")
        except toolchain.ToolchainError:
            failures.append("check/main.c found scores that differ on this machine")
    return {"test_vectors": count, "check_failures": failures}


def _cortex_m4(folder: Path) -> dict[str, Any]:
    """Flash, RAM, stack and instructions on a Cortex-M4, where the tools are installed."""
    result: dict[str, Any] = {"target": "Cortex-M4F (QEMU mps2-an386), arm-none-eabi-gcc -Os"}
    with tempfile.TemporaryDirectory(prefix="edgecnn-m4-") as scratch:
        work = Path(scratch)
        try:
            sizes = toolchain.cortex_m4_library(folder / cgen.SOURCE, work)
        except toolchain.ToolchainError as e:
            return {"skipped": str(e)}
        result.update(library_flash=sizes["flash"], library_ram=sizes["ram"])
        if shutil.which(toolchain.QEMU) is None:
            result["run"] = f"not run: {toolchain.QEMU} is not installed"
            return result
        elf = work / "check.elf"
        try:  # newlib missing (Debian only recommends it), QEMU failing or hanging
            program = toolchain.cortex_m4_check(folder, folder / "check", elf)
            ran = toolchain.run_on_qemu(elf)
        except toolchain.ToolchainError as e:
            result["run"] = f"not run: {e}"
            return result
        result.update(
            program_flash=program["flash"],
            program_ram=program["ram"],
            check_returncode=ran["returncode"],
            check_output=str(ran["output"]).strip().splitlines()[-1:],
        )
        if "stack_bytes" in ran:
            instructions = int(ran["instructions"])  # type: ignore[call-overload]
            result.update(stack_bytes=ran["stack_bytes"], instructions=instructions)
            result["ms_at_168_mhz"] = [round(instructions * cpi / M4_MHZ / 1000, 1)
                                       for cpi in M4_CPI]  # fmt: skip
    return result


def readme(library: cgen.Library, row: dict[str, Any], light_on_dark: bool) -> str:
    """``exports/c/README.md``: how to call it, its sizes, how to check a port."""
    h, w, c = library.input_shape
    polarity = (
        "light objects on a dark background; invert a dark-on-light picture first (255 - p)"
        if light_on_dark
        else "as the camera gives them, not inverted"
    )
    mcu = row.get("mcu", {})
    flash = mcu.get("library_flash")
    sizes = [
        f"* Work buffer (RAM): {library.work_bytes:,} bytes, passed in by the caller.",
        f"* Weights: {library.weight_bytes:,} bytes of int8 and {library.bias_bytes:,} of int32 "
        "biases, `static const` (flash).",
    ]
    if flash:
        sizes.append(
            f"* Cortex-M4 build (`arm-none-eabi-gcc -Os`): {flash:,} bytes of flash for the "
            f"library, {mcu.get('library_ram', 0)} bytes of static RAM"
            + (f"; one inference used {mcu['stack_bytes']} bytes of stack and "
               f"{mcu['instructions']:,} instructions (QEMU)" if "stack_bytes" in mcu else "")
            + "."
        )  # fmt: skip
    return _template("c.md").substitute(
        height=h, width=w, channels=c, classes=library.classes, version=__version__,
        tflite_agreement=f"{100 * row.get('tflite_agreement', 0):.2f}",
        sizes="\n".join(sizes), polarity=polarity, light_on_dark=int(light_on_dark),
        test_vectors=row.get("test_vectors", 0),
    )  # fmt: skip


def _template(name: str) -> Template:
    """A README's text from ``templates/``, with ``$name`` for each number."""
    return Template(
        resources.files("edgecnn.export.formats").joinpath(f"templates/{name}").read_text()
    )
