"""The reference campaign's shipped specs validate, with every plugin they name installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mummi_like.spec import load_spec

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "mummi_pipelines" / "drug_discovery" / "configs"
STAGES = ["ml1-s1", "s2", "s3-cg", "s3-fg", "ranking"]


@pytest.mark.parametrize("name", ["demo.yaml", "production.yaml"])
def test_shipped_spec_validates_through_the_cli(name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "mummi_like.cli", "validate", str(CONFIGS / name)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"with scales {', '.join(STAGES)}" in result.stdout


def test_production_is_the_demo_at_scale_on_flux_with_gpus_for_every_openmm_stage(tmp_path: Path) -> None:
    demo, production = (load_spec(CONFIGS / name, directory=tmp_path / name)
                        for name in ("demo.yaml", "production.yaml"))
    assert [(s.spec.name, s.spec.plugin) for s in demo.scales] == [
        (s.spec.name, s.spec.plugin) for s in production.scales]
    assert [c.spec.label for c in demo.couplings] == [c.spec.label for c in production.couplings]
    assert (demo.spec.backend.plugin, production.spec.backend.plugin) == ("local", "flux")
    configs = {s.spec.name: s.config for s in production.scales}
    assert configs["ml1-s1"].library_size == 1_000_000
    assert configs["s2"].pocket_radius is None  # the whole protein
    assert all(configs[stage].resources.gpus == 1 for stage in ("s2", "s3-cg", "s3-fg"))
    assert configs["s3-cg"].replicas > {s.spec.name: s.config for s in demo.scales}["s3-cg"].replicas
