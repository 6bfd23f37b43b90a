"""What `loadtests/` holds, and that what its pages name is there.

The programs at its top drive a running gateway over the network (its processes started as
`coach-gateway` subprocesses), so they import none of the gateway's packages; the benchmarks of
single components, which do, live in `loadtests/micro/`. The modules and result files that
`loadtests/BENCHMARKS.md` and the README name must exist, so that a move or a pruned result
cannot leave a dead command or link behind.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"
BENCHMARKS = LOADTESTS / "BENCHMARKS.md"
README = ROOT / "README.md"
GATEWAY_PACKAGES = {"gateway", "providers", "streams", "db", "assess"}
MODULE = re.compile(r"\bloadtests(?:\.\w+)+")
LINK = re.compile(r"\]\(([^)#\s]+)")
RESULT = re.compile(r"`(results/[^`\s]+)`")


def _imports(path: Path) -> set[str]:
    """The top-level packages that `path` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_network_programs_import_none_of_the_gateways_packages() -> None:
    programs = sorted(LOADTESTS.glob("*.py"))
    assert programs
    found = {p.name: sorted(_imports(p) & GATEWAY_PACKAGES) for p in programs}
    assert {name: packages for name, packages in found.items() if packages} == {}


def _module_or_attribute(name: str) -> bool:
    """`name` is a module, or an attribute of one (`loadtests.bench_stats.added_interval`)."""
    if importlib.util.find_spec(name) is not None:
        return True
    parent = importlib.util.find_spec(name.rsplit(".", 1)[0])
    return parent is not None and parent.submodule_search_locations is None


@pytest.mark.parametrize("page", [BENCHMARKS, README], ids=lambda p: p.name)
def test_every_module_a_page_names_exists(page: Path) -> None:
    names = sorted(set(MODULE.findall(page.read_text())))
    assert names
    assert [n for n in names if not _module_or_attribute(n)] == []


def test_every_file_benchmarks_links_exists() -> None:
    text = BENCHMARKS.read_text()
    targets = {t for t in LINK.findall(text) if "://" not in t} | set(RESULT.findall(text))
    assert targets
    assert sorted(t for t in targets if not (LOADTESTS / t).exists()) == []


def test_every_loadtests_file_the_readme_links_exists() -> None:
    targets = {t for t in LINK.findall(README.read_text()) if t.startswith("loadtests/")}
    assert targets
    assert sorted(t for t in targets if not (ROOT / t).exists()) == []
