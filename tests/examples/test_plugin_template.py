"""``examples/plugin``, installed as a user installs a plugin package: into an environment of its own, then used.

The environment is a new virtual environment whose only package is the
template; it sees this project's environment (mummi-like, numpy, h5py, pip,
setuptools, pytest) through a ``.pth`` file, so the install needs no network:
``pip install --no-deps --no-build-isolation --no-index``. Everything then runs
with that environment's interpreter, so the plugins are found through the
entry points of the installed template, as in a user's environment, and not
through this checkout's source tree.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import mummi_like

TEMPLATE = Path(__file__).parents[2] / "examples" / "plugin"
PLUGINS = ("double-well-coarse", "double-well-fine", "near-barrier")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class PluginEnvironment:
    """A virtual environment with the template installed, and the copy of the template it was installed from."""

    python: Path
    root: Path
    template: Path

    def run(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the environment's interpreter with ``args``, OpenMP on one thread as in the rest of the suite."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONPATH", None)  # nothing of this checkout but what the project's environment installs
        return subprocess.run([str(self.python), *map(str, args)], capture_output=True, text=True, timeout=240,
                              cwd=cwd or self.root, env=env)

    def mummi_like(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """``mummi-like ARGS`` in the environment (its interpreter running the command's module)."""
        return self.run("-m", "mummi_like.cli", *args)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> PluginEnvironment:
    root = tmp_path_factory.mktemp("plugin-env")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir, not a bare path: it also runs the .pth files there, which make this project's editable install.
    lines = [f"import site; site.addsitedir({folder!r})" for folder in site.getsitepackages()]
    Path(purelib, "mummi_like_project.pth").write_text("\n".join(lines) + "\n")
    template = root / "plugin"
    shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "runs"))
    environment = PluginEnvironment(python, root, template)
    installed = environment.run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                                template)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return environment


def test_the_installed_template_is_what_the_environment_imports(plugin_env: PluginEnvironment) -> None:
    where = plugin_env.run("-c", "import mummi_plugin_example; print(mummi_plugin_example.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(plugin_env.root / "venv")


def test_mummi_like_plugins_lists_the_template_beside_the_builtin_plugins(plugin_env: PluginEnvironment) -> None:
    listing = plugin_env.mummi_like("plugins")
    assert listing.returncode == 0, listing.stderr
    for name in (*PLUGINS, "chain-md", "novelty", "local", "dag"):
        assert re.search(rf"^  {re.escape(name)} ", listing.stdout, re.MULTILINE), f"{name} not listed"
    assert "failed to load" not in listing.stdout
    described = plugin_env.mummi_like("plugins", "double-well-fine")
    assert described.returncode == 0, described.stderr
    assert described.stdout.startswith("double-well-fine: scale plugin mummi_plugin_example.scales:FineScale")
    assert "\n  timestep: float > 0; default 0.0005\n" in described.stdout
    assert "\n    resources.cores: int >= 1, <= 2147483647; default 1\n" in described.stdout


def test_the_template_campaign_runs_through_mummi_like_run_and_promotes(plugin_env: PluginEnvironment) -> None:
    spec = plugin_env.template / "campaign.yaml"
    validated = plugin_env.mummi_like("validate", spec)
    assert validated.returncode == 0 and "valid campaign 'double-well'" in validated.stdout, validated.stderr
    directory = plugin_env.root / "runs" / "double-well"
    ran = plugin_env.mummi_like("run", spec, "--dir", directory, "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    records = mummi_like.open_campaign(directory)  # the store is read without the plugins
    assert records.counts() == {"coarse": {"done": 2}, "fine": {"done": 4}}
    promotions = records.promotions()
    assert len(promotions) == 4
    assert all(promotion.state == "done" and "committor" in promotion.value for promotion in promotions)


def test_the_template_tests_pass_in_its_environment(plugin_env: PluginEnvironment) -> None:
    tests = plugin_env.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=plugin_env.template)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    passed = re.search(r"(\d+) passed", tests.stdout)
    assert passed and int(passed.group(1)) >= 10 and "skipped" not in tests.stdout, tests.stdout
