"""Measured figures live in docs/benchmarks.md; the package source only points there.

A number measured on one machine (a time, a speed, a size from a run) goes stale in a
comment. The code says why in words and names the entry that holds the number:
``(docs/benchmarks.md, "numpy backend memory")``. These tests read comments (``tokenize``)
and string statements such as docstrings (``ast``), never code, so an f-string that
formats a unit is not a figure. No TensorFlow is imported.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from shared import ROOT

BENCHMARKS = ROOT / "docs" / "benchmarks.md"
#: The package source: the top-level modules and the stage folders (not
#: tests/ or bench/, which measure things by design).
PACKAGES = ("runtime", "trainer", "export", "pipeline")
#: Other files whose comments may point at docs/benchmarks.md.
POINTER_FILES = ("pyproject.toml",)

#: A figure with a unit of measurement: a time, a size, a speed or a speed-up.
FIGURE = re.compile(
    r"(?<![\w.,])\d+(?:[.,]\d+)*\s?"
    r"(?:ms|us|µs|ns|s|sec|seconds|minutes|min|KB|MB|GB|KiB|MiB|GiB"
    r"|x (?:faster|slower)|times (?:faster|slower)|img/s|images/s|pictures/s)\b"
)

#: Figures in prose that are definitions or facts, not measurements: (file, figure).
ALLOWED = {
    # An example of the function's output format.
    ("edgecnn/_files.py", "1.0 MiB"),
    # QEMU's -icount shift=0 defines an instruction as taking 1 ns.
    ("export/mcu/toolchain.py", "1 ns"),
    # A Raspberry Pi model's RAM, the device the pixel limit protects.
    ("runtime/images.py", "1 GB"),
    # An example of the error message the limit produces.
    ("runtime/npz.py", "4.0 GiB"),
    # The zip format: the end-of-central-directory record is searched in the last 64 KiB.
    ("runtime/npz.py", "64 KiB"),
    # An example of what the progress bar prints.
    ("runtime/predict/progress_bar.py", "41,230 img/s"),
    ("runtime/predict/progress_bar.py", "0.1s"),
    ("trainer/folders.py", "3,210 img/s"),
    ("trainer/folders.py", "9s"),
    # The archive limit the code defines, and Fashion-MNIST's size (70,000 x 784 bytes).
    ("trainer/arrays.py", "4 GiB"),
    ("trainer/arrays.py", "55 MB"),
    # The sizes of public data sets' files, beside the limit the code defines.
    ("trainer/idx.py", "47 MB"),
    ("trainer/idx.py", "0.6 GB"),
}

POINTER = re.compile(r'docs/benchmarks\.md, "([^"]+)"')


def package_sources() -> list[Path]:
    files = sorted(path for path in (ROOT / "edgecnn").glob("*.py") if not path.is_symlink())
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def prose(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every comment and string statement (docstrings) in ``source``."""
    pieces = [
        (token.start[0], token.string.lstrip("#:"))
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            lines = node.value.value.splitlines()
            pieces += [(node.lineno + i, line) for i, line in enumerate(lines)]
    return sorted(pieces)


def figures(source: str) -> list[tuple[int, str]]:
    return [(line, m.group()) for line, text in prose(source) for m in FIGURE.finditer(text)]


def entries() -> set[str]:
    """The names a pointer may use: each heading, and a heading's part before its colon."""
    names = set()
    for heading in re.findall(r"^#{2,4} (.+?)\s*$", BENCHMARKS.read_text(), re.MULTILINE):
        names.add(heading)
        names.add(heading.split(":")[0])
    return names


def pointers(text: str) -> list[str]:
    """The entry names ``text`` points at, a pointer wrapped over lines included."""
    return POINTER.findall(" ".join(text.split()))


def test_the_scanner_sees_prose_and_not_code():
    source = (
        '"""Took 6.2 s here."""\n'
        "x = 1  # 15-50 ms a compile\n"
        'y = f"{x:.1f} ms"\n'
        'z = "3 MB"\n'
        "def f():\n"
        '    """2x faster, 40,000 img/s."""\n'
    )
    assert [text for _, text in figures(source)] == ["6.2 s", "50 ms", "2x faster", "40,000 img/s"]
    assert figures("t = 28  # 28x28 pixels, 10,000 test images, a 99% gate\n") == []


def test_no_measured_figure_in_the_package_source():
    found = []
    for path in package_sources():
        name = str(path.relative_to(ROOT))
        for line, text in figures(path.read_text()):
            if (name, text) not in ALLOWED:
                found.append(f"{name}:{line}: {text}")
    assert found == [], (
        "measured figures belong in docs/benchmarks.md, with a pointer from the code "
        '(docs/benchmarks.md, "<entry>"); a definition goes into ALLOWED: ' + "; ".join(found)
    )


def test_every_allowed_figure_is_still_there():
    """An exception nobody needs any more is removed, so the list stays the true one."""
    seen = {
        (str(path.relative_to(ROOT)), text)
        for path in package_sources()
        for _, text in figures(path.read_text())
    }
    assert ALLOWED - seen == set()


def test_every_pointer_names_an_entry_of_docs_benchmarks():
    known = entries()
    found, missing = 0, []
    for path in package_sources():
        text = "\n".join(piece for _, piece in prose(path.read_text()))
        for name in pointers(text):
            found += 1
            if name not in known:
                missing.append(f"{path.relative_to(ROOT)}: {name!r}")
    for name in POINTER_FILES:
        for entry in pointers((ROOT / name).read_text().replace("#", " ")):
            found += 1
            if entry not in known:
                missing.append(f"{name}: {entry!r}")
    assert found > 0
    assert missing == [], "no such entry in docs/benchmarks.md: " + "; ".join(missing)
