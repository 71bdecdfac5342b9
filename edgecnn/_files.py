"""Reading files a user names: regular files only, never more than a stated size.

A path may point at ``/dev/zero``, a FIFO or a socket (directly or through a symlink),
or at a file far larger than anything edgecnn reads. Reading such a thing whole would
hang or exhaust memory, so every read goes through :func:`read_regular_file`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MiB = 1 << 20


def as_path(path: object, error: type[Exception], kind: str) -> Path:
    """``path`` (str, bytes or path-like) as a :class:`Path`, or ``error`` for anything else."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise error(f"{kind} must be a file path, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text or "\0" in text:
        raise error(f"{kind} path {text!r} is not a usable path")
    return Path(text)


def format_size(n: int) -> str:
    """``1048576`` -> ``"1.0 MiB"``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_regular_file(
    path: str | os.PathLike[str] | bytes, limit: int, error: type[Exception], kind: str
) -> Path:
    """``path``, once it is certain to be a regular, non-empty file of at most ``limit`` bytes.

    For files that are then memory-mapped or streamed rather than read whole.

    Raises:
        error: missing, not a regular file, empty, or over ``limit``.
    """
    path = as_path(path, error, kind)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except OSError as e:
        raise error(f"{path} cannot be read: {e.strerror or type(e).__name__}") from None
    _check_stat(info, path, limit, error, kind)
    if not info.st_size:
        raise error(f"{path} is empty")
    return path


def _check_stat(
    info: os.stat_result, path: Path, limit: int, error: type[Exception], kind: str
) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path} is a directory, not {kind}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is not a regular file (a device, pipe or socket), not {kind}")
    if info.st_size > limit:
        raise error(
            f"{path} is {format_size(info.st_size)}; {kind} may be at most {format_size(limit)}"
        )


def read_regular_file(
    path: str | os.PathLike[str] | bytes,
    limit: int,
    error: type[Exception],
    kind: str,
) -> bytes:
    """The whole, non-empty contents of the regular file ``path``, at most ``limit`` bytes.

    ``kind`` names what the file should be ("a model file", "an image") in messages.
    Symlinks are followed, but what they point at must be a regular file too. The file
    is opened without blocking, so a FIFO with no writer is refused, not waited on.

    Raises:
        error: missing, unreadable, not a regular file, empty, or over ``limit``.
    """
    path = as_path(path, error, kind)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except OSError as e:
        raise error(f"{path} cannot be read: {e.strerror or type(e).__name__}") from None
    try:
        _check_stat(os.fstat(fd), path, limit, error, kind)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 22))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise error(f"{path} cannot be read: {e.strerror or type(e).__name__}") from None
    finally:
        os.close(fd)
    if size > limit:  # it grew while being read
        raise error(f"{path} is larger than {format_size(limit)}, the limit for {kind}")
    if not size:
        raise error(f"{path} is empty")
    return b"".join(chunks)
