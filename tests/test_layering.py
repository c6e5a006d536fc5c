"""The import direction is one way: application packages use mummi_like, never the reverse."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import mummi_like

APPLICATION_PACKAGES = ("mummi_scales", "mummi_selectors", "mummi_pipelines")
FRAMEWORK_ROOT = Path(mummi_like.__file__).parent


def imported_names(source: Path) -> set[str]:
    """Top-level package names a module imports, static and relative imports alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_framework_sources_never_import_application_packages() -> None:
    sources = sorted(FRAMEWORK_ROOT.rglob("*.py"))
    assert len(sources) > 5, "the scan must see the framework's modules"
    offenders = {
        str(source.relative_to(FRAMEWORK_ROOT)): sorted(imported_names(source) & set(APPLICATION_PACKAGES))
        for source in sources
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_every_framework_module_loads_no_application_code() -> None:
    modules = [info.name for info in pkgutil.walk_packages([str(FRAMEWORK_ROOT)], prefix="mummi_like.")]
    assert "mummi_like.backends.local" in modules
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {APPLICATION_PACKAGES!r}))\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_application_folders_are_source_roots_not_packages() -> None:
    """A top-level `selectors` package would shadow the standard library module asyncio needs."""
    repository = FRAMEWORK_ROOT.parent
    for folder, package in (("scales", "mummi_scales"), ("selectors", "mummi_selectors"), ("pipelines", "mummi_pipelines")):
        assert not (repository / folder / "__init__.py").exists()
        assert (repository / folder / package / "__init__.py").exists()
    import selectors

    assert hasattr(selectors, "DefaultSelector"), "the standard library's selectors module must not be shadowed"


def test_scales_and_selectors_never_import_pipelines() -> None:
    """Pipelines build campaigns from scales and selectors; the reverse would tie a scale to one campaign."""
    repository = FRAMEWORK_ROOT.parent
    sources = sorted((repository / "scales").rglob("*.py")) + sorted((repository / "selectors").rglob("*.py"))
    assert sources
    offenders = {str(source.relative_to(repository)) for source in sources if "mummi_pipelines" in imported_names(source)}
    assert offenders == set()
