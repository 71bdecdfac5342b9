"""An export's folder is replaced whole: built beside the old one, then swapped in by renames.

Files of one export must never sit beside files of another (a report that describes a
model the files did not come from, a ``bundle`` shipping both). So an export fills a
hidden sibling folder and, once its report is written, swaps it in::

    <out> -> .<out>.old-<pid>-<token>,  .<out>.partial-<pid>-<token> -> <out>,  remove the old

Readers see the old folder or the new one. A process killed before the first rename
leaves the old folder untouched; killed between the two, it leaves no ``<out>``, and the
next export into it (or a reader, :func:`recover`) renames the old folder back first.

Two things keep this away from folders that are not an export's own. A folder counts
as a leftover only if it has one of those hidden names *and* holds the :data:`MARKER`
file naming the same pid and random token, written by the export that made or renamed
it: a user's ``exports.old-1`` backup is never renamed into place or removed. And every
export, its swap included, holds an ``flock`` on the hidden lock file ``.<out>.lock``
beside the folder (never on the folder, whose inode moves with the renames), so a second
export is refused even between the two renames, and leftovers found under the lock are
a dead export's: the kernel drops the lock with its process. The lock file stays behind:
deleting it would let two processes lock two different files of one name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from edgecnn import _atomic
from edgecnn.errors import ConfigError
from edgecnn.run_folder import CALIBRATION_FILE, EXPORT_REPORT_FILE

PARTIAL = "partial"
OLD = "old"
MARKER = ".edgecnn-staging"  # inside each staging folder: "edgecnn export <pid> <token>"


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str]) -> Iterator[tuple[Path, Path]]:
    """Yield ``(final, partial)``: fill ``partial``; on success it replaces ``final`` whole.

    ``final``'s lock file is held for the block (a second export into it is refused).
    ``final`` need not exist; on any failure, Ctrl-C included, ``partial`` is removed
    and ``final`` keeps the old export (or stays missing).

    Raises:
        ConfigError: ``final`` holds files that are not an export (they would be
            deleted), is a file, cannot be written, or another export is writing it.
    """
    final = _named(Path(out))
    with contextlib.ExitStack() as stack:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            held = stack.enter_context(_locked(final))
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise ConfigError(f"cannot write to output folder {final}: {reason}") from None
        if not held:
            raise ConfigError(
                f"{final} is being written by another edgecnn export process; wait for it to finish"
            )
        _put_back(final)
        if (final.exists() or final.is_symlink()) and not final.is_dir():
            raise ConfigError(f"--out {final} is a file; an export writes a folder")
        check_replaceable(final)
        remove_stale(final)
        token = f"{os.getpid()}-{secrets.token_hex(8)}"
        partial = _staging_path(final, PARTIAL, token)
        partial.mkdir()
        try:
            _mark(partial, token)
            yield final, partial
            swap(partial, final, token)
        except BaseException:
            _discard(partial)
            raise


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


def swap(partial: Path, final: Path, token: str) -> None:
    """Put ``partial`` in ``final``'s place with two renames; remove the old folder.

    The old folder is marked before it is renamed aside, so that if this process is
    killed between the renames the next one knows the folder for an export's own.
    """
    with contextlib.suppress(OSError):  # the folder's own permissions, say group-writable
        os.chmod(partial, stat.S_IMODE(final.stat().st_mode))
    _atomic.sync_dir(partial)
    try:
        if final.is_dir():
            _mark(final, token)
        _atomic.replace_dir(partial, final, _staging_path(final, OLD, token), _discard)
    finally:
        # the new folder's marker, or the old folder's if it was put back
        (final / MARKER).unlink(missing_ok=True)


def recover(final: Path) -> None:
    """Put back the old folder of an export killed between its two renames.

    Only when ``final`` is missing and no export is running (it holds the lock file): a
    live export between its renames is left to finish.
    """
    if final.exists() or final.is_symlink() or not leftovers(final, OLD):
        return
    with contextlib.ExitStack() as stack:
        try:
            held = stack.enter_context(_locked(final))
        except OSError:  # a folder nobody may write: nothing can be renamed in it either
            return
        if held:
            _put_back(final)


def remove_stale(final: Path) -> None:
    """Remove what dead exports left beside ``final``; only under ``final``'s lock."""
    for stale in leftovers(final, PARTIAL) + leftovers(final, OLD):
        _discard(stale)
    pattern = _staging_pattern(final)
    for empty in _siblings(final):  # a removal killed after its marker went
        if pattern.fullmatch(empty.name) and not empty.is_symlink() and empty.is_dir():
            with contextlib.suppress(OSError):  # not empty: not ours, kept
                empty.rmdir()
    if final.is_dir():
        (final / MARKER).unlink(missing_ok=True)  # killed just before or after a rename


def leftovers(final: Path, kind: str) -> list[Path]:
    """``final``'s hidden sibling folders of ``kind`` that an export made and marked.

    A folder counts only if its name is ``.<name>.<kind>-<pid>-<token>`` and its
    :data:`MARKER` names that pid and token; anything else is a user's and left alone.
    """
    pattern = _staging_pattern(final)
    found = []
    for path in _siblings(final):
        match = pattern.fullmatch(path.name)
        if match and match["kind"] == kind and _marked(path, match["token"]):
            found.append(path)
    return found


def lock_path(final: Path) -> Path:
    """The hidden lock file an export of ``final`` holds: beside it, never renamed."""
    return final.with_name(f".{final.name}.lock")


def check_replaceable(final: Path) -> None:
    """``final`` must hold nothing but what exports write: replacing it deletes the rest.

    A run folder given as ``--out``, or one holding a user's own files, is refused.
    Hidden temporaries of a killed process are allowed (they are removed anyway).

    Raises:
        ConfigError: it holds other files.
    """
    if not final.is_dir():
        return
    known = export_names() | {MARKER}
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
def _locked(final: Path) -> Iterator[bool]:
    """Whether ``final``'s lock file was free; if so it is held here for the block.

    Raises:
        OSError: the lock file cannot be opened or made.
    """
    flags = os.O_RDONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(lock_path(final), flags, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False  # an export is running
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _put_back(final: Path) -> None:
    """Under the lock, with ``final`` missing: rename the newest marked old folder back."""
    if final.exists() or final.is_symlink():
        return
    for old in sorted(leftovers(final, OLD), key=_mtime, reverse=True):
        with contextlib.suppress(OSError):
            os.rename(old, final)
            (final / MARKER).unlink(missing_ok=True)
            _atomic.sync_dir(final.parent)
            return


def _siblings(final: Path) -> list[Path]:
    try:
        return list(final.parent.iterdir())
    except OSError:  # no parent folder yet: nothing beside final
        return []


def _staging_path(final: Path, kind: str, token: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-{token}")


def _staging_pattern(final: Path) -> re.Pattern[str]:
    name, kinds = re.escape(final.name), f"{PARTIAL}|{OLD}"
    return re.compile(rf"\.{name}\.(?P<kind>{kinds})-(?P<token>\d+-[0-9a-f]{{16}})")


def _mark(folder: Path, token: str) -> None:
    """Write the marker that makes ``folder`` an export's own staging folder."""
    _atomic.write_synced(folder / MARKER, _marker_text(token).encode())
    _atomic.sync_dir(folder)


def _marked(folder: Path, token: str) -> bool:
    """Whether ``folder`` is a real folder holding the marker for ``token``."""
    marker = folder / MARKER
    if folder.is_symlink() or not folder.is_dir():
        return False
    if marker.is_symlink() or not marker.is_file():  # a FIFO would block the read
        return False
    try:
        with open(marker, "rb") as f:
            return f.read(200) == _marker_text(token).encode()
    except OSError:
        return False


def _marker_text(token: str) -> str:
    pid, _, random = token.partition("-")
    return f"edgecnn export {pid} {random}\n"


def _discard(folder: Path) -> None:
    """Remove a staging folder, its marker last: killed midway, it is still known as ours."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if all(entry.name == MARKER for entry in folder.iterdir()):  # else: try next time
            (folder / MARKER).unlink(missing_ok=True)
            folder.rmdir()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
