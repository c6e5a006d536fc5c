"""The import direction is one way: application packages use mummi_like, never the reverse, and only its public API."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
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
    for folder, package in zip(("scales", "selectors", "pipelines"), APPLICATION_PACKAGES, strict=True):
        assert not (repository / folder / "__init__.py").exists()
        assert (repository / folder / package / "__init__.py").exists()
    import selectors

    assert hasattr(selectors, "DefaultSelector"), "the standard library's selectors module must not be shadowed"


APPLICATION_FOLDERS = ("scales", "selectors", "pipelines", "examples/plugin")
"""Where application code lives: our plugin packages, and the template a plugin author copies."""


def private_uses(source: Path, public: set[str]) -> list[tuple[int, str]]:
    """``(line, what)`` of every use of mummi_like beyond its public API in one module.

    Offences: importing a submodule (``import mummi_like.store``, ``from
    mummi_like.spec import X``, ``from mummi_like import store``, a name that is
    not in ``mummi_like.__all__``), at module level, inside a function or under
    ``TYPE_CHECKING`` alike; ``importlib.import_module("mummi_like.<...>")``;
    and reaching a submodule through the package (``mummi_like.campaign.loop``).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {alias.name}") for alias in node.names
                      if alias.name.startswith("mummi_like.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("mummi_like."):
                found.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "mummi_like":
                found += [(node.lineno, f"from mummi_like import {alias.name} (not in mummi_like.__all__)")
                          for alias in node.names if alias.name not in public]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mummi_like":
            if node.attr not in public:
                found.append((node.lineno, f"mummi_like.{node.attr} (not in mummi_like.__all__)"))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            name = node.args[0].value
            if called in ("importlib.import_module", "import_module", "__import__") and isinstance(name, str) \
                    and name.startswith("mummi_like."):
                found.append((node.lineno, f"{called}({name!r})"))
    return sorted(found)


def test_application_code_imports_only_the_public_api() -> None:
    """Plugins see mummi_like as a plugin author does: `from mummi_like import X`, X in __all__, nothing deeper."""
    repository = FRAMEWORK_ROOT.parent
    public = set(mummi_like.__all__)
    sources = [source for folder in APPLICATION_FOLDERS for source in sorted((repository / folder).rglob("*.py"))]
    assert len(sources) > 20, "the scan must see the application modules"
    offences = [f"{source.relative_to(repository)}:{line}: {what}" for source in sources
                for line, what in private_uses(source, public)]
    assert offences == [], "application code reaches past mummi_like's public API:\n" + "\n".join(offences)


def test_the_public_api_check_catches_every_way_past_it(tmp_path: Path) -> None:
    module = tmp_path / "plugin.py"
    module.write_text(textwrap.dedent("""
        import importlib
        from typing import TYPE_CHECKING

        import mummi_like
        from mummi_like import Scale, TaskSpec
        import mummi_like.store
        from mummi_like.spec import resolved
        from mummi_like import store

        if TYPE_CHECKING:
            from mummi_like.store import Store

        def later():
            from mummi_like.campaign.loop import Campaign
            return importlib.import_module("mummi_like.report"), mummi_like.campaign, mummi_like.run
    """))
    assert private_uses(module, set(mummi_like.__all__)) == [
        (7, "import mummi_like.store"),
        (8, "from mummi_like.spec import ..."),
        (9, "from mummi_like import store (not in mummi_like.__all__)"),
        (12, "from mummi_like.store import ..."),
        (15, "from mummi_like.campaign.loop import ..."),
        (16, "importlib.import_module('mummi_like.report')"),
        (16, "mummi_like.campaign (not in mummi_like.__all__)"),
    ]


def test_scales_and_selectors_never_import_pipelines() -> None:
    """Pipelines build campaigns from scales and selectors; the reverse would tie a scale to one campaign."""
    repository = FRAMEWORK_ROOT.parent
    sources = sorted((repository / "scales").rglob("*.py")) + sorted((repository / "selectors").rglob("*.py"))
    assert sources
    offenders = {str(source.relative_to(repository)) for source in sources
                 if "mummi_pipelines" in imported_names(source)}
    assert offenders == set()
