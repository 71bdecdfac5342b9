"""Hostile training data: .npz zip bombs, lying zip directories, names that print alike.

The bombs are real archives that ``np.load`` would inflate: deflated zeros behind a
genuine ``.npy`` header, with correct CRCs and zip64 sizes. Each is given to ``edgecnn
train`` in a fresh interpreter whose address space is capped at 1.5 GiB, so reading one
whole would end in a MemoryError (exit 1), not the one-line refusal (exit 2) asserted.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from shared import ARRAY, TINY

from edgecnn.runtime.labels import check_class_names
from edgecnn.runtime.metadata import ModelError, check_labels
from edgecnn.runtime.npy import NpyError
from edgecnn.runtime.npz import ArchiveReader, Budget

#: The address space the bombs are read in: far less than any of them inflates to.
ADDRESS_SPACE = 1536 << 20
#: Seconds a capped interpreter may run: a bound against a hang, not a speed (how fast a
#: bomb is refused belongs in bench/; that it is never inflated is the peak asserted).
TIMEOUT = 300
IMAGE = (28, 28)


# -- real bombs, written fast -------------------------------------------------------------

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """``a * b`` modulo CRC-32's polynomial (zlib's ``multmodp``, reflected bits)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial
for _ in range(31):
    _X2N.append(_multmodp(_X2N[-1], _X2N[-1]))


def _crc_with_zeros(crc: int, count: int) -> int:
    """``zlib.crc32(bytes(count), crc)`` without making gigabytes of zeros."""
    p, k = 1 << 31, 3
    while count:
        if count & 1:
            p = _multmodp(_X2N[k & 31], p)
        count >>= 1
        k += 1
    return _multmodp(p, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def _deflated(prefix: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes.

    Each piece is compressed on its own and ends on a full flush, so the identical pieces
    of zeros are one compressed block repeated: 4 GiB of zeros in 4 MB, in milliseconds.
    """

    def piece(data: bytes, final: bool = False) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + (c.flush() if final else c.flush(zlib.Z_FULL_FLUSH))

    chunk = 1 << 24
    full, rest = divmod(zeros, chunk)
    zeros_block = piece(bytes(chunk)) if full else b""
    return piece(prefix) + zeros_block * full + piece(bytes(rest), final=True)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _header(descr: str, shape: tuple[int, ...], version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    d = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, d)
    else:
        np.lib.format.write_array_header_2_0(buffer, d)
    return buffer.getvalue()


class Member:
    """One zip member as it will be written: its stream and what the directory says."""

    def __init__(self, name: str, content: bytes = b"", zeros: int = 0, method: int = 8):
        self.name = name
        self.method = method
        self.size = len(content) + zeros
        self.crc = _crc_with_zeros(zlib.crc32(content), zeros)
        self.data = _deflated(content, zeros) if method == 8 else content + bytes(zeros)


def _write_zip(path: Path, members: list[Member], entries: int | None = None,
               directory: int | None = None) -> Path:  # fmt: skip
    """A zip64 archive of ``members`` (sizes as each member says, true or not)."""
    out, central = bytearray(), bytearray()
    for m in members:
        offset, name = len(out), m.name.encode()
        extra = struct.pack("<HHQQ", 1, 16, m.size, len(m.data))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, m.method, 0, 0, m.crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra))  # fmt: skip
        out += name + extra + m.data
        extra = struct.pack("<HHQQQ", 1, 24, m.size, len(m.data), offset)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, m.method, 0, 0, m.crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0,
                               0xFFFFFFFF)  # fmt: skip
        central += name + extra
    count = len(members) if entries is None else entries
    size = len(central) if directory is None else directory
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count & 0xFFFF, count & 0xFFFF,
                      size & 0xFFFFFFFF, len(out), 0)  # fmt: skip
    path.write_bytes(bytes(out + central + end))
    return path


def _small(n: int = 10) -> list[Member]:
    """Everything but x_train, small and valid: two classes of n images."""
    rng = np.random.default_rng(0)
    return [
        Member("y_train.npy", _npy(np.arange(n, dtype=np.int64) % 2)),
        Member("x_test.npy", _npy(rng.integers(0, 255, (n, *IMAGE), dtype=np.uint8))),
        Member("y_test.npy", _npy(np.arange(n, dtype=np.int64) % 2)),
    ]


def _zeros(name: str, descr: str, shape: tuple[int, ...]) -> Member:
    """``shape`` zeros of ``descr`` behind an honest header, deflated: np.load inflates it."""
    return Member(name, _header(descr, shape), int(np.prod(shape)) * np.dtype(descr).itemsize)


def _bomb(path: Path, x: tuple[str, tuple[int, ...]], y: str = "<i8", test: int = 10) -> Path:
    """x_train and y_train of zeros, as ``x`` and ``y`` say; ``test`` zero test images."""
    descr, shape = x
    members = [_zeros("x_train.npy", descr, shape), _zeros("y_train.npy", y, shape[:1])]
    members += [_zeros("x_test.npy", "|u1", (test, *shape[1:])), *_small()[2:]]
    if test != 10:
        members[-1] = _zeros("y_test.npy", "<i8", (test,))
    return _write_zip(path, members)


def _capped(statements: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Python ``statements`` in an interpreter capped at :data:`ADDRESS_SPACE`.

    Returns the process and its peak resident memory in MiB.
    """
    peak_file = tmp_path / "peak"
    code = (
        "import atexit, resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
        # VmHWM: this process's own peak. ru_maxrss would include the parent's (pytest's)
        # resident set, which the child inherits at fork and keeps across exec.
        "def peak():\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        f"    with open({str(peak_file)!r}, 'w') as f:\n"
        "        f.write(status.split()[0])\n"
        "atexit.register(peak)\n"
    ) + statements
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT
    )
    return done, int(peak_file.read_text()) >> 10


def _train_capped(data: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, int]:
    """``edgecnn train --data data`` in a capped interpreter (see :func:`_capped`)."""
    out = tmp_path / "run"
    return _capped(
        "from edgecnn.cli import main\n"
        f"sys.argv = ['edgecnn', 'train', '--data', {str(data)!r}, '--out', {str(out)!r}]\n"
        "main()\n",
        tmp_path,
    )


def _assert_refused(done: subprocess.CompletedProcess, match: str, data: bool = True) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert match in lines[0], lines[0]
    assert not data or "weight" not in lines[0], lines[0]  # training data is no weight


# -- bombs and lying directories -----------------------------------------------------------


@pytest.mark.parametrize(
    "x,y,test,match",
    [
        # 3.5 GiB of float64 zeros in 3.5 MB: within the byte budget, refused by dtype.
        (("<f8", (600_000, *IMAGE)), "<i8", 10, "x_train is float64; images must be uint8"),
        # 3.3 GiB of images with 35 MB of float labels: refused by the labels' dtype.
        (("|u1", (4_500_000, *IMAGE)), "<f8", 10, "y_train is float64; labels must be"),
        # 5.6 GiB of images (zip64 sizes): over the budget for one member.
        (("|u1", (7_700_000, *IMAGE)), "<i8", 10, "x_train.npy is 5.6 GiB uncompressed"),
        # 5.8 GiB of float64 in 6 MB: the size is refused first, from the directory.
        (("<f8", (1_000_000, *IMAGE)), "<i8", 10, "training data may hold at most 4.0 GiB"),
        # 2.9 GiB of training and 2.2 GiB of test images: each fits, together they do not.
        (("|u1", (4_000_000, *IMAGE)), "<i8", 3_000_000, "more than 4.0 GiB uncompressed"),
        # 2 GiB of images and labels that fit: within the budget, but not in this
        # interpreter's 1.5 GiB; the buffer cannot be had, and that is one line too.
        (("|u1", (2_800_000, *IMAGE)), "|u1", 10, "do not fit in this machine's free memory"),
    ],
)
def test_npz_bombs_are_refused_before_inflating(tmp_path, x, y, test, match):
    path = _bomb(tmp_path / "bomb.npz", x, y, test)
    assert path.stat().st_size < 8 << 20
    done, peak = _train_capped(path, tmp_path)
    _assert_refused(done, match)
    assert peak < 400, peak  # MiB: nothing was inflated


def test_a_bomb_is_a_real_bomb(tmp_path):
    """The archives are what np.load would inflate: a small one reads back as zeros."""
    path = _bomb(tmp_path / "small.npz", ("<f8", (30, *IMAGE)))
    with np.load(path) as loaded:
        assert loaded["x_train"].shape == (30, *IMAGE) and not loaded["x_train"].any()
        assert loaded["y_train"].shape == (30,)


def test_a_directory_that_disagrees_with_the_header_is_refused(tmp_path):
    members = _small()
    honest = Member("x_train.npy", _npy(np.zeros((10, *IMAGE), np.uint8)))
    honest.size = 100_000  # the directory lies about the uncompressed size
    path = _write_zip(tmp_path / "d.npz", [honest, *members])
    assert_one_line_error(invoke("train", "--data", path),
                          "x_train.npy: the archive's directory says 100,000 bytes but its "
                          "header (uint8, shape (10, 28, 28)) means 7,968")  # fmt: skip


def test_a_directory_that_understates_the_data_cannot_inflate_it(tmp_path):
    """Directory and header agree on 10 images; the stream holds 3 GiB more zeros.

    Exactly the declared bytes are inflated: the rest is never read.
    """
    content = _npy(np.zeros((10, *IMAGE), np.uint8))
    member = Member("x_train.npy", content, 3 << 30)
    member.size, member.crc = len(content), zlib.crc32(content)
    path = _write_zip(tmp_path / "d.npz", [member, *_small()])
    done, peak = _capped(
        "from pathlib import Path\n"
        "from edgecnn.trainer.arrays import read_arrays\n"
        f"print(read_arrays(Path({str(path)!r}))[0]['x_train'].shape)\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(10, 28, 28)" and peak < 400, peak


def test_a_weights_file_whose_text_claims_gigabytes_is_refused(tmp_path):
    """The runtime's weights.npz reader too: one "U" value of 2 GB is not inflated."""
    with zipfile.ZipFile(TINY / "weights.npz") as archive:
        members = [Member(i.filename, archive.read(i)) for i in archive.infolist()
                   if i.filename != "metadata.npy"]  # fmt: skip
    members.append(Member("metadata.npy", _header("<U500000000", ()), 2_000_000_000))
    path = _write_zip(tmp_path / "weights.npz", members)
    done, peak = _capped(
        "from edgecnn.cli import main\n"
        f"sys.argv = ['edgecnn', 'predict', {str(path)!r}, {str(ARRAY)!r}]\n"
        "main()\n",
        tmp_path,
    )
    _assert_refused(done, "2,000,000,000 bytes of text (<U500000000); at most", False)
    assert peak < 400, peak


def test_data_shorter_than_its_header_is_truncated(tmp_path):
    content = _npy(np.zeros((10, *IMAGE), np.uint8))
    member = Member("x_train.npy", content[:500])
    member.size = len(content)  # directory and header both say 7,968 bytes
    path = _write_zip(tmp_path / "d.npz", [member, *_small()])
    assert_one_line_error(invoke("train", "--data", path),
                          "x_train.npy: truncated: 372 of 7,840 data bytes")  # fmt: skip


@pytest.mark.parametrize(
    "change,match",
    [
        ({"entries": 60_000}, "it has 60,000 members; training data has at most 64"),
        ({"directory": 1 << 30}, "its zip directory is 1.0 GiB; at most 1.0 MiB"),
    ],
)
def test_an_end_record_over_budget_is_refused_before_zipfile_reads_it(tmp_path, change, match):
    path = _write_zip(tmp_path / "d.npz", [Member("x_train.npy", _npy(np.zeros(3))), *_small()],
                      **change)  # fmt: skip
    assert_one_line_error(invoke("train", "--data", path), match)


def test_too_many_members_and_other_compressions_are_refused(tmp_path):
    extra = [Member(f"junk{i}.npy", _npy(np.zeros(1))) for i in range(70)]
    x = Member("x_train.npy", _npy(np.zeros((10, *IMAGE), np.uint8)))
    path = _write_zip(tmp_path / "many.npz", [x, *_small(), *extra])
    assert_one_line_error(invoke("train", "--data", path), "74 members; training data has at")
    x = Member("x_train.npy", _npy(np.zeros((10, *IMAGE), np.uint8)), method=12)
    path = _write_zip(tmp_path / "bz.npz", [x, *_small()])
    assert_one_line_error(invoke("train", "--data", path), "compressed with method 12")


def test_a_header_that_claims_gigabytes_of_header_is_refused(tmp_path):
    # Version 2.0 has a 4-byte header length; numpy would read all of it before checking.
    header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 3 << 30)
    path = _write_zip(tmp_path / "h.npz", [Member("x_train.npy", header, 3 << 30), *_small()])
    done, peak = _train_capped(path, tmp_path)
    _assert_refused(done, "its header claims 3,221,225,472 bytes; at most 65,536")


def test_the_readers_budget_counts_bytes_not_values(tmp_path):
    """Per member and in total, whatever the dtype; a class_names member has its own cap."""
    budget = Budget(members=8, member_bytes=1000, total_bytes=1500, what="a test archive")
    data = io.BytesIO()
    np.savez(data, a=np.zeros(100, np.float64), b=np.zeros(100, np.int64))
    with ArchiveReader(data, budget) as archive:
        a = archive.header("a.npy")
        assert archive.read("a.npy", a).nbytes == 800
        with pytest.raises(NpyError, match="more than 1.5 KiB uncompressed together"):
            archive.header("b.npy")
    data = io.BytesIO()
    np.savez(data, a=np.zeros(200, np.float64))
    with ArchiveReader(data, budget) as archive, pytest.raises(NpyError, match="at most 1000"):
        archive.header("a.npy")


# -- class names that print alike ----------------------------------------------------------

ALIKE = [
    (["a", "a\u200b"], r"'a\u200b' holds \u200b (ZERO WIDTH SPACE)"),
    (["caf\u00e9", "cafe\u0301"], r"'cafe\u0301' and 'café' print alike"),
    (["x\u202ey", "b"], r"'x\u202ey' holds \u202e (RIGHT-TO-LEFT OVERRIDE)"),
    (["a", "\u2066b"], r"\u2066 (LEFT-TO-RIGHT ISOLATE)"),
    (["\ufeffa", "b"], r"\ufeff (ZERO WIDTH NO-BREAK SPACE)"),
    (["a\u00adb", "c"], r"\u00ad (SOFT HYPHEN)"),  # Cf in general
    (["a\u3164", "b"], r"\u3164 (HANGUL FILLER)"),
    (["a\x1b[31m", "b"], r"\u001b"),  # Cc: a terminal escape
    (["a", "a"], "'a' is repeated"),
]


@pytest.mark.parametrize("names,match", ALIKE)
def test_names_that_print_alike_are_refused_by_the_shared_validator(names, match):
    with pytest.raises(ValueError, match="rename") as caught:
        check_class_names(names)
    assert match in str(caught.value), str(caught.value)
    with pytest.raises(ModelError) as caught:  # the metadata of a model file: the same rule
        check_labels(names)


def test_names_are_kept_in_nfc_and_emoji_stay():
    assert check_class_names(["cafe\u0301", "robe d'été", "\u2764\ufe0f"]) == (
        "caf\u00e9", "robe d'été", "\u2764\ufe0f")  # fmt: skip


@pytest.mark.parametrize("names,match", ALIKE[:4])
def test_class_folders_that_print_alike_are_one_line(tmp_path, names, match):
    root = tmp_path / "d"
    for name in names:
        (root / name).mkdir(parents=True)
    result = invoke("train", "--data", root)
    assert_one_line_error(result)
    line = result.stderr  # the folders are listed in path order: either may come first
    names = match.split("'")[1::2]
    assert "class folder" in line and all(f"'{name}'" in line for name in names), line


@pytest.mark.parametrize("names,match", ALIKE[:4])
def test_npz_class_names_that_print_alike_are_one_line(tmp_path, names, match):
    x = np.zeros((12, 20, 20), np.uint8)
    y = np.arange(12) % 2
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y,
             class_names=np.array(names))  # fmt: skip
    assert_one_line_error(invoke("train", "--data", tmp_path / "d.npz"), match)


@pytest.mark.parametrize(
    "names,match",
    [
        (
            np.array(["a" * 300_000, "b"]),
            "class_names.npy is 2.3 MiB uncompressed; at most 1.0 MiB",
        ),
        (np.array([b"a", b"b"]), "class_names.npy: dtype |S1 is not text"),
    ],
)
def test_class_names_are_short_text(tmp_path, names, match):
    x = np.zeros((12, 20, 20), np.uint8)
    y = np.arange(12) % 2
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    assert_one_line_error(invoke("train", "--data", tmp_path / "d.npz"), match)
