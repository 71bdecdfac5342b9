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
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from edgecnn import __version__, _atomic
from edgecnn.export.formats import Check, FolderResult, Job, placeholder_metadata
from edgecnn.export.mcu import cgen, graph, reference, toolchain
from edgecnn.export.measure import fit_confidence, verify_file
from edgecnn.records import Fields, JSONObject
from edgecnn.runtime import Classifier, integrity, load_classifier
from edgecnn.runtime.confidence import Confidence
from edgecnn.runtime.contract import c_library_name
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
    return c_library_name(sys.platform)


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
    if job.remedy != "none":  # the int8 .tflite's, when the library can follow it
        quantization["remedy"] = job.remedy
    return placeholder_metadata(job.base, "int8", quantization)


@dataclass(frozen=True)
class CortexM4:
    """The library built for a Cortex-M4 and run under QEMU, where the tools are installed."""

    target: str = ""
    library_flash: int | None = None
    library_ram: int | None = None
    program_flash: int | None = None
    program_ram: int | None = None
    check_returncode: int | None = None
    check_output: tuple[str, ...] = ()
    stack_bytes: int | None = None
    instructions: int | None = None
    #: Milliseconds per image at 168 MHz, for 1.0 and 1.5 cycles per instruction.
    ms_at_168_mhz: tuple[float, ...] = ()
    #: Why it was not built (no arm-none-eabi-gcc), or None.
    skipped: str | None = None
    #: Why it was built but not run (no QEMU, no newlib), or None.
    not_run: str | None = None

    @property
    def failed(self) -> bool:
        """The check program ran and found scores that differ."""
        return self.check_returncode not in (None, 0)

    def to_dict(self) -> JSONObject:
        """JSON-ready form (absent measurements left out)."""
        out: JSONObject = {"target": self.target}
        for key in ("library_flash", "library_ram", "program_flash", "program_ram",
                    "check_returncode", "stack_bytes", "instructions", "skipped"):  # fmt: skip
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.check_output:
            out["check_output"] = list(self.check_output)
        if self.ms_at_168_mhz:
            out["ms_at_168_mhz"] = list(self.ms_at_168_mhz)
        if self.not_run is not None:
            out["run"] = self.not_run
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> CortexM4:
        """The measurement :meth:`to_dict` wrote."""

        def count(key: str) -> int | None:
            return None if key not in f else f.integer(key)

        return cls(
            target=f.text("target", default=""),
            library_flash=count("library_flash"), library_ram=count("library_ram"),
            program_flash=count("program_flash"), program_ram=count("program_ram"),
            check_returncode=None if "check_returncode" not in f
            else f.integer("check_returncode", least=-(2**31)),
            check_output=f.texts("check_output", default=()),
            stack_bytes=count("stack_bytes"), instructions=count("instructions"),
            ms_at_168_mhz=f.numbers("ms_at_168_mhz", default=()),
            skipped=f.optional_text("skipped"), not_run=f.optional_text("run"),
        )  # fmt: skip


@dataclass(frozen=True)
class Details:
    """What the C library proved beyond the gate, and its sizes."""

    work_bytes: int
    weight_bytes: int
    bias_bytes: int
    host_library_bytes: int
    #: Images whose int8 logits and scores equal TFLite's reference kernels', of all.
    reference_identical: float
    reference_images: int
    #: Top-1 agreement with the flatbuffer on LiteRT's default (XNNPACK) kernels.
    tflite_agreement: float
    test_vectors: int
    #: Top-1 agreement with the accepted int8 ``.tflite`` (the file users predict with:
    #: float input and output, its last layer in float unless --full-integer), through
    #: edgecnn.runtime; None in records older than this measurement.
    int8_file_agreement: float | None = None
    mcu: CortexM4 = CortexM4()
    title: str = "C99, no dependencies"

    def to_dict(self) -> JSONObject:
        """JSON-ready form: the row's ``details``."""
        return {
            "reference_identical": self.reference_identical,
            "reference_images": self.reference_images,
            "tflite_agreement": self.tflite_agreement,
            "test_vectors": self.test_vectors,
            **(
                {}
                if self.int8_file_agreement is None
                else {"int8_file_agreement": self.int8_file_agreement}
            ),
            "c": {
                "work_bytes": self.work_bytes,
                "weight_bytes": self.weight_bytes,
                "bias_bytes": self.bias_bytes,
                "host_library_bytes": self.host_library_bytes,
            },
            "mcu": self.mcu.to_dict(),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> Details:
        """The details :meth:`to_dict` wrote (a schema-1 row holds the same keys)."""
        sizes = f.object("c")
        return cls(
            work_bytes=sizes.integer("work_bytes"),
            weight_bytes=sizes.integer("weight_bytes"),
            bias_bytes=sizes.integer("bias_bytes"),
            host_library_bytes=sizes.integer("host_library_bytes"),
            reference_identical=f.number("reference_identical"),
            reference_images=f.integer("reference_images"),
            tflite_agreement=f.number("tflite_agreement"),
            test_vectors=f.integer("test_vectors", default=0),
            int8_file_agreement=f.optional_number("int8_file_agreement"),
            mcu=CortexM4.from_fields(f.object("mcu", default={})),
        )

    @property
    def ram_bytes(self) -> int:
        """RAM one inference needs: the work buffer, and the stack where it was measured."""
        return self.work_bytes + (self.mcu.stack_bytes or 0)

    def table_note(self, file: str) -> str | None:
        """What the library proved beyond the gate, for the export table."""
        line = (
            f"{file}: int8 scores bit-identical to TFLite's reference kernels on "
            f"{100 * self.reference_identical:.2f}% of {self.reference_images:,} images; work "
            f"buffer {self.work_bytes:,} B"
        )
        m = self.mcu
        if m.library_flash is not None:
            line += f"; Cortex-M4 -Os: flash {m.library_flash / 1024:.1f} KiB"
        if m.stack_bytes is not None and m.instructions is not None:
            line += (
                f", stack {m.stack_bytes:,} B, {m.instructions / 1e6:.1f}M "
                "instructions per image, test vectors equal under QEMU"
            )
        elif m.skipped or m.not_run:
            line += f" (Cortex-M4 not measured: {m.skipped or m.not_run})"
        return line

    def report_facts(self) -> list[tuple[str, str]]:
        """The report's table of what the library proved and weighs."""
        m, n = self.mcu, self.test_vectors
        facts = [
            ("int8 scores equal to TFLite's reference kernels",
             f"{100 * self.reference_identical:.2f}% of {self.reference_images:,} images"),
            ("top-1 equal to the full-integer .tflite on LiteRT (XNNPACK)",
             f"{100 * self.tflite_agreement:.2f}%"),
            *([] if self.int8_file_agreement is None else
              [("top-1 equal to model_int8.tflite (what predict runs)",
                f"{100 * self.int8_file_agreement:.2f}%")]),
            ("work buffer (RAM, caller's)", f"{self.work_bytes:,} B"),
            ("weights and biases (flash)", f"{self.weight_bytes + self.bias_bytes:,} B"),
        ]  # fmt: skip
        if m.library_flash is not None:
            facts.append(("Cortex-M4 library flash (-Os)", f"{m.library_flash:,} B"))
        if m.stack_bytes is not None and m.instructions is not None:
            facts += [
                ("stack for one inference (painted)", f"{m.stack_bytes:,} B"),
                ("instructions per inference (QEMU)", f"{m.instructions:,}"),
                ("estimate at 168 MHz (1.0 to 1.5 cycles per instruction)",
                 " to ".join(f"{ms}" for ms in m.ms_at_168_mhz) + " ms"),
                ("test vectors on the emulated Cortex-M4",
                 f"{n} of {n} equal, byte for byte" if not m.failed else "they differ"),
            ]  # fmt: skip
        elif m.skipped:
            facts.append(("Cortex-M4 build", f"not measured: {m.skipped}"))
        return facts

    def device_facts(self, size_bytes: int) -> list[str]:
        """Flash and RAM on a microcontroller, and what the library is bit-identical to."""
        flash = self.mcu.library_flash if self.mcu.library_flash is not None else size_bytes
        return [
            f"{flash / 1024:,.1f} KiB flash, {self.ram_bytes:,} B RAM",
            "scores bit-identical to TFLite's reference kernels",
        ]


def missing_requirements() -> str | None:
    """Why this machine cannot build the library: no C compiler."""
    if toolchain.host_compiler() is None:
        return "no C compiler found (install gcc, or set CC)"
    return None


#: A model the generator does not write, or a toolchain that fails: the format is skipped.
SKIP_ERRORS = (graph.UnsupportedModel, toolchain.ToolchainError)


def export(job: Job, source: Path, folder: Path, check: Check) -> FolderResult:
    """Generate, build and verify the library in ``folder``.

    Raises:
        ToolchainError: no C compiler (the caller skips the format), or code that does
            not compile cleanly (a bug).
        UnsupportedModel: the ``.tflite`` file is not a network the generator writes.
    """
    from edgecnn.export.formats import tflite  # TensorFlow: only when exporting

    data = tflite.full_integer_flatbuffer(job, source, check.memo)
    g = graph.read(data)
    library, host, sealed_size = _build_calibrated(job, data, g, folder)
    measured = verify_file(host, check.images, check.labels, check.reference, "c")
    failures: list[str] = []
    classifier = load_classifier(host, backend="c")
    backend: Any = classifier.backend  # scores and logits too
    scores = backend.scores(check.images)
    ref = reference.shared(data, library, g, check.images, check.memo)
    assert g.input.quant is not None
    inputs = reference.int8_inputs(check.images, g.input.quant.scale, g.input.quant.zero_point)
    logits = backend.logits(inputs)
    same = np.all(scores == ref.scores, axis=1) & np.all(logits == ref.logits, axis=1)
    if not same.all():
        failures.append(
            f"{int((~same).sum())} of {len(same)} images differ from TFLite's reference kernels"
        )
    failures += _calibration_failures(classifier, check.images)
    vectors, check_failures = _check_program(folder, check, scores)
    failures += check_failures
    m4 = _cortex_m4(folder)
    if m4.failed:
        failures.append("the check program failed on the emulated Cortex-M4")
    details = Details(
        work_bytes=library.work_bytes, weight_bytes=library.weight_bytes,
        bias_bytes=library.bias_bytes, host_library_bytes=sealed_size,
        reference_identical=float(np.mean(same)), reference_images=len(same),
        tflite_agreement=_tflite_agreement(
            data, inputs.reshape(len(inputs), *library.input_shape), scores
        ),
        test_vectors=vectors, mcu=m4,
        int8_file_agreement=float(np.mean(
            scores.argmax(1) == load_classifier(source).predict(check.images).argmax(1)
        )),
    )  # fmt: skip
    _atomic.write_text(folder / "README.md", readme(library, details, job.base.light_on_dark))
    size = m4.library_flash if m4.library_flash is not None else sealed_size
    return FolderResult(measured.scores, measured.backend, size, details, tuple(failures),
                        measured.latency_us)  # fmt: skip


def _build_calibrated(
    job: Job, data: bytes, g: graph.Graph, folder: Path
) -> tuple[cgen.Library, Path, int]:
    """Generate and build the library with its own temperature and "unknown" threshold.

    Fitted, like every file's, on the validation split, from the library's own int8
    logits: so it is built once at temperature 1 to measure them, then again with the
    fitted values compiled in (``EDGECNN_TEMPERATURE``, ``EDGECNN_REJECT_BELOW``) and in
    its metadata. Returns the library, the host build's path and its size.
    """
    meta = _metadata(job, g)
    built = _generate_and_build(job, data, g, folder, meta, None)
    fitted = fit_confidence(built[1], *job.validation, backend="c")
    if fitted is None:  # too few validation pictures: temperature 1, nothing rejected
        return built
    return _generate_and_build(
        job, data, g, folder, dataclasses.replace(meta, confidence=fitted), fitted
    )


def _generate_and_build(
    job: Job,
    data: bytes,
    g: graph.Graph,
    folder: Path,
    meta: ModelMetadata,
    confidence: Confidence | None,
) -> tuple[cgen.Library, Path, int]:
    library = cgen.generate(g, cgen.sha256(data), __version__, job.base.labels,
                            job.base.light_on_dark, confidence)  # fmt: skip
    for name, text in library.files.items():
        _atomic.write_text(folder / name, text)
    host, sealed_size = build_host_library(folder, meta)
    return library, host, sealed_size


#: How far the library's calibrated probabilities may lie from edgecnn.runtime's (float32
#: arithmetic on both sides, in another order).
CALIBRATED_TOLERANCE = 1e-6


def _calibration_failures(classifier: Classifier, images: np.ndarray) -> list[str]:
    """Where the library's calibrated probabilities or "unknown" answers are not the runtime's.

    ``edgecnn_answer`` (C, its temperature and threshold compiled in) against
    edgecnn.runtime's calibration of the same library's outputs, from its metadata.
    """
    ours = classifier.predict(images)
    backend: Any = classifier.backend  # the C library's own edgecnn_answer
    theirs, answers = backend.answers(images)
    failures = []
    worst = float(np.abs(ours - theirs).max())
    if worst > CALIBRATED_TOLERANCE:
        failures.append(
            f"edgecnn_answer's calibrated probabilities differ from edgecnn.runtime's by "
            f"up to {worst:.2g} (at most {CALIBRATED_TOLERANCE:g})"
        )
    # Probabilities may differ by the tolerance, so may decisions that close to the
    # threshold (the threshold is one validation picture's own top probability).
    differ = classifier.unknown(ours) != (answers == cgen.UNKNOWN)
    if classifier.reject_below is not None:
        margin = np.abs(ours.max(1) - classifier.reject_below) <= CALIBRATED_TOLERANCE
        differ &= ~margin
    if differ.any():
        differ = int(differ.sum())
        failures.append(
            f"edgecnn_answer answers unknown otherwise than edgecnn.runtime on {differ} of "
            f"{len(images)} images"
        )
    return failures


def build_host_library(
    folder: Path, meta: ModelMetadata, extra: tuple[str, ...] = ()
) -> tuple[Path, int]:
    """Compile ``folder``'s library for this machine (-O3), metadata compiled in, sealed.

    ``extra`` are further compiler flags (``-DEDGECNN_DSP_IN_C`` in the tests).

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
            ("-O3", f"-I{folder}", *extra),
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


def _check_program(folder: Path, check: Check, scores: np.ndarray) -> tuple[int, list[str]]:
    """Write check/ and run it once on this machine, as a user would on theirs.

    Returns how many test vectors it holds, and its failure if it found other scores.
    """
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
    return count, failures


def _cortex_m4(folder: Path) -> CortexM4:
    """Flash, RAM, stack and instructions on a Cortex-M4, where the tools are installed."""
    target = "Cortex-M4F (QEMU mps2-an386), arm-none-eabi-gcc -Os"
    with tempfile.TemporaryDirectory(prefix="edgecnn-m4-") as scratch:
        work = Path(scratch)
        try:
            sizes = toolchain.cortex_m4_library(folder / cgen.SOURCE, work)
        except toolchain.ToolchainError as e:
            return CortexM4(skipped=str(e))
        built = CortexM4(target, library_flash=sizes["flash"], library_ram=sizes["ram"])
        if shutil.which(toolchain.QEMU) is None:
            return replace(built, not_run=f"not run: {toolchain.QEMU} is not installed")
        elf = work / "check.elf"
        try:  # newlib missing (Debian only recommends it), QEMU failing or hanging
            program = toolchain.cortex_m4_check(folder, folder / "check", elf)
            ran = toolchain.run_on_qemu(elf)
        except toolchain.ToolchainError as e:
            return replace(built, not_run=f"not run: {e}")
        built = replace(
            built,
            program_flash=program["flash"],
            program_ram=program["ram"],
            check_returncode=int(ran["returncode"]),  # type: ignore[call-overload]
            check_output=tuple(str(ran["output"]).strip().splitlines()[-1:]),
        )
        if "stack_bytes" in ran:
            instructions = int(ran["instructions"])  # type: ignore[call-overload]
            built = replace(
                built,
                stack_bytes=int(ran["stack_bytes"]),  # type: ignore[call-overload]
                instructions=instructions,
                ms_at_168_mhz=tuple(round(instructions * cpi / M4_MHZ / 1000, 1) for cpi in M4_CPI),
            )
    return built


def readme(library: cgen.Library, details: Details, light_on_dark: bool) -> str:
    """``exports/c/README.md``: how to call it, its sizes, how to check a port."""
    h, w, c = library.input_shape
    polarity = (
        "light objects on a dark background; invert a dark-on-light picture first (255 - p)"
        if light_on_dark
        else "as the camera gives them, not inverted"
    )
    mcu = details.mcu
    flash = mcu.library_flash
    sizes = [
        f"* Work buffer (RAM): {library.work_bytes:,} bytes, passed in by the caller.",
        f"* Weights: {library.weight_bytes:,} bytes of int8 and {library.bias_bytes:,} of int32 "
        "biases, `static const` (flash).",
    ]
    if flash:
        sizes.append(
            f"* Cortex-M4 build (`arm-none-eabi-gcc -Os`): {flash:,} bytes of flash for the "
            f"library, {mcu.library_ram or 0} bytes of static RAM"
            + (f"; one inference used {mcu.stack_bytes} bytes of stack and "
               f"{mcu.instructions:,} instructions (QEMU)" if mcu.stack_bytes is not None
               and mcu.instructions is not None else "")
            + "."
        )  # fmt: skip
    return _template("c.md").substitute(
        height=h, width=w, channels=c, classes=library.classes, version=__version__,
        tflite_agreement=f"{100 * details.tflite_agreement:.2f}",
        int8_file_agreement="-" if details.int8_file_agreement is None
        else f"{100 * details.int8_file_agreement:.2f}",
        sizes="\n".join(sizes), polarity=polarity, light_on_dark=int(light_on_dark),
        test_vectors=details.test_vectors,
        **_confidence_words(library.confidence),
    )  # fmt: skip


def _confidence_words(confidence: Confidence) -> dict[str, str]:
    """The README's temperature and threshold, and where they came from."""
    if not confidence.images:  # nothing fitted: too few validation pictures
        return {"temperature": "1 (too few validation pictures to fit one)",
                "reject_below": "0: nothing is rejected, for the same reason"}  # fmt: skip
    return {
        "temperature": f"{confidence.temperature:g} fitted on {confidence.images:,} validation "
        "pictures from this library's own int8 logits",
        "reject_below": f"{confidence.reject_below or 0.0:.4f}, which keeps "
        f"{100 * confidence.acceptance:.0f}% of them",
    }


def _template(name: str) -> Template:
    """A README's text from ``templates/``, with ``$name`` for each number."""
    return Template(
        resources.files("edgecnn.export.formats").joinpath(f"templates/{name}").read_text()
    )
