"""The generated C library on five Cortex-M cores under QEMU (``toolchain.CORES``).

Every core gives the host build's scores byte for byte on the check vectors; its counter
counts instructions; the cores with Arm's DSP extension run the DSP path (``SMLAD`` in the
object) and the others the portable one; on the Cortex-M4 both paths give TFLite's
reference kernels' scores on all 10,000 test images. Each program is compiled once.

Needs Debian's ``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi`` and ``qemu-system-arm``
(``tools/bootstrap.sh test`` installs them); skipped without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from mcu_helpers import TINY_INT8, generate_tiny, tiny_metadata

from edgecnn.export.formats import c as c_format
from edgecnn.export.mcu import cgen, graph, reference, toolchain
from edgecnn.runtime import load_classifier

PORTABLE = ("-DEDGECNN_PORTABLE",)

pytestmark = [
    pytest.mark.mcu,
    pytest.mark.slow,
    pytest.mark.skipif(
        toolchain.arm_compiler() is None or shutil.which(toolchain.QEMU) is None,
        reason=f"needs {toolchain.ARM_GCC} and {toolchain.QEMU}",
    ),
]


@pytest.fixture(scope="module")
def tiny_c(tmp_path_factory, test_images):
    """The tiny model as C, its check program (the host build's scores as test vectors)."""
    meta = tiny_metadata()
    folder = tmp_path_factory.mktemp("cores") / "c"
    library = generate_tiny(folder)
    (folder / "check").mkdir()
    host, _ = c_format.build_host_library(folder, meta)
    count = c_format.TEST_VECTORS
    scores = load_classifier(host, backend="c").backend.scores(test_images.x[:count])
    (folder / "check" / "test_vectors.h").write_text(
        cgen.test_vectors(test_images.x[:count], scores, test_images.y[:count])
    )
    (folder / "check" / "main.c").write_text(cgen.CHECK_PROGRAM)
    return SimpleNamespace(folder=folder, library=library, data=TINY_INT8.read_bytes(), count=count)


@pytest.fixture(scope="module")
def checks(tiny_c, tmp_path_factory):
    """Each core's check program built and run once: its sizes and what QEMU reported."""
    work = tmp_path_factory.mktemp("elf")
    done = {}
    for key, core in toolchain.CORES.items():
        elf = work / f"check-{key}.elf"
        sizes = toolchain.build_check(core, tiny_c.folder, tiny_c.folder / "check", elf)
        done[key] = SimpleNamespace(sizes=sizes, ran=toolchain.run_check(core, elf))
    return done


@pytest.mark.parametrize("key", list(toolchain.CORES))
def test_every_core_gives_the_hosts_scores_byte_for_byte(key, checks, tiny_c, capsys):
    core, check = toolchain.CORES[key], checks[key]
    output = str(check.ran["output"])
    assert check.ran["returncode"] == 0, output
    assert f"{tiny_c.count} of {tiny_c.count} test images give the expected scores" in output
    flash, ram = toolchain.BOARDS[core.machine].flash[1], toolchain.BOARDS[core.machine].ram[1]
    assert tiny_c.library.weight_bytes < check.sizes["flash"] <= flash
    assert check.sizes["ram"] <= ram
    assert 0 < check.ran["stack_bytes"] < 1024 and check.ran["instructions"] > 100_000
    with capsys.disabled():
        print(f"\n  {core.name} ({core.machine}): {check.ran['instructions']:,} instructions per "
              f"inference, stack {check.ran['stack_bytes']} B, program flash "
              f"{check.sizes['flash']:,} B")  # fmt: skip


@pytest.mark.parametrize("key", list(toolchain.CORES))
def test_each_boards_counter_counts_the_instructions_of_a_known_loop(key, tiny_c, tmp_path):
    """``subs; bne``: two instructions an iteration, counted to within one timer tick."""
    core = toolchain.CORES[key]
    loops = 100_000
    (tmp_path / "main.c").write_text(
        "#include <stdint.h>\n"
        "int main(void)\n{\n"
        f"    uint32_t n = {loops}u;\n"
        "    EDGECNN_CHECK_BEGIN();\n"
        '    __asm__ volatile(".syntax unified\\n1: subs %0, %0, #1\\n\\tbne 1b" : "+l"(n));\n'
        "    EDGECNN_CHECK_END();\n"
        "    return (int)n;\n}\n"
    )
    elf = tmp_path / "loop.elf"
    toolchain.build_check(core, tiny_c.folder, tmp_path, elf)
    ran = toolchain.run_check(core, elf)
    assert ran["returncode"] == 0, ran["output"]
    per_tick = 1e9 / toolchain.BOARDS[core.machine].timer_hz
    assert abs(int(ran["instructions"]) - 2 * loops) <= per_tick


def test_a_fault_ends_the_run_at_once_and_says_so(tiny_c, tmp_path):
    """An undefined instruction: the fault handler stops QEMU with exit status 1."""
    (tmp_path / "main.c").write_text('int main(void)\n{\n    __asm__ volatile("udf #0");\n'
                                     "    return 0;\n}\n")  # fmt: skip
    for key, core in toolchain.CORES.items():
        elf = tmp_path / f"fault-{key}.elf"
        toolchain.build_check(core, tiny_c.folder, tmp_path, elf)
        ran = toolchain.run_check(core, elf, timeout=30)
        assert ran["returncode"] == 1 and "the core took a fault" in str(ran["output"]), key


def test_the_layer_hook_times_each_layer_on_the_m4(tiny_c, tmp_path):
    """-DEDGECNN_MEASURE_LAYERS: one count per layer (softmax included), adding up."""
    core = toolchain.CORES["m4"]
    elf = tmp_path / "layers.elf"
    extra = ("-DEDGECNN_MEASURE_LAYERS",)
    toolchain.build_check(core, tiny_c.folder, tiny_c.folder / "check", elf, extra=extra)
    ran = toolchain.run_check(core, elf)
    assert ran["returncode"] == 0, ran["output"]
    layers = ran["layer_instructions"]
    assert len(layers) == len(graph.read(tiny_c.data).layers)
    assert all(n > 0 for n in layers)
    assert 0 <= int(ran["instructions"]) - sum(layers) < 1000


def _disassembly(core: toolchain.Core, source: Path, work: Path, extra: tuple[str, ...]) -> str:
    work.mkdir()
    toolchain.build_library(core, source, work, extra=extra)
    return subprocess.run(["arm-none-eabi-objdump", "-d", str(work / "edgecnn_model.o")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


@pytest.mark.parametrize("key", list(toolchain.CORES))
def test_the_dsp_path_is_taken_exactly_on_the_cores_with_dsp(key, tiny_c, tmp_path):
    """SMLAD in the object on the M4, M7 and M33; not on the M3 and M0, nor with
    -DEDGECNN_PORTABLE."""
    core = toolchain.CORES[key]
    source = tiny_c.folder / cgen.SOURCE
    found = "smlad" in _disassembly(core, source, tmp_path / "default", ())
    assert found == core.dsp, f"SMLAD {'in' if found else 'not in'} the {core.name} object"
    if core.dsp:
        portable = _disassembly(core, source, tmp_path / "portable", PORTABLE)
        assert "smlad" not in portable, "SMLAD in the -DEDGECNN_PORTABLE object"


@pytest.fixture(scope="module")
def reference_scores(tiny_c, test_images):
    """TFLite's reference kernels' int8 scores for the 10,000 test images."""
    g = graph.read(tiny_c.data)
    assert g.input.quant is not None
    inputs = reference.int8_inputs(test_images.x, g.input.quant.scale, g.input.quant.zero_point)
    inputs = inputs.reshape(len(inputs), *tiny_c.library.input_shape)
    return reference.run(tiny_c.data, inputs, tiny_c.library.logits_tensor,
                         tiny_c.library.output_tensor).scores  # fmt: skip


@pytest.mark.parametrize("extra", [(), PORTABLE], ids=["dsp", "portable"])
def test_the_m4_gives_the_reference_kernels_scores_on_all_test_images(
    extra, tiny_c, test_images, reference_scores
):
    scores = toolchain.classify_on(toolchain.CORES["m4"], tiny_c.folder, test_images.x,
                                   extra=extra)  # fmt: skip
    assert scores.shape == reference_scores.shape == (10_000, tiny_c.library.classes)
    assert scores.dtype == reference_scores.dtype
    differ = (scores != reference_scores).any(axis=1).sum()
    assert differ == 0, f"{differ} of 10000 images differ from the reference kernels"


@pytest.mark.parametrize("optimize", ["-Os", "-O2", "-O3"])
@pytest.mark.parametrize("key", list(toolchain.CORES))
def test_the_library_needs_nothing_from_the_c_library_on_any_core(key, optimize, tiny_c,
                                                                   tmp_path):  # fmt: skip
    """No undefined symbol but the compiler's own run-time helpers (libgcc's ``__aeabi_*``:
    64-bit multiplies and shifts on the M0 and M3, float arithmetic without an FPU), and
    no writable data, on every core at every flag: no memcpy a compiler might call."""
    core = toolchain.CORES[key]
    sizes = toolchain.build_library(core, tiny_c.folder / cgen.SOURCE, tmp_path, optimize)
    assert sizes["data"] == 0 and sizes["bss"] == 0
    nm = subprocess.run(["arm-none-eabi-nm", "-u", str(tmp_path / "edgecnn_model.o")],
                        capture_output=True, text=True, check=True)  # fmt: skip
    names = [name for name in nm.stdout.split() if name != "U"]
    assert [name for name in names if not name.startswith("__aeabi_")] == []


def test_an_arm9e_without_simd32_takes_the_portable_path(tiny_c, tmp_path):
    """ARMv5TE defines __ARM_FEATURE_DSP but has no SXTB16 or SMLAD: it must still compile."""
    obj = tmp_path / "arm9.o"
    toolchain.run([toolchain.ARM_GCC, *toolchain.WARNINGS, "-march=armv5te", "-marm", "-Os",
                   "-c", str(tiny_c.folder / cgen.SOURCE), "-o", str(obj)],
                  "compiling for ARMv5TE")  # fmt: skip
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
    assert "smlad" not in disassembly
