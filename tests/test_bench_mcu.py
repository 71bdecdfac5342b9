"""bench/cmsis_nn.py: the CMSIS-NN driver bench/mcu.py measures edgecnn against.

The driver is generated from the tiny model and checked without CMSIS-NN (its arena plan,
its constants, the check program). Where a CMSIS-NN checkout is at hand (``$CMSIS_NN_DIR``,
or the bench's clone in the cache; the tests never clone), it is compiled with the
driver on this machine and its scores held against TFLite's reference kernels, and (marked
``mcu``) on the emulated Cortex-M4, as the bench runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from mcu_helpers import TINY_INT8
from shared import bench_module

from edgecnn.export.mcu import cgen, graph, quant, reference, toolchain

cmsis_nn = bench_module("cmsis_nn")


@pytest.fixture(scope="module")
def tiny():
    data = TINY_INT8.read_bytes()
    g = graph.read(data)
    return data, g, cmsis_nn.driver(g, cgen.sha256(data))


def _cmsis_nn_source() -> Path:
    """The checkout the bench would use without cloning one; else the test is skipped."""
    if not os.environ.get("CMSIS_NN_DIR") and not (cmsis_nn.CACHE / "Include").is_dir():
        pytest.skip("no CMSIS-NN checkout ($CMSIS_NN_DIR, or bench/mcu.py's clone in the cache)")
    try:
        return cmsis_nn.source_dir(None)
    except cmsis_nn.SourceMissing as e:
        pytest.skip(str(e))


def test_steps_follow_the_graph_and_each_output_goes_to_the_other_region(tiny):
    _, g, driver = tiny
    kinds = [s.kind for s in driver.steps]
    assert kinds == ["input", "conv", "pool", "conv", "pool", "fc", "fc", "softmax"]
    sizes = [s.out_bytes for s in driver.steps]
    regions = [max(sizes[0::2]), max(sizes[1::2])]
    both = (regions[0] + 3) // 4 * 4 + regions[1]
    extra = max(s.scratch for s in driver.steps)  # where no region's tail has room
    assert both <= driver.arena_bytes <= (both + 3) // 4 * 4 + extra
    for previous, step in zip(driver.steps, driver.steps[1:], strict=False):
        assert step.out_at != previous.out_at  # never written over its own input
        if step.scratch:  # the im2col buffer overlaps neither the input nor the output
            taken = [(previous.out_at, previous.out_bytes), (step.out_at, step.out_bytes)]
            for at, size in taken:
                assert step.scratch_at >= at + size or step.scratch_at + step.scratch <= at
            assert step.scratch_at + step.scratch <= driver.arena_bytes
            assert step.scratch_at % 4 == 0


def test_the_driver_holds_the_files_weights_and_tflites_multipliers(tiny):
    _, g, driver = tiny
    text = driver.files["cmsis_nn_model.c"]

    def array(name: str) -> list[int]:
        found = re.search(rf"{name}\[\d+\] = \{{([^}}]*)\}}", text)
        assert found is not None, name
        return [int(v) for v in found.group(1).replace("\n", " ").split(",")]

    conv, dense = g.layers[1], g.layers[2]
    assert array("s3_filter") == conv.weights.data.ravel().tolist()  # OHWI, as the file
    assert array("s3_bias") == conv.bias.data.tolist()
    multipliers, shifts = quant.per_channel_multipliers(
        conv.input.quant.scale, conv.weights.quant.scales, conv.output.quant.scale
    )
    assert (array("s3_multiplier"), array("s3_shift")) == (multipliers, shifts)
    assert array("s5_weights") == dense.weights.data.ravel().tolist()
    assert "$" not in text and "$" not in driver.files["cmsis_nn_model.h"]


def test_the_check_program_is_filled_in_for_both_engines(tiny):
    _, _, driver = tiny
    for program in (cmsis_nn.check_program("edgecnn"),
                    cmsis_nn.check_program("cmsis-nn", driver.kept)):  # fmt: skip
        assert "$" not in program
    assert [layer for layer, _, _ in driver.kept] == [2, 3]  # the dense layers' outputs


def test_linked_sizes_count_only_the_kept_sections_of_the_files_named(tmp_path):
    map_file = tmp_path / "x.map"
    map_file.write_text(
        "Discarded input sections\n"
        " .text.unused   0x00000000       0x40 /w/libcmsis-nn-Os.a(arm_unused.o)\n"
        "Linker script and memory map\n"
        ".text           0x00000000     0x1000\n"
        " .text.arm_convolve_s8\n"
        "                0x00000100      0x2f0 /w/libcmsis-nn-Os.a(arm_convolve_s8.o)\n"
        "                0x00000100                arm_convolve_s8\n"
        " .rodata.s1_filter\n"
        "                0x00000400       0x64 /w/cmsis-nn/cmsis_nn_model.o\n"
        " *fill*         0x00000464        0x4 \n"
        ".data           0x20000000        0x8 load address 0x00001000\n"
        " .data.x        0x20000000        0x8 /w/libcmsis-nn-Os.a(arm_nntables.o)\n"
        ".bss            0x20000008      0x100\n"
        " .bss.arena     0x20000008      0x100 /w/cmsis-nn/cmsis_nn_model.o\n"
    )
    assert cmsis_nn.linked_sizes(map_file, r"libcmsis-nn") == (0x2F0 + 8, 8)
    assert cmsis_nn.linked_sizes(map_file, r"cmsis_nn_model\.o$") == (0x64, 0x100)


def _write_program(folder: Path, data: bytes, g: graph.Graph, driver, images: np.ndarray) -> None:
    """The driver, main.c and vectors.h with the reference kernels' outputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in driver.files.items():
        (folder / name).write_text(text)
    assert g.input.quant is not None
    inputs = reference.int8_inputs(images, g.input.quant.scale, g.input.quant.zero_point)
    tensors = (g.output.index, *(g.layers[layer].result.index for layer, _, _ in driver.kept))
    interpreter = Interpreter(model_content=data,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)  # fmt: skip
    scores, *kept = reference.invoke_in_chunks(interpreter, inputs, tensors)
    layers = {layer: values for (layer, _, _), values in zip(driver.kept, kept, strict=True)}
    labels = np.zeros(len(images), dtype=np.int64)
    (folder / "vectors.h").write_text(cmsis_nn.test_vectors(images, scores, labels, layers))
    (folder / "main.c").write_text(cmsis_nn.check_program("cmsis-nn", driver.kept))


def _differences(output: str) -> list[int]:
    """The largest gap in the scores, then in each kept layer, as main.c printed them."""
    gaps = re.findall(r"by at most (\d+)", output)
    assert len(gaps) == 3, output
    return [int(g) for g in gaps]


def test_cmsis_nn_on_this_machine_is_within_one_step_of_the_reference(tiny, test_images, tmp_path):
    source = _cmsis_nn_source()
    cc = toolchain.host_compiler()
    if cc is None or shutil.which("ar") is None:
        pytest.skip("no C compiler and ar")
    data, g, driver = tiny
    _write_program(tmp_path, data, g, driver, test_images.x[:32, ..., None])
    objects = tmp_path / "objects"
    objects.mkdir()
    toolchain.run([cc, "-O1", f"-I{source / 'Include'}", "-c",
                   *map(str, cmsis_nn.library_sources(source))], "compiling CMSIS-NN",
                  cwd=objects)  # fmt: skip
    archive = tmp_path / "libcmsis-nn.a"  # only the members the driver calls are linked
    toolchain.run(["ar", "rcs", str(archive), *map(str, sorted(objects.glob("*.o")))], "ar")
    program = tmp_path / "check"
    toolchain.run([cc, *toolchain.WARNINGS, "-O1", "-isystem", str(source / "Include"),
                   f"-I{tmp_path}", str(tmp_path / "main.c"), str(tmp_path / "cmsis_nn_model.c"),
                   str(archive), "-o", str(program)], "linking the check program")  # fmt: skip
    done = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert max(_differences(done.stdout)) <= 1


@pytest.mark.mcu
def test_cmsis_nn_on_the_emulated_cortex_m4_is_measured(tiny, test_images, tmp_path):
    source = _cmsis_nn_source()
    data, g, driver = tiny
    folder = tmp_path / "driver"
    _write_program(folder, data, g, driver, test_images.x[:32, ..., None])
    archive = cmsis_nn.build_library(source, tmp_path, "-Os")
    elf = tmp_path / "check.elf"
    cmsis_nn.build_check(source, archive, folder, elf, "-Os")
    run = cmsis_nn.parse_run(toolchain.run_on_qemu(elf))
    assert run.returncode == 0, run.output
    assert max(_differences(run.output)) <= 1
    assert len(run.layers) == len(driver.steps)
    assert run.instructions and 0.9 * run.instructions <= sum(run.layers) <= run.instructions
    assert run.stack_bytes and 0 < run.stack_bytes < 4096
