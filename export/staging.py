"""An export's folder is replaced whole: built beside the old one, then swapped in by renames.

Files of one export must never sit beside files of another (a report that describes a
model the files did not come from, a ``bundle`` shipping both). So an export fills a
sibling folder ``<out>.partial-<pid>`` and, once its report is written, swaps it in::

    <out> -> <out>.old-<pid>,  <out>.partial-<pid> -> <out>,  remove <out>.old-<pid>

Readers see the old folder or the new one. A process killed before the first rename
leaves the old folder untouched; killed between the two, it leaves no ``<out>``, and the
next export into it renames ``<out>.old-<pid>`` back first. Leftovers are removed only
when their owner is dead: the owner holds an ``flock`` on each (the partial folder, and
through :func:`edgecnn._atomic.exclusive` the old one), which the kernel drops with the
process, so a live export is never disturbed (a pid can be reused; a lock cannot).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from edgecnn import _atomic
from edgecnn.errors import ConfigError
from edgecnn.run_folder import CALIBRATION_FILE, EXPORT_REPORT_FILE

PARTIAL = ".partial-"
OLD = ".old-"


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str]) -> Iterator[tuple[Path, Path]]:
    """Yield ``(final, partial)``: fill ``partial``; on success it replaces ``final`` whole.

    ``final`` is locked for the block (a second export into it is refused), made if
    missing and removed again if the block fails before anything replaced it. On any
    failure, Ctrl-C included, ``partial`` is removed and ``final`` keeps the old export.

    Raises:
        ConfigError: ``final`` holds files that are not an export (they would be
            deleted), or another export is writing it.
    """
    final = _named(Path(out))
    recover(final)
    with _atomic.output_folder(final) as final, _atomic.exclusive(final, "edgecnn export"):
        check_replaceable(final)
        remove_stale(final)
        partial = final.with_name(f"{final.name}{PARTIAL}{os.getpid()}")
        partial.mkdir()
        held = os.open(partial, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(held, fcntl.LOCK_EX)  # "alive" for remove_stale of other exports
            try:
                yield final, partial
                swap(partial, final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        finally:
            os.close(held)


def _named(final: Path) -> Path:
    """``final`` as a folder with a name and a parent, which can be renamed.

    Raises:
        ConfigError: it is the current folder (a shell in it would be left in a deleted
            folder) or the root.
    """
    if final.is_symlink() and final.is_dir():
        final = final.resolve()  # replace the folder the link names, not the link
    if final.name in ("", ".", ".."):
        final = Path(os.path.abspath(final))
    if not final.name or (final.is_dir() and final.resolve() == Path.cwd().resolve()):
        raise ConfigError(
            f"--out {final} is the current folder (or the root), which an export cannot "
            "replace; give it a folder inside, such as exports"
        )
    return final


def swap(partial: Path, final: Path) -> None:
    """Put ``partial`` in ``final``'s place with two renames; remove the old folder."""
    with contextlib.suppress(OSError):  # the folder's own permissions, say group-writable
        os.chmod(partial, stat.S_IMODE(final.stat().st_mode))
    _sync_dir(partial)
    old = final.with_name(f"{final.name}{OLD}{os.getpid()}")
    os.replace(final, old)
    try:
        os.replace(partial, final)
    except BaseException:
        os.replace(old, final)  # the old export stays
        raise
    _sync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(final: Path) -> None:
    """Put back the old folder of an export killed between its two renames.

    Only when ``final`` is missing and the old folder's owner is dead; a live export
    between its renames is left to finish.
    """
    if final.exists() or final.is_symlink():
        return
    olds = sorted(leftovers(final, OLD), key=_mtime, reverse=True)
    for old in olds:
        with _claimed(old) as dead:
            if dead:
                with contextlib.suppress(OSError):  # another process was quicker
                    os.rename(old, final)
                    return


def remove_stale(final: Path) -> None:
    """Remove the partial and old folders that dead exports left beside ``final``."""
    for stale in leftovers(final, PARTIAL) + leftovers(final, OLD):
        with _claimed(stale) as dead:
            if dead:
                shutil.rmtree(stale, ignore_errors=True)


def leftovers(final: Path, kind: str) -> list[Path]:
    """``final``'s sibling folders ``<name><kind><pid>`` (never symlinks)."""
    prefix = f"{final.name}{kind}"
    return [
        p
        for p in final.parent.glob(f"{_glob_escape(prefix)}*")
        if p.name[len(prefix) :].isdigit() and p.is_dir() and not p.is_symlink()
    ]


def check_replaceable(final: Path) -> None:
    """``final`` must hold nothing but what exports write: replacing it deletes the rest.

    A run folder given as ``--out``, or one holding a user's own files, is refused.
    Hidden temporaries of a killed process are allowed (they are removed anyway).

    Raises:
        ConfigError: it holds other files.
    """
    if not final.is_dir():
        return
    known = export_names()
    foreign = sorted(
        p.name
        for p in final.iterdir()
        if p.name not in known and not (p.name.startswith(".") and ".tmp" in p.name)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(
            f"{final} holds files an export does not write ({shown}); an export replaces "
            "its whole folder, so give --out an empty or new folder, or an earlier export's"
        )


def export_names() -> set[str]:
    """Every name an export (or ``edgecnn evaluate`` on one of its files) puts in its folder."""
    from edgecnn.export.formats import FORMATS
    from edgecnn.runtime.metadata import sidecar_path
    from edgecnn.runtime.verify_reference import reference_path

    names = {EXPORT_REPORT_FILE, CALIBRATION_FILE}
    for spec in FORMATS.values():
        for precision in spec.precisions:
            name = Path(spec.file_name(precision))
            names |= {name.name, sidecar_path(name).name, reference_path(name).name}
            names |= {f"{name.name}.rejected", f"{name.name}.evaluation"}
    return names


@contextlib.contextmanager
def _claimed(folder: Path) -> Iterator[bool]:
    """Whether ``folder``'s owner is dead; if so its lock is held here for the block."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False  # its export is still running
            return
        yield True
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    """Flush a folder to disk, so that the renames in it survive a power cut."""
    with contextlib.suppress(OSError):  # not every file system syncs folders
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
