"""The guide (docs/, mkdocs.yml) builds with ``mkdocs build --strict`` and its generated pages say what the code says.

``--strict`` turns every warning into a failure: a broken link between pages, a
cross-reference to an object the API reference does not render, a docstring
mkdocstrings cannot read. The generated pages are checked against the code
they come from, and every code example of the guide at least parses.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import yaml

import mummi_like
from mummi_like import plugins

REPOSITORY = Path(__file__).parents[1]
DOCS = REPOSITORY / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide, built once into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text without its tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))


def test_every_page_of_the_nav_is_built_and_needs_no_network(site: Path) -> None:
    nav = yaml.safe_load((REPOSITORY / "mkdocs.yml").read_text())["nav"]
    pages = re.findall(r"'([\w-]+)\.md'", repr(nav))
    assert {"index", "scales", "selectors", "policies", "backends", "streams", "resume", "python-api", "plugins",
            "reference"} == set(pages)
    for page in pages:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        text = built.read_text()
        assert "https://" not in re.sub(r'href="https://[^"]*"', "", text), f"{page} loads something from the network"
    assert not (site / "hooks").exists()  # the hook is code, not a page


def test_the_config_keys_page_lists_every_installed_plugin_and_every_key(site: Path) -> None:
    text = page_text(site, "plugins")
    for kind in plugins.GROUPS:
        for name in plugins.installed(kind):
            doc = plugins.document(kind, name)
            assert doc.value in text, f"{kind} {name!r} is not on the page"
            for key in doc.keys:
                assert key.key in text and key.type in text, f"{name}: {key.key} ({key.type})"
    chain = (site / "plugins" / "index.html").read_text()
    assert "<td><code>beads</code></td>\n<td><code>int &gt;= 3</code></td>\n<td><code>24</code></td>" in chain
    assert "<td><code>'CPU' | 'Reference'</code></td>" in chain  # a union's pipe stays in its cell


def test_the_selector_page_lists_every_coupling_key(site: Path) -> None:
    from mummi_like.spec.models import CouplingSpec

    text = page_text(site, "selectors")
    for key in plugins.config_keys(CouplingSpec):
        assert f"{key.key}\n{key.type}\n" in text, key.key


def test_the_api_reference_renders_every_public_name(site: Path) -> None:
    reference = (site / "reference" / "index.html").read_text()
    for name in mummi_like.__all__:
        assert f'id="{mummi_like._EXPORTS[name]}.{name}"' in reference, f"{name} is not in the API reference"
    assert 'id="mummi_like.selection.Selector._scores"' in reference  # what a selector implements is shown
    assert ":class:" not in reference and ":meth:" not in reference  # Sphinx roles become code spans


def test_every_code_example_of_the_guide_parses() -> None:
    blocks = [(page.name, language, code) for page in sorted(DOCS.glob("*.md"))
              for language, code in FENCE.findall(page.read_text())]
    assert {language for _, language, _ in blocks} >= {"python", "yaml", "toml"}
    for page, language, code in blocks:
        if language == "python":
            ast.parse(code, filename=page)
        elif language == "yaml":
            assert yaml.safe_load(code) is not None, page
        elif language == "toml":
            tomllib.loads(code)


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", DOCS / "hooks" / "generated.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hook_refuses_a_generated_page_without_its_marker_and_an_unknown_marker() -> None:
    generated = hook()
    page = SimpleNamespace(file=SimpleNamespace(src_uri="plugins.md"))
    with pytest.raises(ValueError, match=r"docs/plugins.md must hold the line <!-- generated: plugin-config-keys"):
        generated.on_page_markdown("# Plugin config keys\n", page, None, None)
    other = SimpleNamespace(file=SimpleNamespace(src_uri="scales.md"))
    with pytest.raises(ValueError, match=r"docs/scales.md: unknown marker <!-- generated: nonsense -->"):
        generated.on_page_markdown("<!-- generated: nonsense -->\n", other, None, None)
    assert generated.on_page_markdown("plain\n", other, None, None) == "plain\n"
