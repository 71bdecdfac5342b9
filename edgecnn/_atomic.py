"""Write files so that readers only ever see the old or the new version, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from edgecnn import _json

# mkstemp creates files readable by their owner only; outputs get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_path(final: str | os.PathLike[str]) -> Path:
    """Create an empty, hidden temporary file beside ``final``, with the same suffix.

    The suffix is kept because some writers (Keras, matplotlib) and readers (the runtime)
    choose the format from it.
    """
    final = Path(final)
    fd, name = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent
    )
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def temporary_dir(final: str | os.PathLike[str]) -> Path:
    """Create an empty, hidden temporary folder beside the folder ``final``."""
    final = Path(final)
    folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(folder, 0o777 & ~_UMASK)  # mkdtemp's are private; outputs get the usual mode
    return folder


def replace_dir(
    folder: str | os.PathLike[str],
    final: str | os.PathLike[str],
    aside: str | os.PathLike[str] | None = None,
    discard: Callable[[Path], object] | None = None,
) -> None:
    """Move ``folder`` to ``final``, replacing a folder there.

    The old folder is first renamed aside (to ``aside``, else a new hidden temporary
    folder) and removed after the new one is in place (by ``discard``, else
    ``shutil.rmtree``), so ``final`` is missing for the time between two renames, never
    half written. If the second rename fails, the old folder is put back. The renames are
    flushed to disk.
    """
    import shutil

    folder, final = Path(folder), Path(final)
    old = None
    if final.is_dir() and not final.is_symlink():
        old = Path(aside) if aside is not None else temporary_dir(final)
        os.replace(final, old)  # over the empty folder temporary_dir made
    elif final.exists() or final.is_symlink():
        final.unlink()
    try:
        os.replace(folder, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    sync_dir(final.parent)
    if old is not None:
        if discard is None:
            shutil.rmtree(old, ignore_errors=True)
        else:
            discard(old)


def sync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder to disk, so that the renames in it survive a power cut."""
    with contextlib.suppress(OSError):  # not every file system syncs folders
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` if the block succeeds.

    On any exception, Ctrl-C included, the temporary file is removed and ``final`` is
    left untouched.
    """
    tmp = temporary_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_synced(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk, so that a rename after it is durable."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        write_synced(tmp, data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: object) -> None:
    """Atomically write ``obj`` as indented, strict JSON (never NaN) to ``path``."""
    write_text(path, _json.dumps(obj) + "\n")


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and check that files can be created in it.

    Raises:
        ConfigError: the folder cannot be created or written to.
    """
    from edgecnn.errors import ConfigError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"cannot write to output folder {path}: {reason}") from None
    return path


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str], fresh: bool = False) -> Iterator[Path]:
    """:func:`ensure_writable_dir` for the block, undone if the block fails early.

    A folder it made (or that the caller just made: ``fresh``) is removed again if the
    block fails before writing anything into it.
    """
    path = Path(path)
    created = fresh or not path.exists()
    folder = ensure_writable_dir(path)
    try:
        yield folder
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike[str], what: str = "edgecnn") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` for the block, after removing stale temporaries.

    Under the lock no other edgecnn process writes to ``folder``, so any temporary file
    of :func:`temporary_path` found there was left by a killed process (SIGKILL skips
    every cleanup) and is removed.

    Raises:
        ConfigError: another process holds the lock.
    """
    import fcntl
    import shutil

    from edgecnn.errors import ConfigError

    folder = Path(folder)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{folder} is being written by another {what} process; wait for it to finish"
            ) from None
        for stale in folder.glob(".*.tmp*"):
            if stale.is_symlink():
                continue
            if stale.is_file():
                stale.unlink(missing_ok=True)
            elif stale.is_dir() and stale.name.endswith(".tmp"):  # from temporary_dir
                shutil.rmtree(stale, ignore_errors=True)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock
