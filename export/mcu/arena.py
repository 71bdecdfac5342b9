"""Where each layer's output goes in the work buffer: as little RAM as the layers allow.

A layer reads the output of the layer before it and writes its own; nothing older is
alive. A fully connected layer reads all of its input for every output, so its output
must not overlap its input. A convolution (fused with its pool) walks its pooled outputs
in order and writes each once its last window position is done; the positions after it
read only input rows from the next pooled output's first window down. So its output may
start below its input and grow into it, as long as each write stays below every input
byte still to be read: the least such distance is :func:`in_place_distance`.
:func:`place` then picks the offsets (the ways layers can sit against one another,
tried exhaustively: networks here have a handful of layers) that need the fewest bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One layer as the placement sees it: its output's size and how it may overlap."""

    size: int
    #: None: its output must not overlap its input; else the least number of bytes its
    #: output must start below its input for the two to overlap.
    below: int | None = None


@dataclass(frozen=True)
class Conv:
    """The geometry of a fused convolution and pool (a pool of 1 when there is none)."""

    in_h: int
    in_w: int
    in_c: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    pool_h: int
    pool_w: int
    pool_stride_h: int
    pool_stride_w: int
    out_h: int
    out_w: int
    out_c: int

    def first_read(self, position: int) -> int | None:
        """The lowest input byte the patch of a position reads (None: only padding)."""
        window = self.pool_h * self.pool_w
        q, j = divmod(position, window)
        oy, ox = divmod(q, self.out_w)
        y0 = (oy * self.pool_stride_h + j // self.pool_w) * self.stride_h - self.pad_h
        x0 = (ox * self.pool_stride_w + j % self.pool_w) * self.stride_w - self.pad_w
        y, x = max(y0, 0), max(x0, 0)
        if y >= min(y0 + self.k_h, self.in_h) or x >= min(x0 + self.k_w, self.in_w):
            return None
        return (y * self.in_w + x) * self.in_c


def in_place_distance(c: Conv) -> int:
    """The least distance in bytes between the input's start and the output's, below it.

    The kernel's order: positions in pairs, in the order (pooled output, window
    position); both patches are read, then each pooled output whose window ended in the
    pair is written (out_c bytes at q * out_c). Every write must end at or below the
    lowest input byte read by any later pair, offset by the distance.
    """
    window = c.pool_h * c.pool_w
    count = c.out_h * c.out_w * window
    pairs = (count + 1) // 2
    # later[k]: the lowest input byte read by pairs k, k + 1, ... (None: none).
    later: list[int | None] = [None] * (pairs + 1)
    for k in range(pairs - 1, -1, -1):
        reads = [r for r in (c.first_read(2 * k), c.first_read(min(2 * k + 1, count - 1)),
                             later[k + 1]) if r is not None]  # fmt: skip
        later[k] = min(reads) if reads else None
    need = 0
    for q in range(c.out_h * c.out_w):
        after = later[((q + 1) * window - 1) // 2 + 1]
        if after is not None:
            need = max(need, (q + 1) * c.out_c - after)
    return need


def _fits(before: int, before_size: int, at: int, step: Step) -> bool:
    """Whether a layer's output at ``at`` may be written while it reads ``before``."""
    if at + step.size <= before or at >= before + before_size:
        return True
    return step.below is not None and before - at >= step.below


def place(steps: list[Step]) -> tuple[list[int], int]:
    """The offset of each step's output and the bytes they need together.

    The first step's input is not in the buffer. Candidates for each offset: 0, right
    above or below the previous output, the overlap distance below it, or where the next
    step needs it to be for that step to sit at 0; every combination is tried.
    """
    if not steps:
        return [], 0
    best: tuple[int, list[int]] | None = None

    def options(i: int, before: int | None) -> set[int]:
        step = steps[i]
        found = {0}
        if i + 1 < len(steps):  # where the next output could then sit at 0
            nxt = steps[i + 1]
            found |= {nxt.size} | ({nxt.below} if nxt.below is not None else set())
        if before is not None:
            found |= {before + steps[i - 1].size, before - step.size}
            if step.below is not None:
                found.add(before - step.below)
        return {at for at in found if at >= 0}

    def walk(i: int, before: int | None, chosen: list[int], top: int) -> None:
        nonlocal best
        if best is not None and top >= best[0]:
            return
        if i == len(steps):
            best = (top, list(chosen))
            return
        for at in sorted(options(i, before)):
            if before is not None and not _fits(before, steps[i - 1].size, at, steps[i]):
                continue
            walk(i + 1, at, [*chosen, at], max(top, at + steps[i].size))

    walk(0, None, [], 0)
    assert best is not None  # stacking each output above the last always fits
    return best[1], best[0]


def check(steps: list[Step], offsets: list[int]) -> None:
    """Raise AssertionError unless ``offsets`` keep every layer's rules (for the tests)."""
    for i in range(1, len(steps)):
        assert _fits(offsets[i - 1], steps[i - 1].size, offsets[i], steps[i]), (i, offsets)
    assert all(at >= 0 for at in offsets)
