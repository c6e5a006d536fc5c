"""MkDocs hook: the guide's pages that are generated from the code at build time, so they cannot drift from it.

A page holds a marker, an HTML comment on a line of its own, that this hook
replaces before the page is rendered:

``<!-- generated: plugin-config-keys -->``
    Every installed plugin, by kind, with its description and a table of its
    config keys, from :func:`mummi_like.plugins.document`: the same function
    that ``mummi-like plugins NAME`` prints, so the page and the command say
    the same, and both say what validation accepts.
``<!-- generated: coupling-keys -->``
    The keys of a spec's ``couplings:`` entries, from the spec's own model.
``<!-- generated: api-reference -->``
    One mkdocstrings block per name of ``mummi_like.__all__`` (the public
    API), grouped by the module that defines it, which mkdocstrings renders
    from the docstrings.

A marker the hook does not know, or a page that lost its marker, stops the
build, since ``--strict`` would not notice a page that silently went stale.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import mummi_like
from mummi_like import plugins

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
PAGES = {"plugins.md": "plugin-config-keys", "selectors.md": "coupling-keys", "reference.md": "api-reference"}
"""Which page must hold which marker."""

KIND_TITLES = {"scale": "Scales", "selector": "Selectors", "backend": "Backends", "pipeline": "Policies (pipelines)"}

MEMBER_FILTERS = {"Selector": ["!^__"]}
"""Classes whose underscore methods are part of what a plugin implements (``Selector._scores``), so the
reference shows them; every other class shows its public members only (mkdocstrings' default)."""

_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")
_RENDERED_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]+)</code>")
_SECTION = re.compile(r"^\S.*\n-{3,}$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker of the page with what it stands for."""
    expected = PAGES.get(page.file.src_uri)
    found = MARKER.findall(markdown)
    if expected is not None and expected not in found:
        raise ValueError(f"docs/{page.file.src_uri} must hold the line <!-- generated: {expected} -->")
    return MARKER.sub(lambda match: _generate(match.group(1), page.file.src_uri), markdown)


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    """Sphinx roles left in rendered docstrings (``:class:`~mummi_like.tasks.StrictModel```, which mkdocstrings
    leaves as they are) become the code span they stand for, the last dotted part after a ``~``."""
    return _RENDERED_ROLE.sub(_rendered_role, html_text)


def _rendered_role(match: re.Match[str]) -> str:
    target = match.group(2).split(" &lt;", 1)[0]  # `text <target>` shows the text
    return f"<code>{target.rsplit('.', 1)[-1] if match.group(1) else target}</code>"


def _generate(name: str, page: str) -> str:
    if name == "plugin-config-keys":
        return plugin_config_keys()
    if name == "coupling-keys":
        from mummi_like.spec.models import CouplingSpec  # the spec's model: not public API, but what a spec obeys

        return _keys_table(plugins.config_keys(CouplingSpec))
    if name == "api-reference":
        return api_reference()
    raise ValueError(f"docs/{page}: unknown marker <!-- generated: {name} -->; known: {', '.join(PAGES.values())}")


def plugin_config_keys() -> str:
    """Markdown for every installed plugin: a heading, its entry point, its description and its keys as a table."""
    parts = []
    for kind, title in KIND_TITLES.items():
        parts.append(f"## {title}\n\nEntry-point group `{plugins.GROUPS[kind]}`.\n")
        for name in plugins.installed(kind):
            try:
                parts.append(_plugin_section(plugins.document(kind, name)))
            except plugins.PluginLoadError as error:  # an installed plugin that is broken is listed as such
                parts.append(f"### `{name}`\n\nFailed to load: {_text(error.reason)}\n")
    return "\n".join(parts)


def _plugin_section(doc: plugins.PluginDoc) -> str:
    lines = [f"### `{doc.name}`", "", f"`{doc.value}`", "", _prose(doc.description), ""]
    if not doc.config_model:
        lines.append("It declares no `config_model`, so a spec cannot configure it.")
        return "\n".join(lines) + "\n"
    lines += [f"Its `config:` block is validated by `{doc.config_model}`. {_prose(doc.config_description)}", ""]
    if not doc.keys:
        lines.append("It takes no keys: its `config:` block is empty or absent.")
        return "\n".join(lines) + "\n"
    return "\n".join(lines) + "\n" + _keys_table(doc.keys)


def _keys_table(keys: Sequence[plugins.ConfigKeyDoc]) -> str:
    """Config keys as a Markdown table, nested keys indented under the key that holds them."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key in keys:
        default = "" if key.default == "see below" else _code(key.default)
        lines.append(f"| {'&nbsp;' * 4 * key.depth}{_code(key.key)} | {_code(key.type)} | {default} | "
                     f"{_text(key.description)} |")
    return "\n".join(lines) + "\n"


def api_reference() -> str:
    """One mkdocstrings block per public name, under a heading per defining module, in ``_EXPORTS`` order."""
    by_module: dict[str, list[str]] = {}
    for name in mummi_like.__all__:  # sorted; _EXPORTS says where each name is defined
        by_module.setdefault(mummi_like._EXPORTS[name], []).append(name)
    parts = []
    for module in dict.fromkeys(mummi_like._EXPORTS.values()):
        parts.append(f"## `{module}`\n")
        for name in sorted(by_module[module], key=list(mummi_like._EXPORTS).index):
            block = f"::: {module}.{name}"
            filters = MEMBER_FILTERS.get(name)
            if filters is not None:
                block += f"\n    options:\n      filters: {filters!r}"
            parts.append(block + "\n")
    return "\n".join(parts)


def _prose(docstring: str) -> str:
    """A docstring as Markdown: up to its first numpy-style section, Sphinx roles and ``literals`` as code."""
    section = _SECTION.search(docstring)
    text = docstring[: section.start()] if section else docstring
    text = _ROLE.sub(lambda match: f"`{match.group(2).rsplit('.', 1)[-1] if match.group(1) else match.group(2)}`",
                     text)
    return text.replace("``", "`").strip()


def _code(text: str) -> str:
    """``text`` as a code span; Python-Markdown's tables keep a pipe inside one (a union type) in its cell."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _text(text: str) -> str:
    """A description inside a table cell: outside its code spans, HTML, pipes and emphasis markers kept literal."""
    pieces = _prose(text).split("`")
    for index in range(0, len(pieces), 2):  # the even pieces are outside code spans
        pieces[index] = html.escape(pieces[index], quote=False).replace("|", "\\|").replace("*", "\\*")
    return "`".join(pieces)
