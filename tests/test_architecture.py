"""The rules of docs/architecture.md, read from the code's imports (``ast``): a change that
breaks one fails here, in the suite."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "camserver"
TESTS = ROOT / "tests"

MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 350


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


MODULES = _modules()


def _imports(path: Path, package: str) -> set[str]:
    """Every camserver module ``path`` imports (at any depth, TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            found.add(base)
            # ``from camserver.x import y``: y may be a module itself.
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return {m for m in found if m == "camserver" or m.startswith("camserver.")}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


IMPORTS = {name: _imports(path, _package_of(name, path)) for name, path in MODULES.items()}


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(
    sources: tuple[str, ...] | Callable[[str], bool],
    banned: tuple[str, ...] | Callable[[str], bool],
) -> list[str]:
    """``module imports module`` for each import from ``sources`` into ``banned`` (package
    prefixes, or a test of a module's name)."""
    source = sources if callable(sources) else (lambda m: _in(m, *sources))
    ban = banned if callable(banned) else (lambda m: _in(m, *banned))
    return sorted(
        f"{mod} imports {imp}"
        for mod, imps in IMPORTS.items()
        if source(mod)
        for imp in imps
        if ban(imp)
    )


def test_sources_and_live_exist_each_with_its_modules() -> None:
    for home in ("sources", "live"):
        modules = [m for m in MODULES if m.startswith(f"camserver.{home}.")]
        assert len(modules) >= 2, f"camserver.{home} has no modules: {modules}"


WIRING = ("camserver.app", "camserver.runtime", "camserver.cli", "camserver.demo")


def test_nothing_below_the_api_imports_it() -> None:
    def below(m: str) -> bool:
        return not _in(m, "camserver.api", *WIRING)

    assert _violations(below, ("camserver.api",)) == []


@pytest.mark.parametrize(
    ("sources", "banned"),
    [
        (
            ("camserver.live",),
            ("camserver.sources", "camserver.cluster", "camserver.recording", "camserver.motion"),
        ),
        (("camserver.sources",), ("camserver.live", "camserver.recording", "camserver.motion")),
        (("camserver.motion",), ("camserver.recording",)),
    ],
    ids=["live", "sources", "motion"],
)
def test_homes_import_only_what_they_may(sources: tuple[str, ...], banned: tuple[str, ...]) -> None:
    assert _violations(sources, banned) == []


SINGLE_NODE = (
    "camserver.streaming",
    "camserver.live",
    "camserver.sources",
    "camserver.recording",
    "camserver.motion",
    "camserver.store",
    "camserver.schema",
)


def test_single_node_code_imports_no_cluster_module() -> None:
    assert _violations(SINGLE_NODE, ("camserver.cluster",)) == []


def test_only_the_cli_and_demo_wiring_import_the_simulator() -> None:
    def others(m: str) -> bool:
        return not _in(m, "camserver.sim", "camserver.cli", "camserver.demo")

    assert _violations(others, ("camserver.sim",)) == []
    assert _violations(("camserver.sim",), lambda m: not _in(m, "camserver.sim")) == []


SANS_IO = ("camserver.codecs", "camserver.schema")


def test_the_client_imports_only_itself_and_sans_io_modules() -> None:
    allowed = ("camserver.client", *SANS_IO, "camserver.errors")
    client_imports = {
        imp for mod in MODULES if _in(mod, "camserver.client") for imp in IMPORTS[mod]
    }
    assert sorted(i for i in client_imports if i != "camserver" and not _in(i, *allowed)) == []
    # camserver/__init__.py is only the version; the sans-I/O packages and the error tree
    # import nothing else of camserver.
    assert IMPORTS["camserver"] == set()
    assert IMPORTS["camserver.errors"] == set()
    for package in SANS_IO:

        def outside(m: str, package: str = package) -> bool:
            return not _in(m, package)

        assert _violations((package,), outside) == []


def _long_classes(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_CLASS_LINES:
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"


def test_no_module_over_500_lines_and_no_class_over_350() -> None:
    long_modules = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert long_modules == []
    assert [c for p in MODULES.values() for c in _long_classes(p)] == []


def test_no_test_file_imports_another_test_file() -> None:
    test_files = {p.stem for p in TESTS.rglob("test_*.py")}
    found = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.rpartition(".")[2] in test_files or name in test_files:
                    found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert sorted(set(found)) == []
