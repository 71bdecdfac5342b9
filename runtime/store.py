"""The model store of a device: ``HOME/models/<name>/<version>/`` and the ``current`` link.

Each version folder holds a model file, its sidecar, its verify reference and
``manifest.json`` (the update's ``update.json``). ``current`` and ``previous`` are
relative symlinks to ``<name>/<version>``. Nothing is ever changed in place, so a power
cut at any moment leaves a ``current`` that points at a complete version:

- a version is written as ``<name>/.<version>.tmp-XXXX``, flushed, then renamed;
- a version is verified (unless added with ``--no-verify``, which its manifest records)
  while it still has its temporary name, so a version with its own name is a verified
  one;
- a link is made under a temporary name beside it, then renamed over the old one with
  ``os.replace``, and the folder is flushed;
- when both links change (a switch, a rollback), the new ``previous`` is first written
  as ``.previous.pending``, then ``current`` is switched, then the pending link is
  renamed to ``previous``. After a cut, :meth:`Store.locked` finishes the change (when
  ``current`` was switched) or drops it (when not), so the two links never end up on
  the same version;
- a version is removed by renaming it to a temporary name first.

What a cut leaves behind (temporary folders and links) is removed by the next command
that writes to the store, under the store's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn._atomic import exclusive, sync_dir, write_synced
from edgecnn.runtime.errors import InputError, ModelError
from edgecnn.runtime.manifest import FILE_NAME

#: What ``name`` and ``version`` look like: a plain file name, never hidden, never ``..``.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MANIFEST = "manifest.json"
CURRENT = "current"
PREVIOUS = "previous"
#: The next ``previous`` while ``current`` is being switched (see the module's doc).
PENDING = ".previous.pending"
#: Versions kept per name by :meth:`Store.prune` (current and previous always stay).
KEEP = 3
_MANIFEST_MAX_BYTES = 1 << 20
#: The infix of every temporary name in the store: ``.<what>.tmp-<random>``.
TMP = ".tmp-"


def home() -> Path:
    """``EDGECNN_HOME`` if set, else the Python prefix (install.sh's venv)."""
    value = os.environ.get("EDGECNN_HOME")
    return Path(value) if value else Path(sys.prefix)


def check_name(value: str, what: str) -> str:
    """``value`` if it is a valid name or version.

    Raises:
        InputError: it is not.
    """
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InputError(
            f"{what} {str(value)[:80]!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if value in (CURRENT, PREVIOUS):
        raise InputError(f"{what} {value!r} is taken by the store's own link; choose another")
    return value


@dataclass(frozen=True)
class Version:
    """One installed version: its folder and its manifest."""

    name: str
    version: str
    folder: Path
    manifest: Mapping[str, Any]

    @property
    def model(self) -> Path:
        """The model file of this version."""
        return self.folder / str(self.manifest.get("model", ""))

    @property
    def label(self) -> str:
        """``name version``, as the commands print it."""
        return f"{self.name} {self.version}"

    @property
    def created(self) -> str:
        """When it was made (the manifest's ``created``), or an empty string."""
        created = self.manifest.get("created")
        return created if isinstance(created, str) else ""

    @property
    def broken(self) -> bool:
        """Its model file is missing (removed by hand, say)."""
        return not self.model.is_file()

    @property
    def verified(self) -> bool:
        """False when it was added with ``--no-verify`` (its manifest says so)."""
        return self.manifest.get("verified") is not False


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a version folder.

    Raises:
        ModelError: it is missing or not a JSON object naming a model file in the folder.
    """
    path = folder / MANIFEST
    try:
        with open(path, "rb") as f:
            raw = f.read(_MANIFEST_MAX_BYTES + 1)
        data = json.loads(raw) if len(raw) <= _MANIFEST_MAX_BYTES else None
    except (OSError, ValueError, RecursionError) as e:
        raise ModelError(f"{path} cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("model"), str)
        or not (FILE_NAME.fullmatch(data["model"]))
    ):
        raise ModelError(f"{path} is not a store manifest naming its model file")
    return data


class Store:
    """The store under ``root`` (``HOME/models``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else home() / "models"

    # Reading ---------------------------------------------------------------------------

    def versions(self, name: str | None = None) -> list[Version]:
        """The complete versions installed, oldest first per name (by created, version)."""
        found = []
        if not self.root.is_dir():
            return []
        for name_dir in sorted(self.root.iterdir()):
            if not NAME.fullmatch(name_dir.name) or name_dir.is_symlink():
                continue
            if name is not None and name_dir.name != name:
                continue
            if not name_dir.is_dir():
                continue
            for folder in name_dir.iterdir():
                if NAME.fullmatch(folder.name) and folder.is_dir() and not folder.is_symlink():
                    with contextlib.suppress(ModelError):
                        found.append(
                            Version(name_dir.name, folder.name, folder, read_manifest(folder))
                        )
        return sorted(found, key=lambda v: (v.name, v.created, v.version))

    def link(self, which: str) -> Version | None:
        """The version ``current`` or ``previous`` points at, or None.

        Raises:
            ModelError: the link points at something that is not a complete version.
        """
        path = self.root / which
        if not path.is_symlink():
            return None
        target = os.readlink(path)
        parts = Path(target).parts
        if len(parts) != 2 or not all(NAME.fullmatch(p) for p in parts):
            raise ModelError(f"{path} points at {target!r}, not at <name>/<version>")
        folder = self.root / parts[0] / parts[1]
        return Version(parts[0], parts[1], folder, read_manifest(folder))

    def current(self) -> Version | None:
        """The current version, or None when nothing is installed or ``current`` is broken.

        A ``current`` that points at no complete version (see :meth:`broken_current`) is
        taken as none, so that ``use`` and ``update`` can repair it.
        """
        try:
            return self.link(CURRENT)
        except (ModelError, OSError):
            return None

    def broken_current(self) -> str | None:
        """Where ``current`` points when it is a link to no complete version, else None."""
        path = self.root / CURRENT
        try:
            if not path.is_symlink():
                return None
            self.link(CURRENT)
        except (ModelError, OSError):
            try:
                return os.readlink(path)
            except OSError:
                return "?"
        return None

    def previous(self) -> Version | None:
        """The version ``rollback`` returns to, or None."""
        which = PREVIOUS
        with contextlib.suppress(OSError):
            # A switch cut short after ``current`` changed: the pending link is previous.
            if os.readlink(self.root / PENDING) != os.readlink(self.root / CURRENT):
                which = PENDING
        try:
            return self.link(which)
        except (ModelError, OSError):
            return None  # removed by hand: there is nothing to return to

    def find(self, version: str, name: str | None = None) -> Version:
        """The installed ``version`` (of ``name``, else of any name).

        Raises:
            InputError: there is none, or several names have it and ``name`` is not given.
        """
        matches = [v for v in self.versions(name) if v.version == version]
        if not matches:
            of = f" of {name}" if name else ""
            raise InputError(f"no version {version}{of} is installed; edgecnn models list")
        if len(matches) > 1:
            names = ", ".join(v.name for v in matches)
            raise InputError(f"version {version} is installed for {names}: add --name")
        return matches[0]

    # Writing (under :meth:`locked`) ---------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[Store]:
        """Hold the store's lock for the block, after cleaning what a power cut left."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive(self.root, "edgecnn models"):
            self.recover()
            self.clean()
            yield self

    def recover(self) -> None:
        """Finish or drop a change of both links that a cut interrupted (``PENDING``)."""
        pending = self.root / PENDING
        if not pending.is_symlink():
            if pending.exists():
                _remove(pending)
            return
        try:
            switched = os.readlink(pending) != os.readlink(self.root / CURRENT)
        except OSError:
            switched = True  # no current: the pending previous is all there is
        if switched:
            os.replace(pending, self.root / PREVIOUS)
        else:
            pending.unlink()
        sync_dir(self.root)

    def clean(self) -> None:
        """Remove temporary folders and links an interrupted command left behind."""
        for entry in _temporaries(self.root):
            _remove(entry)
        for name_dir in self.root.iterdir():
            if NAME.fullmatch(name_dir.name) and name_dir.is_dir() and not name_dir.is_symlink():
                for entry in _temporaries(name_dir):
                    _remove(entry)

    def scratch(self, what: str) -> Path:
        """A fresh temporary folder in the store (removed by :meth:`clean` if left)."""
        path = self.root / f".{what}{TMP}{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        return path

    def install(self, name: str, version: str, files: Mapping[str, Path], manifest: bytes,
                scratch: Path | None = None,
                check: Callable[[Version], None] | None = None) -> Version:  # fmt: skip
        """Make ``<name>/<version>/`` from ``files`` (its names -> where they are now).

        Files directly in ``scratch`` (an update's own folder from :meth:`scratch`) are
        moved; every other file is copied, wherever it is. The folder is complete and
        flushed, and ``check`` has passed on it, before it gets its name: a cut or a
        failed check leaves only a temporary folder, removed by the next command.

        Raises:
            InputError: that version is installed already, or a name is not plain.
            Exception: whatever ``check`` raises (the temporary folder is removed).
        """
        check_name(name, "name")
        check_name(version, "version")
        name_dir = self.root / name
        final = name_dir / version
        if final.exists() or final.is_symlink():
            raise InputError(f"{name} {version} is installed already: edgecnn models use "
                             f"{version} --name {name} switches to it")  # fmt: skip
        if not name_dir.is_dir():
            name_dir.mkdir(parents=True, exist_ok=True)
            sync_dir(self.root)
        tmp = name_dir / f".{version}{TMP}{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            for file_name, source in files.items():
                if not FILE_NAME.fullmatch(file_name) or file_name == MANIFEST:
                    raise InputError(f"{file_name!r} is not a plain file name for the store")
                _place(source, tmp / file_name, scratch)
            write_synced(tmp / MANIFEST, manifest)
            sync_dir(tmp)
            if check is not None:
                check(Version(name, version, tmp, read_manifest(tmp)))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, final)
        sync_dir(name_dir)
        return Version(name, version, final, read_manifest(final))

    def switch(self, new: Version) -> Version | None:
        """Make ``new`` current; the current one becomes ``previous``. Returns that one.

        A ``current`` broken by hand is replaced, not kept as previous.
        """
        old = self.current()
        if old is not None and old.folder != new.folder:
            self._set_links(new, old)
            return old
        self._set_links(new, None)
        return self.previous()

    def rollback(self) -> Version:
        """Swap ``current`` and ``previous``; returns the new current.

        Raises:
            InputError: there is no previous version, or its model file is missing.
        """
        back, now = self.previous(), self.current()
        if back is None or not back.folder.is_dir() or (now and now.folder == back.folder):
            raise InputError("there is no previous version to roll back to")
        if back.broken:
            raise InputError(f"the previous version {back.label} is broken (its model file "
                             f"{back.model.name} is missing); edgecnn models use VERSION "
                             "switches to another")  # fmt: skip
        self._set_links(back, now)
        if now is None:  # current was broken: nothing to come back to after this
            (self.root / PREVIOUS).unlink(missing_ok=True)
            sync_dir(self.root)
        return back

    def remove(self, version: Version) -> None:
        """Remove an installed version (never the current one).

        Raises:
            InputError: it is the current version.
        """
        current = self.current()
        if current is not None and current.folder == version.folder:
            raise InputError(f"{version.label} is the current version: switch to another "
                             "first (edgecnn models use VERSION or rollback)")  # fmt: skip
        previous = self.previous()
        if previous is not None and previous.folder == version.folder:
            (self.root / PREVIOUS).unlink()
            sync_dir(self.root)
        self.discard(version.folder)

    def discard(self, folder: Path) -> None:
        """Remove a version folder: renamed to a temporary name first, so never half there."""
        aside = folder.with_name(f".{folder.name}{TMP}{secrets.token_hex(4)}")
        os.rename(folder, aside)
        sync_dir(folder.parent)
        shutil.rmtree(aside, ignore_errors=True)

    def prune(self, name: str, keep: int = KEEP) -> list[Version]:
        """Remove all but the newest ``keep`` versions of ``name``, and current and previous."""
        kept = {v.folder for v in (self.current(), self.previous()) if v is not None}
        versions = self.versions(name)
        kept |= {v.folder for v in versions[-keep:]} if keep > 0 else set()
        removed = [v for v in versions if v.folder not in kept]
        for v in removed:
            self.discard(v.folder)
        return removed

    def _set_links(self, current: Version, previous: Version | None) -> None:
        """Point ``current`` (and ``previous`` when given) at these versions, cut-safe.

        The new ``previous`` is written as :data:`PENDING` first and renamed into place
        last; :meth:`recover` finishes or drops it after a cut.
        """
        pending = self.root / PENDING
        if previous is not None:
            _remove(pending)
            os.symlink(f"{previous.name}/{previous.version}", pending)
            sync_dir(self.root)
        self._set_link(CURRENT, current)
        if previous is not None:
            os.replace(pending, self.root / PREVIOUS)
            sync_dir(self.root)

    def _set_link(self, which: str, version: Version) -> None:
        """Point ``which`` at ``version``: a new link under a temporary name, renamed over."""
        tmp = self.root / f".{which}{TMP}{secrets.token_hex(4)}"
        os.symlink(f"{version.name}/{version.version}", tmp)
        try:
            os.replace(tmp, self.root / which)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sync_dir(self.root)


def current_model() -> Path | None:
    """The model file of the current version, or None when no model is installed.

    Raises:
        ModelError: ``current`` exists but does not point at a complete version.
    """
    store = Store()
    broken = store.broken_current()
    if broken is not None:
        raise ModelError(f"{store.root / CURRENT} is a broken link to {broken}; edgecnn models "
                         "use VERSION repairs it")  # fmt: skip
    version = store.current()
    if version is not None and version.broken:
        raise ModelError(f"the current version {version.label} is broken (its model file "
                         f"{version.model.name} is missing); edgecnn models use VERSION "
                         "switches to another")  # fmt: skip
    return version.model.resolve() if version is not None else None


def resolve_model(model: Path | None) -> Path:
    """``model``, or the current model when it is None.

    Raises:
        InputError: no model is given and none is installed.
    """
    if model is not None:
        return model
    found = current_model()
    if found is None:
        raise InputError(
            f"no MODEL given and no current model installed ({home() / 'models' / CURRENT}): "
            "give a model file"
        )
    return found


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.glob(f".*{TMP}*") if p.name.startswith(".")]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _place(source: Path, target: Path, scratch: Path | None) -> None:
    """Move ``source`` to ``target`` if it is directly in ``scratch``, else copy it; flushed.

    Only an update's own scratch folder gives its files away: a file anywhere else, an
    installed version's included, is copied.
    """
    if scratch is not None and source.parent == scratch:
        os.rename(source, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())
        return
    with open(source, "rb") as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
