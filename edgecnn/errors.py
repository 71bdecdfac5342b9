"""The exception every edgecnn stage raises for problems a user can fix.

The CLI turns an :class:`EdgecnnError` into one plain line and its ``exit_code``;
anything else is a bug and exits with 1.
"""

from __future__ import annotations

import errno
import unicodedata


class EdgecnnError(Exception):
    """Base of all errors edgecnn reports to users (bad input, missing data or models)."""

    exit_code = 2

    def with_exit_code(self, code: int) -> EdgecnnError:
        """This error, reported with exit code ``code`` instead of the class's."""
        self.exit_code = code
        return self


class ConfigError(EdgecnnError, ValueError):
    """An option or configuration value is impossible (zero filters, negative epochs)."""


class DataError(EdgecnnError):
    """A dataset is missing, corrupt or truncated."""


class Interrupted(EdgecnnError):
    """Ctrl-C (SIGINT) stopped a command."""

    exit_code = 130


#: Conditions of the machine, not bugs: said plainly, with the path when there is one.
_PLAIN_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EMFILE: "too many open files",
    errno.EIO: "input/output error (a failing disk or medium)",
}


def plain_os_error(error: BaseException) -> EdgecnnError | None:
    """An :class:`EdgecnnError` for an ``OSError`` that is a condition of the machine.

    A full disk, a read-only file system or a missing permission is something a user
    fixes, not a bug: it deserves a sentence rather than "unexpected OSError". ``None``
    for every other error.
    """
    if not isinstance(error, OSError) or error.errno not in _PLAIN_ERRNOS:
        return None
    where = f" while writing {error.filename}" if error.filename else ""
    return EdgecnnError(f"{_PLAIN_ERRNOS[error.errno]}{where}")


def one_line(message: str) -> str:
    r"""``message`` with control and format characters escaped, so it prints as one line.

    File names may hold newlines or terminal escape sequences; an error line must not
    break in two or recolour a terminal. Format characters (Unicode's Cf: bidirectional
    controls such as U+202E, zero-width characters) are escaped as ``\uXXXX`` too: a
    name must not reorder or hide the rest of its line, nor look like another name.
    """
    if message.isprintable():
        return message
    out = []
    for ch in message:
        code = ord(ch)
        if ch == "\n":
            out.append("\\n")
        elif code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        elif unicodedata.category(ch) == "Cf":
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)
