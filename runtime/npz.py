"""``.npz`` archives from untrusted files: every member checked against a byte budget first.

An ``.npz`` is a zip archive, and a few megabytes of deflated zeros inflate to gigabytes;
its directory may also lie about sizes. :class:`ArchiveReader` checks the archive's end
record (entries, directory size) before zipfile parses the directory, and each member's
compression, ``.npy`` header and declared size against a :class:`Budget` before any of
its data is inflated; the data is then inflated in chunks into a buffer of exactly the
header's size (:func:`~edgecnn.runtime.npy.inflate`), never more.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np

from edgecnn._files import format_size
from edgecnn.runtime.npy import NUMERIC_KINDS, NpyError, NpyHeader, inflate, read_header


@dataclass(frozen=True)
class Budget:
    """What one ``.npz`` may hold, checked from its directory before any data is inflated."""

    #: Entries in the archive, whether read or not.
    members: int
    #: Uncompressed bytes of one member.
    member_bytes: int
    #: Uncompressed bytes of every member read, together.
    total_bytes: int
    #: What the archive holds, for messages: "training data", "a weights file".
    what: str = "an archive"
    #: Bytes of the zip central directory (zipfile reads it whole).
    directory_bytes: int = 1 << 20


class ArchiveReader:
    """The ``.npy`` members of a zip archive, each checked and inflated within a :class:`Budget`.

    Opening checks the archive's end record (entries, directory size) before zipfile
    parses the directory; :meth:`header` checks a member's compression, its declared size
    and its ``.npy`` header (inflating only the header's bytes); :meth:`read` inflates the
    data into a buffer the header sized, counting every byte against the budget.

    Raises (every method):
        NpyError: a refused archive or member, in one sentence.
        ARCHIVE_ERRORS: a damaged archive (zipfile's own errors).
    """

    def __init__(self, file: IO[bytes], budget: Budget) -> None:
        self.budget = budget
        _check_end_record(file, budget)
        self.archive = zipfile.ZipFile(file)
        infos = self.archive.infolist()
        if len(infos) > budget.members:
            raise NpyError(f"it has {len(infos):,} members; {budget.what} has at most "
                           f"{budget.members}")  # fmt: skip
        self.members = {info.filename: info for info in infos}
        self.declared = self.used = 0

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()

    def header(self, name: str, kinds: str = NUMERIC_KINDS, max_bytes: int | None = None
               ) -> NpyHeader:  # fmt: skip
        """The checked header of member ``name``: nothing of its data is inflated yet.

        Raises:
            NpyError: compressed other than stored or deflated, encrypted, larger than
                ``max_bytes`` (else the budget's per member) or than what is left of the
                budget, a refused dtype, empty, or a size in the directory that is not
                what the header implies.
        """
        info = self.members[name]
        limit = self.budget.member_bytes if max_bytes is None else max_bytes
        if info.flag_bits & 0x1:
            raise NpyError(f"{name} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise NpyError(f"{name} is compressed with method {info.compress_type}; "
                           "only stored or deflated (np.savez, np.savez_compressed)")  # fmt: skip
        with self.archive.open(info) as stream:
            try:
                header = read_header(stream, kinds)
            except NpyError as e:
                raise NpyError(f"{name}: {e}") from None
        if header.items == 0:
            raise NpyError(f"{name} is empty: shape {header.shape} holds no values")
        implied = header.offset + header.nbytes
        if implied != info.file_size:
            raise NpyError(
                f"{name}: the archive's directory says {info.file_size:,} bytes but its "
                f"header ({header.dtype}, shape {header.shape}) means {implied:,}"
            )
        if implied > limit:
            most = (
                budget_text(self.budget, limit)
                if max_bytes is None
                else f"at most {format_size(limit)}"
            )
            raise NpyError(f"{name} is {format_size(implied)} uncompressed; {most}")
        self.declared += implied
        if self.declared > self.budget.total_bytes:
            raise NpyError(
                f"its arrays are more than {format_size(self.budget.total_bytes)} uncompressed "
                f"together; {budget_text(self.budget, self.budget.total_bytes)}"
            )
        return header

    def read(self, name: str, header: NpyHeader) -> np.ndarray:
        """Member ``name``'s array, inflated in chunks to exactly ``header``'s size.

        Raises:
            NpyError: the archive's budget would be exceeded, or the data is shorter or
                longer than the header says.
        """
        if self.used + header.nbytes > self.budget.total_bytes:
            raise NpyError(
                f"its arrays are more than {format_size(self.budget.total_bytes)} together; "
                f"{budget_text(self.budget, self.budget.total_bytes)}"
            )
        self.used += header.nbytes
        with self.archive.open(self.members[name]) as stream:
            stream.read(header.offset)  # the header, checked already
            try:
                return inflate(stream, header)
            except NpyError as e:
                raise NpyError(f"{name}: {e}") from None


def budget_text(budget: Budget, limit: int) -> str:
    """``training data may hold at most 4.0 GiB``."""
    return f"{budget.what} may hold at most {format_size(limit)}"


_END = b"PK\x05\x06"
_END64 = b"PK\x06\x06"
_LOCATOR64 = b"PK\x06\x07"


def _check_end_record(file: IO[bytes], budget: Budget) -> None:
    """Entries and directory size, from the end record(s) zipfile will trust, within budget.

    Found as zipfile finds them (the last 22 bytes, else the last signature in the final
    64 KiB, and a zip64 record just before); an archive without one is left to zipfile.
    """
    size = file.seek(0, io.SEEK_END)
    start = max(0, size - (1 << 16) - 22)
    file.seek(start)
    tail = file.read()
    where = len(tail) - 22 if tail[-22:-18] == _END and tail[-2:] == b"\0\0" else tail.rfind(_END)
    if where < 0 or len(tail) - where < 22:
        return
    entries, directory = struct.unpack_from("<HI", tail, where + 10)
    records = [(entries, directory)]
    locator = start + where - 20
    if locator >= 56:
        file.seek(locator)
        if file.read(4) == _LOCATOR64:
            file.seek(locator - 56)
            record = file.read(56)
            if record[:4] == _END64:
                records.append(struct.unpack_from("<QQ", record, 32))
    for entries, directory in records:
        if entries > budget.members:
            raise NpyError(f"it has {entries:,} members; {budget.what} has at most "
                           f"{budget.members}")  # fmt: skip
        if directory > budget.directory_bytes:
            raise NpyError(f"its zip directory is {format_size(directory)}; at most "
                           f"{format_size(budget.directory_bytes)}")  # fmt: skip
    file.seek(0)
