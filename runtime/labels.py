"""Class labels of the datasets edgecnn knows, shared by training, export and inference."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

FASHION_MNIST_LABELS: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

MNIST_LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))

LABELS: dict[str, tuple[str, ...]] = {"fashion": FASHION_MNIST_LABELS, "mnist": MNIST_LABELS}

#: The longest class name: a label must fit on a line of a report or a terminal.
MAX_NAME_CHARS = 100
#: Characters that reorder the text around them (bidirectional controls): a name holding
#: one can print as another name, or as nothing at all.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
#: Invisible characters outside the Cf and Cc categories (from Unicode's
#: Default_Ignorable_Code_Point): the combining grapheme joiner, Hangul fillers, Khmer
#: inherent vowels, Mongolian free variation selectors. Variation selectors (emoji) stay.
INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0")
#: Categories refused anywhere in a name: controls, formatting (zero-width and bidi
#: characters among them), line and paragraph separators, lone surrogates.
REFUSED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def escaped(name: str) -> str:
    r"""``name`` quoted, with what does not print plainly as ``\uXXXX``.

    Invisible characters, other unprintable ones and combining marks are escaped, so
    that an error shows how two names that print alike differ (``cafe\u0301``).
    """
    return "'" + "".join(_escape(ch) if _hidden(ch) else ch for ch in name) + "'"


def _hidden(ch: str) -> bool:
    return (
        ch in "'\\"
        or not ch.isprintable()
        or _invisible(ch)
        or unicodedata.category(ch) in ("Mn", "Me")
    )


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "'\\":
        return "\\" + ch
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _invisible(ch: str) -> bool:
    return ch in INVISIBLE or ch in BIDI_CONTROLS or unicodedata.category(ch) in REFUSED_CATEGORIES


def check_class_names(
    names: Sequence[object], error: type[Exception] = ValueError, what: str = "class name"
) -> tuple[str, ...]:
    """Class names in Unicode NFC, each printable, visible and distinct from the others.

    Names that print alike are refused rather than kept apart: a direction override
    (U+202E) or a zero-width character makes one name look like another, and the NFC and
    NFD spellings of ``café`` are one name (normalised, they are equal). ``what`` names
    the kind of name in messages ("class folder", "metadata label").

    Raises:
        error: a name that is not a non-blank string of at most :data:`MAX_NAME_CHARS`
            characters, holds a control, formatting, bidirectional or other invisible
            character (shown escaped), or repeats another after normalisation.
    """
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise error(f"{what}s must be non-empty text, found {name!r:.40}")
        if len(name) > MAX_NAME_CHARS:
            raise error(f"{what} {escaped(name[:20])}... is {len(name)} characters; at most "
                        f"{MAX_NAME_CHARS}")  # fmt: skip
        bad = next((ch for ch in name if _invisible(ch)), None)
        if bad is not None:
            raise error(f"{what} {escaped(name):.120} holds {_describe(bad)}; rename it")
        normal = unicodedata.normalize("NFC", name)
        if normal in seen:
            first = seen[normal]
            alike = (
                "is repeated"
                if first == name
                else (f"and {escaped(first)} print alike (one name in Unicode NFC)")
            )
            raise error(f"{what} {escaped(name):.120} {alike}; rename one")
        seen[normal] = name
    return tuple(seen)


def _describe(ch: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE), which reorders the text around it``."""
    kind = "which reorders the text around it" if ch in BIDI_CONTROLS else "which is invisible"
    if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
        kind = "a control character or line break"
    elif unicodedata.category(ch) == "Cs":
        kind = "which is not text (bytes in another encoding than UTF-8?)"
    name = unicodedata.name(ch, "")
    return f"{_escape(ch)}{f' ({name})' if name else ''}, {kind}"


def ordered(
    names: Sequence[str], order: Sequence[str], where: str, error: type[Exception] = ValueError
) -> tuple[str, ...]:
    """``names`` in the order the user gave (``--classes``): each of them, once.

    Raises:
        error: ``order`` repeats a name, names one ``where`` does not have, or leaves one
            out; the message lists the classes there are.
    """
    order = [unicodedata.normalize("NFC", name) for name in order]
    there = f"its classes: {', '.join(names)}" if len(names) <= 20 else f"{len(names)} classes"
    repeated = next((name for i, name in enumerate(order) if name in order[:i]), None)
    if repeated is not None:
        raise error(f"--classes names {escaped(repeated)} twice")
    unknown = [name for name in order if name not in names]
    if unknown:
        raise error(f"--classes names {escaped(unknown[0])}, which {where} does not have "
                    f"({there})")  # fmt: skip
    left_out = [name for name in names if name not in order]
    if left_out:
        shown = ", ".join(escaped(n) for n in left_out[:5]) + (", ..." if len(left_out) > 5 else "")
        raise error(f"--classes leaves out {shown} of {where} ({there}); name every class once")
    return tuple(order)
