"""docs/development.md's map of modules is the tree's: made by tools/module_map.py."""

import sys

from shared import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import module_map  # noqa: E402


def test_the_module_map_is_the_trees():
    page = module_map.PAGE.read_text()
    assert module_map.page_with_map(page) == page, (
        "docs/development.md's module map is stale: run python tools/module_map.py --write"
    )


def test_every_module_says_what_it_holds():
    missing = [
        str(path.relative_to(ROOT))
        for package in module_map.PACKAGES
        for path in module_map.modules(package)
        if path.name != "__init__.py" and not module_map.summary(path)
    ]
    assert missing == [], "modules without a docstring: " + ", ".join(missing)


def test_no_two_modules_share_a_name_that_means_different_things():
    """A name repeats only for a role every package has, or a registry key's own module."""
    # cli: a package's commands; config: a stage's configuration; errors: a layer's
    # exceptions; records: a layer's typed records (edgecnn/records.py holds what every
    # record shares). A format and the backend that runs it share the format's name (c,
    # numpy): each is the module of that name in its registry.
    roles = {"__init__", "cli", "config", "errors", "records"}
    registries = {"export/formats", "runtime/backends"}
    seen: dict[str, list[str]] = {}
    for package in module_map.PACKAGES:
        for path in module_map.modules(package):
            folder = str(path.parent.relative_to(ROOT))
            if path.stem not in roles and folder not in registries:
                seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}
