"""The work buffer's layout: a convolution's output may overlap its input only where no
input byte it still reads has been written over.

The kernel's order of reads and writes (templates/kernels.c, ``ec_conv_pool``) is
simulated byte by byte: positions two at a time in the order (pooled output, window
position), both patches read, then each pooled output whose window is done written.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecnn.export.mcu import arena


def _violations(c: arena.Conv, distance: int) -> int:
    """Bytes read after being written over, with the output ``distance`` below the input."""
    written: set[int] = set()
    window = c.pool_h * c.pool_w
    count = c.out_h * c.out_w * window
    bad = 0
    for s in range(0, count, 2):
        positions = [s, min(s + 1, count - 1)]
        for p in positions:
            q, j = divmod(p, window)
            oy, ox = divmod(q, c.out_w)
            y0 = (oy * c.pool_stride_h + j // c.pool_w) * c.stride_h - c.pad_h
            x0 = (ox * c.pool_stride_w + j % c.pool_w) * c.stride_w - c.pad_w
            for y in range(max(y0, 0), min(y0 + c.k_h, c.in_h)):
                for x in range(max(x0, 0), min(x0 + c.k_w, c.in_w)):
                    start = distance + (y * c.in_w + x) * c.in_c
                    bad += len(written & set(range(start, start + c.in_c)))
        for p in sorted(set(positions)):
            q, j = divmod(p, window)
            if j == window - 1:
                written |= set(range(q * c.out_c, (q + 1) * c.out_c))
    return bad


@settings(max_examples=150, deadline=None)
@given(
    k=st.integers(1, 5), stride=st.integers(1, 2), same=st.booleans(),
    pool=st.integers(1, 3), pool_stride=st.integers(1, 3), in_h=st.integers(5, 12),
    in_w=st.integers(5, 12), in_c=st.integers(1, 5), out_c=st.integers(1, 9),
)  # fmt: skip
def test_a_convolution_never_reads_what_it_has_written_over(
    k, stride, same, pool, pool_stride, in_h, in_w, in_c, out_c
):
    pad = (k - 1) // 2 if same else 0
    conv_h, conv_w = ((n + 2 * pad - k) // stride + 1 for n in (in_h, in_w))
    if min(conv_h, conv_w) < pool:
        return
    out_h, out_w = ((n - pool) // pool_stride + 1 for n in (conv_h, conv_w))
    c = arena.Conv(in_h, in_w, in_c, k, k, stride, stride, pad, pad, pool, pool, pool_stride,
                   pool_stride, out_h, out_w, out_c)  # fmt: skip
    distance = arena.in_place_distance(c)
    assert _violations(c, distance) == 0
    if distance > 0:  # and it is the least: one byte less, and a read meets a write
        assert _violations(c, distance - 1) > 0


def test_the_default_network_needs_the_fused_outputs_and_little_more():
    """Conv 5x5x16 over 14x14x16 pooled to 7x7x36 grows into its input from below."""
    conv2 = arena.Conv(14, 14, 16, 5, 5, 1, 1, 2, 2, 2, 2, 2, 2, 7, 7, 36)
    distance = arena.in_place_distance(conv2)
    assert _violations(conv2, distance) == 0 and _violations(conv2, distance - 1) > 0
    steps = [arena.Step(3136), arena.Step(1764, distance), arena.Step(128), arena.Step(10)]
    offsets, size = arena.place(steps)
    arena.check(steps, offsets)
    assert size == 3136 + distance < 3136 + 1764 - 1000  # the layout without overlaps


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.none() | st.integers(0, 500)), min_size=1,
                max_size=5))  # fmt: skip
def test_placement_keeps_every_rule_and_beats_stacking(layers):
    steps = [arena.Step(size, below) for size, below in layers]
    offsets, size = arena.place(steps)
    arena.check(steps, offsets)
    assert size == max(at + step.size for at, step in zip(offsets, steps, strict=True))
    # Never worse than two regions taken in turn, the layout before overlaps.
    regions = [max((s.size for s in steps[0::2]), default=0),
               max((s.size for s in steps[1::2]), default=0)]  # fmt: skip
    assert size <= sum(regions)
