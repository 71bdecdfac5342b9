"""Compilers: the system C compiler for the host library, GCC for Arm for Cortex-M.

Every compile treats a warning as an error (``-Wall -Wextra -Werror -pedantic``, C99):
generated code that warns is a bug of the generator, caught before a user sees it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from edgecnn.errors import EdgecnnError

#: What every compile of the generated C gets.
WARNINGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
#: Cortex-M4 with its single-precision FPU, as QEMU's mps2-an386 board emulates.
CORTEX_M4 = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
ARM_GCC = "arm-none-eabi-gcc"


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
        first = next((line for line in lines if "error" in line), lines[0] if lines else "")
        raise ToolchainError(f"{what} failed: {first.strip()[:300]}")
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


QEMU = "qemu-system-arm"
#: QEMU's Cortex-M4 board, and how the check program talks to the host (semihosting).
QEMU_BOARD = ("-M", "mps2-an386", "-nographic", "-semihosting-config", "enable=on,target=native")
#: Under -icount shift=0 an instruction takes 1 ns; the board's timer ticks at 25 MHz.
INSTRUCTIONS_PER_TICK = 40


def board_dir() -> Path:
    """The mps2-an386 board support shipped with edgecnn (startup, linker script, hooks)."""
    from importlib import resources

    return Path(str(resources.files("edgecnn.export.mcu").joinpath("board")))


def _sizes(elf_or_object: Path) -> dict[str, int]:
    """``arm-none-eabi-size``'s text, data and bss of a file."""
    out = run(["arm-none-eabi-size", "--format=berkeley", str(elf_or_object)], "measuring sizes")
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def cortex_m4_library(
    source: Path, work: Path, optimize: str = "-Os", extra: tuple[str, ...] = ()
) -> dict[str, int]:
    """Compile the library alone for a Cortex-M4 and measure its flash and RAM.

    ``optimize`` is the optimization flag (-Os by default), ``extra`` further flags
    (``-DEDGECNN_PORTABLE``, say).

    Raises:
        ToolchainError: no arm-none-eabi-gcc, or the code does not compile cleanly.
    """
    if arm_compiler() is None:
        raise ToolchainError(f"{ARM_GCC} is not installed (Debian: gcc-arm-none-eabi)")
    obj = work / "edgecnn_model.o"
    run([ARM_GCC, *WARNINGS, *CORTEX_M4, optimize, *extra, "-ffunction-sections",
         "-fdata-sections", "-c", str(source), "-o", str(obj)],
        "compiling the library for Cortex-M4")  # fmt: skip
    return _sizes(obj)


def cortex_m4_check(
    model_dir: Path, check_dir: Path, elf: Path, optimize: str = "-Os",
    extra: tuple[str, ...] = (),
) -> dict[str, int]:  # fmt: skip
    """Link the check program for QEMU's mps2-an386 and measure the whole program.

    ``optimize`` and ``extra`` as for :func:`cortex_m4_library`.

    Raises:
        ToolchainError: no arm-none-eabi-gcc (with newlib), or it fails to compile.
    """
    if arm_compiler() is None:
        raise ToolchainError(f"{ARM_GCC} is not installed (Debian: gcc-arm-none-eabi)")
    board = board_dir()
    run([ARM_GCC, *WARNINGS, *CORTEX_M4, optimize, *extra, "-ffunction-sections",
         "-fdata-sections", "--specs=rdimon.specs", f"-I{model_dir}",
         "-include", str(board / "measure.h"),
         "-T", str(board / "link.ld"), "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}",
         str(board / "startup.c"), str(model_dir / "edgecnn_model.c"), str(check_dir / "main.c"),
         "-o", str(elf)], "linking the check program for Cortex-M4")  # fmt: skip
    return _sizes(elf)


def run_on_qemu(elf: Path, timeout: float = 600) -> dict[str, object]:
    """Run the check program on an emulated Cortex-M4; what it printed and measured.

    Raises:
        ToolchainError: qemu-system-arm is missing, fails, or the program never ends.
    """
    if shutil.which(QEMU) is None:
        raise ToolchainError(f"{QEMU} is not installed (Debian: qemu-system-arm)")
    command = [QEMU, *QEMU_BOARD, "-icount", "shift=0", "-kernel", str(elf)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"the check program did not finish within {timeout:.0f} s") from None
    result: dict[str, object] = {"returncode": done.returncode, "output": done.stdout}
    for line in done.stdout.splitlines():
        if line.startswith("edgecnn measure:"):
            words = line.split()
            result["stack_bytes"] = int(words[3])
            result["instructions"] = int(words[6]) * INSTRUCTIONS_PER_TICK
    return result
