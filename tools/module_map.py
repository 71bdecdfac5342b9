"""The map of modules in docs/development.md, made from the tree: one line per module.

    python tools/module_map.py          # print the map
    python tools/module_map.py --write  # put it into docs/development.md

Each line is the module's path and the summary line of its docstring, package by
package; tests/test_docs_map.py fails when the page's map is not what this prints, so
a module added, moved or renamed shows up in the map or the suite says so.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "development.md"
BEGIN = "<!-- module map: made by tools/module_map.py --write; do not edit by hand -->"
END = "<!-- end of module map -->"
#: The stage folders, bottom layer first, and the base package's own folder.
PACKAGES = ("edgecnn", "runtime", "trainer", "export", "pipeline")


def modules(package: str) -> list[Path]:
    """The package's modules, its own first, then each sub-package's, in path order."""
    folder = ROOT / package
    if package == "edgecnn":  # its stage folders are links to the others
        return sorted(p for p in folder.glob("*.py"))
    return sorted(folder.rglob("*.py"), key=lambda p: (len(p.relative_to(folder).parts), p))


def summary(path: Path) -> str:
    """The summary line of the module's docstring (for a package: of its ``__init__``)."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.strip().splitlines()[0] if doc else ""


def module_map() -> str:
    """The map, as the page holds it between :data:`BEGIN` and :data:`END`."""
    lines = [BEGIN]
    for package in PACKAGES:
        name = "edgecnn" if package == "edgecnn" else f"edgecnn.{package}"
        lines += ["", f"**`{package}/`** (`{name}`)", ""]
        for path in modules(package):
            text = summary(path)
            if path.name == "__init__.py" and not text:
                continue  # a package marker with nothing to say
            lines.append(f"- `{path.relative_to(ROOT)}`: {text}")
    lines += ["", END]
    return "\n".join(lines)


def page_with_map(page: str) -> str:
    """``page`` with its map replaced by the tree's."""
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page[:start] + module_map() + page[end:]


def main(argv: list[str]) -> int:
    """Print the map, or write it into the page with ``--write``."""
    if argv == ["--write"]:
        PAGE.write_text(page_with_map(PAGE.read_text()))
        return 0
    if argv:
        print("usage: python tools/module_map.py [--write]", file=sys.stderr)
        return 2
    print(module_map())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
