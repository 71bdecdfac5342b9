"""Compilers: the system C compiler for the host library, GCC for Arm for Cortex-M.

Every compile treats a warning as an error (``-Wall -Wextra -Werror -pedantic``, C99):
generated code that warns is a bug of the generator, caught before a user sees it.
QEMU's Cortex-M boards run what GCC built (:data:`CORES`, :func:`build_check`,
:func:`run_check`, :func:`classify_on`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError

#: What every compile of the generated C gets.
WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
ARM_GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"


class ToolchainError(EdgecnnError):
    """A compiler is missing, or the generated code does not compile (exit code 2)."""

    exit_code = 2


def host_compiler() -> str | None:
    """The system C compiler: ``$CC``, else ``cc``, ``gcc`` or ``clang``; None if none."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def arm_compiler() -> str | None:
    """``arm-none-eabi-gcc`` (Debian's gcc-arm-none-eabi), or None."""
    return ARM_GCC if shutil.which(ARM_GCC) else None


def run(command: list[str], what: str, cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a compiler (or a tool); its output, or a :class:`ToolchainError` with its errors.

    Raises:
        ToolchainError: it failed; the message quotes its first error line.
    """
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except OSError as e:
        raise ToolchainError(f"{what}: cannot run {command[0]} ({e.strerror})") from None
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what}: {command[0]} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        # The linker's own words ("region `FLASH' overflowed by ...") before collect2's.
        telling = [line for line in lines if "error" in line or "overflowed" in line]
        telling.sort(key=lambda line: "collect2" in line)
        first = re.sub(r"^\S*/ld: ", "ld: ", (telling or lines or [""])[0].strip())
        raise ToolchainError(f"{what} failed: {first[:300]}")
    return done.stdout


def build_shared(sources: list[Path], out: Path, extra: tuple[str, ...] = ()) -> Path:
    """Compile ``sources`` into the shared library ``out`` with the system compiler.

    Raises:
        ToolchainError: no compiler, or the code does not compile without warnings.
    """
    cc = host_compiler()
    if cc is None:
        raise ToolchainError("no C compiler found (install gcc, or set CC)")
    command = [cc, *WARNINGS, "-O2", "-fPIC", "-shared", *extra, "-o", str(out)]
    run(command + [str(s) for s in sources], f"compiling {sources[0].name}")
    return out


# ---- Cortex-M cores on QEMU's boards --------------------------------------------------------


@dataclass(frozen=True)
class Board:
    """A QEMU machine: where its flash and RAM are, and the counter ``measure.h`` reads."""

    flash: tuple[int, int]  # origin, bytes
    ram: tuple[int, int]
    timer_hz: int  # under -icount shift=0 an instruction takes 1 ns: 1e9 / timer_hz a tick
    defines: tuple[str, ...] = ()  # measure.h's settings: the counter's address, paint depth
    specs: tuple[str, ...] = ()  # GCC specs before rdimon's: newlib-nano where flash is scarce


_MPS2 = Board((0x00000000, 4 << 20), (0x20000000, 4 << 20), 25_000_000)
#: QEMU's boards by ``-M`` name (hw/arm/mps2.c, mps2-tz.c, microbit.c). mps2-an505 is an
#: SSE-200 with TrustZone whose core starts secure with its vector table at 0x10000000: the
#: program lives in the secure aliases (SSRAM1 for code, SSRAM2&3 for data, the timer at
#: 0x50000000). The micro:bit is an nRF51822, its flash and RAM as small as below.
BOARDS = {
    "mps2-an385": _MPS2,
    "mps2-an386": _MPS2,
    "mps2-an500": _MPS2,
    "mps2-an505": Board((0x10000000, 4 << 20), (0x38000000, 4 << 20), 20_000_000,
                        ("-DMEASURE_CMSDK_TIMER=0x50000000u",)),
    "microbit": Board((0x00000000, 256 << 10), (0x20000000, 16 << 10), 16_000_000,
                      ("-DMEASURE_NRF51_TIMER=0x40008000u", "-DMEASURE_DEPTH=4096u"),
                      ("--specs=nano.specs",)),
}  # fmt: skip


@dataclass(frozen=True)
class Core:
    """A Cortex-M core, the GCC flags that target it and the QEMU board that emulates it."""

    key: str
    name: str
    machine: str  # qemu-system-arm -M
    flags: tuple[str, ...]  # -mcpu, -mthumb and the float ABI
    dsp: bool  # the flags define __ARM_FEATURE_DSP (SMLAD and friends)


#: The cores edgecnn's C is checked on, by key.
CORES = {
    core.key: core
    for core in (
        Core("m0", "Cortex-M0", "microbit",
             ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"), dsp=False),
        Core("m3", "Cortex-M3", "mps2-an385",
             ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"), dsp=False),
        Core("m4", "Cortex-M4F", "mps2-an386",
             ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), dsp=True),
        Core("m7", "Cortex-M7F", "mps2-an500",
             ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"), dsp=True),
        Core("m33", "Cortex-M33F", "mps2-an505",
             ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"), dsp=True),
    )
}  # fmt: skip
#: Cortex-M4 with its single-precision FPU, as QEMU's mps2-an386 board emulates.
CORTEX_M4 = CORES["m4"].flags


def board_dir() -> Path:
    """The board support shipped with edgecnn (startup, linker script, hooks, classify.c)."""
    from importlib import resources

    return Path(str(resources.files("edgecnn.export.mcu").joinpath("board")))


def _sizes(elf_or_object: Path) -> dict[str, int]:
    """``arm-none-eabi-size``'s text, data and bss of a file."""
    out = run(["arm-none-eabi-size", "--format=berkeley", str(elf_or_object)], "measuring sizes")
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def _need_gcc() -> None:
    if arm_compiler() is None:
        raise ToolchainError(f"{ARM_GCC} is not installed (Debian: gcc-arm-none-eabi)")


def build_library(
    core: Core, source: Path, work: Path, optimize: str = "-Os", extra: tuple[str, ...] = ()
) -> dict[str, int]:
    """Compile the library alone for ``core`` into ``work/edgecnn_model.o``; its sizes.

    ``optimize`` is the optimization flag (-Os by default), ``extra`` further flags
    (``-DEDGECNN_PORTABLE``, say).

    Raises:
        ToolchainError: no arm-none-eabi-gcc, or the code does not compile cleanly.
    """
    _need_gcc()
    obj = work / "edgecnn_model.o"
    run([ARM_GCC, *WARNINGS, *core.flags, optimize, *extra, "-ffunction-sections",
         "-fdata-sections", "-c", str(source), "-o", str(obj)],
        f"compiling the library for {core.name}")  # fmt: skip
    return _sizes(obj)


def _link(
    core: Core, sources: list[Path], elf: Path, optimize: str, extra: tuple[str, ...]
) -> dict[str, int]:
    """Build a program for ``core``'s board with the board support (semihosting); its sizes."""
    _need_gcc()
    board, folder = BOARDS[core.machine], board_dir()
    memory = [f"-Wl,--defsym=__{name}_{part}={value:#x}"
              for name, region in (("flash", board.flash), ("ram", board.ram))
              for part, value in zip(("origin", "length"), region, strict=True)]  # fmt: skip
    run([ARM_GCC, *WARNINGS, *core.flags, optimize, *board.defines, *extra,
         "-ffunction-sections", "-fdata-sections", *board.specs, "--specs=rdimon.specs",
         "-include", str(folder / "measure.h"), "-T", str(folder / "link.ld"), *memory,
         "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}",
         str(folder / "startup.c"), *[str(s) for s in sources], "-o", str(elf)],
        f"linking {sources[-1].name} for {core.name}")  # fmt: skip
    return _sizes(elf)


def build_check(
    core: Core, model_dir: Path, check_dir: Path, elf: Path, optimize: str = "-Os",
    extra: tuple[str, ...] = (),
) -> dict[str, int]:  # fmt: skip
    """Link the check program (``check_dir/main.c``) for ``core``'s QEMU board; its sizes.

    ``optimize`` and ``extra`` as for :func:`build_library`; with
    ``-DEDGECNN_MEASURE_LAYERS`` in ``extra`` the program also times each layer.

    Raises:
        ToolchainError: no arm-none-eabi-gcc (with newlib), it fails to compile, or the
            program does not fit the board's flash or RAM.
    """
    return _link(core, [model_dir / "edgecnn_model.c", check_dir / "main.c"], elf, optimize,
                 (f"-I{model_dir}", *extra))  # fmt: skip


def _qemu(
    core: Core, elf: Path, timeout: float, icount: bool, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``elf`` on ``core``'s board until it exits (semihosting); QEMU's process."""
    if shutil.which(QEMU) is None:
        raise ToolchainError(f"{QEMU} is not installed (Debian: qemu-system-arm)")
    command = [QEMU, "-M", core.machine, "-nographic", "-monitor", "none",
               "-semihosting-config", "enable=on,target=native",
               *(("-icount", "shift=0") if icount else ()), "-kernel", str(elf)]  # fmt: skip
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"the program did not finish within {timeout:.0f} s") from None


def run_check(core: Core, elf: Path, timeout: float = 600) -> dict[str, object]:
    """Run the check program on ``core``'s emulated board; what it printed and measured.

    Returns ``returncode`` and ``output``, and from the measurement hooks ``stack_bytes``,
    ``instructions`` (one inference, QEMU ``-icount shift=0``) and, when the program was
    built with ``-DEDGECNN_MEASURE_LAYERS``, ``layer_instructions`` (one per layer).

    Raises:
        ToolchainError: qemu-system-arm is missing, fails, or the program never ends.
    """
    done = _qemu(core, elf, timeout, icount=True)
    hz = BOARDS[core.machine].timer_hz
    # QEMU's own errors and the fault handler's line (SYS_WRITE0) come on stderr.
    result: dict[str, object] = {"returncode": done.returncode, "output": done.stdout + done.stderr}
    layers = [0]
    for line in done.stdout.splitlines():
        words = line.split()
        if line.startswith("edgecnn measure:"):
            result["stack_bytes"] = int(words[3])
            result["instructions"] = round(int(words[6]) * 1e9 / hz)
        elif line.startswith("edgecnn layer:"):
            layers.append(round(int(words[5]) * 1e9 / hz))
    if len(layers) > 1:
        result["layer_instructions"] = [b - a for a, b in zip(layers, layers[1:], strict=False)]
    return result


def _define(header: str, name: str) -> int:
    found = re.search(rf"^#define {name} (\d+)$", header, re.MULTILINE)
    if found is None:
        raise ToolchainError(f"edgecnn_model.h does not define {name}")
    return int(found.group(1))


def classify_on(
    core: Core, model_dir: Path, images: np.ndarray, optimize: str = "-Os",
    extra: tuple[str, ...] = (), timeout: float = 7200,
) -> np.ndarray:  # fmt: skip
    """The int8 scores ``(N, classes)`` of uint8 ``images`` classified on the emulated core.

    The library in ``model_dir`` is built with ``board/classify.c``; the pictures go in and
    the scores come out through semihosting files in a temporary folder, so any number
    of pictures runs (QEMU without ``-icount``: it runs faster, and nothing is timed).

    Raises:
        ToolchainError: the tools are missing, the build fails, the pictures have the
            wrong size, or the program fails or runs out of time.
    """
    header = (model_dir / "edgecnn_model.h").read_text()
    size, classes = _define(header, "EDGECNN_INPUT_SIZE"), _define(header, "EDGECNN_NUM_CLASSES")
    pixels = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    if pixels.shape[1] != size:
        raise ToolchainError(f"pictures of {pixels.shape[1]} values; the model takes {size}")
    with tempfile.TemporaryDirectory(prefix="edgecnn-classify-") as scratch:
        folder = Path(scratch)
        elf = folder / "classify.elf"
        _link(core, [model_dir / "edgecnn_model.c", board_dir() / "classify.c"], elf,
              optimize, (f"-I{model_dir}", *extra))  # fmt: skip
        (folder / "images.bin").write_bytes(pixels.tobytes())
        done = _qemu(core, elf, timeout, icount=False, cwd=folder)
        out = folder / "scores.bin"
        wrote = out.stat().st_size if out.is_file() else 0
        if done.returncode != 0 or wrote != len(pixels) * classes:
            said = (done.stdout + done.stderr).strip().splitlines()
            why = said[-1] if said else f"{wrote // classes} of {len(pixels)} pictures classified"
            raise ToolchainError(f"classifying on {core.name} failed: {why}")
        scores = np.fromfile(out, dtype=np.int8)
    return scores.reshape(len(pixels), classes)


# ---- the Cortex-M4 entry points the c format uses ---------------------------------------------


def cortex_m4_library(
    source: Path, work: Path, optimize: str = "-Os", extra: tuple[str, ...] = ()
) -> dict[str, int]:
    """:func:`build_library` for the Cortex-M4."""
    return build_library(CORES["m4"], source, work, optimize, extra)


def cortex_m4_check(
    model_dir: Path, check_dir: Path, elf: Path, optimize: str = "-Os",
    extra: tuple[str, ...] = (),
) -> dict[str, int]:  # fmt: skip
    """:func:`build_check` for the Cortex-M4 (QEMU's mps2-an386)."""
    return build_check(CORES["m4"], model_dir, check_dir, elf, optimize, extra)


def run_on_qemu(elf: Path, timeout: float = 600) -> dict[str, object]:
    """:func:`run_check` on the Cortex-M4 (QEMU's mps2-an386)."""
    return run_check(CORES["m4"], elf, timeout)
