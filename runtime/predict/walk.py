"""How ``edgecnn predict`` walks a folder, or the folders a glob pattern reaches.

One rule for both: hidden names are skipped, links to folders are never followed (so
each real folder is read once, and a link back to a parent cannot make the walk
endless), and entries come in sorted path order, a folder's contents where its name
sorts. A pattern's matches come one at a time, as the walk finds them. Either walk is
refused in one line once it has read :data:`MAX_SCANNED` entries (``/proc/**``, a whole
disk, a folder of millions of files) rather than left to run on: entries are counted as
they are read, before a folder's are sorted, so one huge folder stops too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from fnmatch import translate

from edgecnn.runtime.errors import InputError

#: Files and folders one walk (a folder argument, or a pattern's) may read: far more than
#: any picture collection holds, and still a short wait (docs/benchmarks.md, "folder walk
#: limit").
MAX_SCANNED = 2_000_000
GLOB_CHARS = frozenset("*?[")
_ANY_FOLDERS = "**"


def folder_files(
    folder: str, wanted: Callable[[str], bool], limit: int | None = None
) -> tuple[list[str], list[str]]:
    """The files under ``folder`` whose names are ``wanted``, in path order, and the others.

    An explicit stack rather than recursion: a folder tree may be deeper than Python's
    recursion limit.

    Raises:
        InputError: a folder that cannot be read, or a walk that would read more than
            ``limit`` entries (:data:`MAX_SCANNED` if None).
    """
    limit = MAX_SCANNED if limit is None else limit
    budget = _Budget(
        limit,
        f"{folder}: scanned {limit:,} files and folders and more remain: name a narrower folder",
    )
    found: list[str] = []
    others: list[str] = []
    stack = [iter(_listing(folder, budget, strict=True))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif entry.name.startswith("."):
            continue
        elif entry.is_dir(follow_symlinks=False):
            stack.append(iter(_listing(entry.path, budget, strict=True)))
        elif wanted(entry.name):
            found.append(entry.path)
        else:
            others.append(entry.path)
    return found, others


def is_pattern(argument: str) -> bool:
    """Whether ``argument`` holds glob characters (``*``, ``?``, ``[``)."""
    return not GLOB_CHARS.isdisjoint(argument)


def pattern_matches(pattern: str, limit: int | None = None) -> Iterator[str]:
    """The files and folders ``pattern`` matches, in path order, as the walk finds them.

    As Python's ``glob(recursive=True)`` matches, with the folder rule above: ``*``,
    ``?`` and ``[...]`` match within one name, never a leading dot unless the pattern's
    name starts with one; ``**`` alone as a name matches zero or more folders. A folder
    that matches stands for everything in it, so nothing below it is matched again;
    folders that cannot be read are passed over, as ``glob`` passes over them.

    Raises:
        InputError: the walk would look at more than ``limit`` entries
            (:data:`MAX_SCANNED` if None).
    """
    limit = MAX_SCANNED if limit is None else limit
    root, parts = _split(pattern)
    if not parts:
        return
    folders_only = pattern.endswith(os.sep)
    match = _Matcher(parts)
    budget = _Budget(
        limit,
        f"{pattern} reaches more than {limit:,} files and folders under {root or os.curdir}: "
        "give a narrower pattern, or the folder itself",
    )
    # Paths are built as the pattern spells its folder ('' for the current one), not as
    # os.scandir spells them ('./name').
    top = root if not root or root.endswith(os.sep) else root + os.sep
    stack = [(iter(_listing(top or os.curdir, budget)), match.start, top)]
    while stack:
        entries, states, prefix = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        folder = _is_folder(entry)
        after = match.step(states, entry.name, folder)
        if not after:
            continue
        path = prefix + entry.name
        if match.done(after):
            if folder or not (folders_only or _links_to_folder(entry)):
                yield path
        elif folder:
            stack.append((iter(_listing(path, budget)), after, path + os.sep))


def _split(pattern: str) -> tuple[str, list[str]]:
    """The pattern's leading folder without glob characters, and its names after that."""
    names = pattern.split(os.sep)
    fixed = 0
    while fixed < len(names) - 1 and not is_pattern(names[fixed]):
        fixed += 1
    root = os.sep.join(names[:fixed])
    if names[:fixed] == [""]:  # an absolute pattern: '/' itself
        root = os.sep
    return root, [name for name in names[fixed:] if name]


class _Budget:
    """The entries a walk may still read, and the line that refuses it past them."""

    def __init__(self, limit: int, refusal: str) -> None:
        self.left = limit
        self.refusal = refusal

    def spend(self) -> None:
        """Count one entry read.

        Raises:
            InputError: the walk has read more than its limit.
        """
        self.left -= 1
        if self.left < 0:
            raise InputError(self.refusal)


def _listing(folder: str, budget: _Budget, strict: bool = False) -> list[os.DirEntry[str]]:
    """``folder``'s entries by name, each counted against ``budget`` as it is read.

    A folder that cannot be read has no entries (as ``glob`` has it), or with ``strict``
    is an error.

    Raises:
        InputError: ``budget`` ran out, or (``strict``) the folder cannot be read.
    """
    entries = []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                budget.spend()  # before the sort: a huge folder is not read whole first
                entries.append(entry)
    except OSError as e:
        if strict:
            reason = e.strerror or type(e).__name__
            raise InputError(f"cannot read folder {folder}: {reason}") from None
        return []
    entries.sort(key=lambda entry: entry.name)
    return entries


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _links_to_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


class _Matcher:
    """A pattern's names as a small automaton: a state is how many names are matched.

    ``**`` may take any number of folders (and, as the last name, a file), so a path
    may be at several states at once; a walk descends only where some state is left.
    """

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self.end = len(parts)
        self.names = [None if p == _ANY_FOLDERS else re.compile(translate(p)).match for p in parts]
        self._closures: dict[frozenset[int], frozenset[int]] = {}
        self.start = self._closed(frozenset({0}))

    def step(self, states: frozenset[int], name: str, folder: bool) -> frozenset[int]:
        """The states after ``name`` (a folder or not); empty if the pattern cannot match."""
        hidden = name.startswith(".")
        after = []
        for i in states:
            if i == self.end:
                continue
            matches = self.names[i]
            if matches is None:
                if not hidden and (folder or i == self.end - 1):
                    after.append(i)
            elif matches(name) and (not hidden or self.parts[i].startswith(".")):
                after.append(i + 1)
        return self._closed(frozenset(after))

    def done(self, states: frozenset[int]) -> bool:
        """Whether a path at ``states`` matches the whole pattern."""
        return self.end in states

    def _closed(self, states: frozenset[int]) -> frozenset[int]:
        """``states`` with the names ``**`` may skip (zero folders); a walk meets few sets."""
        closed = self._closures.get(states)
        if closed is None:
            grown = set(states)
            todo = list(states)
            while todo:
                i = todo.pop()
                if i < self.end and self.names[i] is None and i + 1 not in grown:
                    grown.add(i + 1)
                    todo.append(i + 1)
            closed = self._closures[states] = frozenset(grown)
        return closed
