"""The ``docking`` scale (S1): its data, its batches, and real Vina dockings on tiny inputs."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

pytest.importorskip("vina", reason="the docking engines are the `campaign` extra: pip install -e '.[campaign]'")

from rdkit import Chem  # noqa: E402

from mummi_like import plugins  # noqa: E402
from mummi_like.scale import ScaleContext  # noqa: E402
from mummi_like.tasks import CallablePayload  # noqa: E402
from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.docking import (  # noqa: E402
    MAX_HEAVY_ATOMS,
    DockingConfig,
    DockingScale,
    LigandError,
    dock_batch,
    dock_payload,
    ligand_pdbqt,
    prepare_ligand,
    search_box,
)

PROGESTERONE = dict(data.known_ligands())["known-progesterone"]
INVALID = "C1CC(N"


FAST = DockingConfig(box_size=20.0, exhaustiveness=4, max_evals=20_000, seed=1)
"""The fast setting of the reference table: 20 A box, exhaustiveness 4, at most 20000 evaluations per run."""


def _dock(tmp: Path, ligands: list[list[str]], config: DockingConfig) -> dict[str, dict[str, float | str]]:
    payload = dock_payload(config, list(ligands), {}, tmp)
    cwd = Path.cwd()
    os.chdir(tmp)
    try:
        return dock_batch(**payload.kwargs)  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]], dict[str, dict[str, float | str]]]:
    """Progesterone, three library molecules and one invalid SMILES, docked with the fast setting in one batch."""
    workdir = tmp_path_factory.mktemp("dock")
    ligands = [["known-progesterone", PROGESTERONE], *map(list, data.library(3, seed=0)), ["broken", INVALID]]
    return workdir, ligands, _dock(workdir, ligands, FAST)


def test_the_entry_point_loads_this_class() -> None:
    assert plugins.load("scale", "docking") is DockingScale


def test_pgr_receptor_and_box_come_from_dockstring() -> None:
    pdbqt, center, size = data.receptor("PGR")
    assert pdbqt.name == "PGR_target.pdbqt" and pdbqt.read_text().startswith("REMARK")
    assert center == pytest.approx((-2.532, -8.387, 25.099)) and size == (30.0, 30.0, 30.0)
    with pytest.raises(ValueError, match=r"dockstring has no target 'NOPE'; it has .*PGR"):
        data.receptor("NOPE")


def test_known_ligands_all_parse_and_cite_a_source() -> None:
    with data.KNOWN_LIGANDS.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 8 and len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert Chem.MolFromSmiles(row["smiles"]) is not None, row["id"]
        assert "PubChem" in row["source"], row["id"]


def test_library_sampling_is_deterministic_under_seed() -> None:
    first = data.library(5, seed=3)
    assert first == data.library(5, seed=3)
    assert first != data.library(5, seed=4)
    assert len(first) == 5 and all(ligand_id.startswith("moses-") for ligand_id, _ in first)
    assert all(Chem.MolFromSmiles(smiles) is not None for _, smiles in first)


def test_library_seed_keeps_the_library_while_seed_varies_the_rest() -> None:
    """Replicates of one screen: library_seed fixes the MOSES draw; without it, seed draws the library too."""
    assert DockingConfig(library_size=4, seed=3, library_seed=0).library() == data.library(4, seed=0)
    assert DockingConfig(library_size=4, seed=3).library() == data.library(4, seed=3) != data.library(4, seed=0)


def test_one_task_per_batch_covers_every_ligand_once(tmp_path: Path) -> None:
    config = DockingConfig(library_size=3, ligands_per_task=4, exhaustiveness=2, seed=7)
    tasks = DockingScale(config, ScaleContext(name="s1", campaign_dir=tmp_path, spec_dir=tmp_path)).tasks()
    known = len(data.known_ligands())
    assert len(tasks) == -(-(known + 3) // 4)
    payloads = [task.payload for task in tasks]
    assert all(isinstance(payload, CallablePayload) for payload in payloads)
    docked = [ligand[0] for payload in payloads for ligand in payload.kwargs["ligands"]]  # type: ignore[union-attr]
    assert docked == [ligand_id for ligand_id, _ in [*data.known_ligands(), *data.library(3, seed=7)]]
    assert tasks[0].labels["param.batch"] == "0"
    assert tasks[0].payload.kwargs["exhaustiveness"] == 2  # type: ignore[union-attr]


def test_box_size_overrides_the_receptors_edges_around_its_center_and_max_evals_reaches_vina(tmp_path: Path) -> None:
    pdbqt, center, size = data.receptor("PGR")
    assert search_box(DockingConfig(receptor="dockstring"), tmp_path) == (pdbqt, list(center), list(size))
    assert search_box(DockingConfig(receptor="dockstring", box_size=20), tmp_path)[1:] == (list(center), [20.0] * 3)
    assert search_box(DockingConfig(box_size=(18, 20, 22)), tmp_path)[2] == [18.0, 20.0, 22.0]
    config = DockingConfig(library_size=1, include_known_ligands=False, box_size=20, max_evals=20_000)
    (task,) = DockingScale(config, ScaleContext(name="s1", campaign_dir=tmp_path, spec_dir=tmp_path)).tasks()
    kwargs = task.payload.kwargs  # type: ignore[union-attr]
    assert kwargs["size"] == [20.0] * 3 and kwargs["max_evals"] == 20_000
    with pytest.raises(ValidationError, match=r"box_size"):
        DockingConfig(box_size=0)


def test_config_rejects_parameters_and_unknown_targets() -> None:
    with pytest.raises(ValidationError, match=r"takes no parameters"):
        DockingConfig(parameters={"exhaustiveness": [1, 8]})
    with pytest.raises(ValidationError, match=r"dockstring has no target 'XYZ'"):
        DockingConfig(target="XYZ")
    with pytest.raises(ValidationError, match=r"receptor: crystal has no structure for target 'ESR1' .*use receptor: "
                                              r"dockstring"):
        DockingConfig(target="ESR1")
    with pytest.raises(ValidationError, match=r"receptor\n  Input should be 'dockstring' or 'crystal'"):
        DockingConfig(receptor="1A28")
    assert DockingConfig(target="ESR1", receptor="dockstring").target == "ESR1"


def test_the_crystal_receptor_is_1a28_prepared_once_below_the_campaign_boxed_around_progesterone(
    tmp_path: Path,
) -> None:
    """Where the default receptor comes from: 1A28 chain A, in its own frame, ~50 A from dockstring's box."""
    pdbqt, center, size = search_box(DockingConfig(), tmp_path)
    assert pdbqt.parent == tmp_path / data.RECEPTORS and pdbqt.name == "1a28-A-STR.receptor.pdbqt"
    assert center == pytest.approx([22.85, 10.14, 60.28], abs=0.01) and min(size) > 10
    first = pdbqt.stat().st_mtime_ns
    assert search_box(DockingConfig(), tmp_path)[0].stat().st_mtime_ns == first  # reused, not prepared again
    assert data.docking_receptor("PGR", "crystal", tmp_path).name == "PGR-1A28"
    dockstring_center = data.receptor("PGR")[1]
    assert sum((a - b) ** 2 for a, b in zip(center, dockstring_center)) ** 0.5 > 40


@pytest.mark.slow
def test_five_ligands_score_negative_and_write_sdf_poses(five: tuple[Path, list[list[str]], dict]) -> None:
    workdir, ligands, results = five
    assert list(results) == [ligand_id for ligand_id, _ in ligands]
    for ligand_id, smiles in ligands[:4]:
        score = results[ligand_id]["score"]
        assert isinstance(score, float) and -20 < score < 0, (ligand_id, results[ligand_id])
        assert results[ligand_id]["smiles"] == smiles
        assert results[ligand_id]["poses"] == f"poses/{ligand_id}.sdf", "relative to the task's working directory"
        poses = Chem.SDMolSupplier(str(workdir / str(results[ligand_id]["poses"])), removeHs=False)
        molecules = [molecule for molecule in poses if molecule is not None]
        assert molecules and molecules[0].GetDoubleProp("vina_score") == score
        assert molecules[0].GetNumAtoms() == Chem.AddHs(molecules[0]).GetNumAtoms(), "hydrogens are rebuilt"


@pytest.mark.slow
def test_an_invalid_smiles_is_reported_with_its_reason_and_spares_the_batch(
    five: tuple[Path, list[list[str]], dict],
) -> None:
    _, _, results = five
    assert results["broken"] == {
        "error": f"parse: {INVALID!r}: extra open parentheses while parsing: {INVALID}",
        "smiles": INVALID,
    }


@pytest.mark.parametrize("smiles", ["", "   "])
def test_an_empty_smiles_says_so_rather_than_failing_later(smiles: str) -> None:
    with pytest.raises(LigandError, match=r"^parse: empty SMILES .*fix or remove it"):
        prepare_ligand(smiles, seed=0)


@pytest.mark.slow
def test_the_fast_setting_still_finds_progesterones_pose(five: tuple[Path, list[list[str]], dict]) -> None:
    """The crystal ligand of 1A28 at the reference table's setting: -8.5 kcal/mol here, -9.6 in the full box."""
    _, _, results = five
    assert results["known-progesterone"]["score"] < -8.0


@pytest.mark.slow
def test_redocking_progesterone_into_pgr_scores_below_minus_8(tmp_path: Path) -> None:
    """The crystal ligand of 1A28 docks well into dockstring's PGR: -9.6 kcal/mol at exhaustiveness 4 (-6.9 at 1 misses
    the pose), and better into the receptor prepared from 1A28 itself (-11.5 at the fast setting)."""
    results = _dock(tmp_path, [["progesterone", PROGESTERONE]],
                    DockingConfig(receptor="dockstring", exhaustiveness=4, seed=1))  # fmt: skip
    assert results["progesterone"]["score"] < -8.0
    crystal = _dock(tmp_path, [["progesterone", PROGESTERONE]], FAST)
    assert crystal["progesterone"]["score"] < -10.5


# --- ligands that parse but cannot be docked (hostile or malformed libraries) ------------------------------------

STEREO_CUBANE = "[C@@]12([C@H]3[C@@H]4[C@H]1[C@@H]5[C@H]2[C@@H]3[C@H]45)"
"""Cubane with stereocentres no geometry satisfies: it parses and sanitizes, and ETKDG finds no conformer."""
UNDOCKABLE = [
    ("[H]", r"parse: '\[H\]' has no heavy atom, only hydrogens"),
    ("[H][H]", r"parse: '\[H\]\[H\]' has no heavy atom"),
    ("*C", r"parse: '\*C' holds a dummy atom '\*'"),
    ("[Na+].[Cl-]", r"protonation: '\[Na\+\]\.\[Cl-\]' is 2 separate molecules at pH 7.4 .*: a salt or a mixture"),
    ("CCO.CCN", r"protonation: 'CCO\.CCN' is 2 separate molecules"),
    ("C" * 101, rf"size: 'C{{101}}' has 101 heavy atoms, more than the {MAX_HEAVY_ATOMS}"),
    (STEREO_CUBANE, r"embedding: ETKDG found no 3D conformer of '\[C@@\]12.*' within \d+ s \(strained"),
    ("C1CC(N", r"parse: 'C1CC\(N': extra open parentheses"),
]
"""SMILES that parse (all but the last) yet cannot be docked, and the step and reason each must be refused with."""


@pytest.mark.parametrize(("smiles", "reason"), UNDOCKABLE)
def test_a_ligand_that_cannot_be_prepared_is_refused_naming_its_smiles_and_the_cause(smiles: str, reason: str) -> None:
    with pytest.raises(LigandError, match=f"^{reason}") as caught:
        prepare_ligand(smiles, seed=0)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("smiles", "element"), [("[Xe]", "Xe"), ("Cl[Pt](Cl)([NH3])[NH3]", "Pt")])
def test_an_element_meeko_cannot_type_is_named_in_one_line(smiles: str, element: str) -> None:
    with pytest.raises(LigandError) as caught:
        ligand_pdbqt(prepare_ligand(smiles, seed=0), repr(smiles))
    message = str(caught.value)
    assert message.startswith(f"preparation: meeko cannot type {smiles!r}: ") and "\n" not in message
    assert message.endswith(f"it holds {element}, which Vina may have no atom type for")


def test_a_batch_of_undockable_ligands_reports_each_and_still_docks_the_good_one(tmp_path: Path) -> None:
    """Every failure is a per-ligand record with its SMILES; the batch itself never fails."""
    ligands = [[f"bad-{index}", smiles] for index, (smiles, _) in enumerate(UNDOCKABLE)] + [["good", "CCO"]]
    config = DockingConfig(box_size=12.0, exhaustiveness=1, max_evals=2_000, poses=1, seed=1)
    results = _dock(tmp_path, ligands, config)
    assert list(results) == [ligand_id for ligand_id, _ in ligands]
    for (ligand_id, smiles), (_, reason) in zip(ligands, UNDOCKABLE):
        assert results[ligand_id]["smiles"] == smiles and re.match(reason, str(results[ligand_id]["error"]))
    assert isinstance(results["good"]["score"], float) and (tmp_path / str(results["good"]["poses"])).is_file()


def test_seed_zero_docks_the_same_way_every_time(tmp_path: Path) -> None:
    """Vina reads seed 0 as 'pick a random seed'; the scale's seed 0 (the default) must be as reproducible as any."""
    config = DockingConfig(box_size=12.0, exhaustiveness=1, max_evals=2_000, poses=1, seed=0)
    ligands = [["ethyl-benzoate", "CCOC(=O)c1ccccc1"]]
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = _dock(tmp_path / "first", ligands, config)
    second = _dock(tmp_path / "second", ligands, config)
    assert first["ethyl-benzoate"]["score"] == second["ethyl-benzoate"]["score"]
