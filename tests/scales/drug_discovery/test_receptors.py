"""Receptor preparation from the 1A28 crystal structure, its frame against dockstring's, and redocking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vina", reason="the docking engines are the `campaign` extra: pip install -e '.[campaign]'")
pytest.importorskip("pdbfixer", reason="receptor preparation needs the `campaign` extra: pip install -e '.[campaign]'")

from MDAnalysisTests.datafiles import PDB_janin  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdMolAlign  # noqa: E402

from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.docking import POSES, dock_batch  # noqa: E402
from mummi_scales.drug_discovery.receptors import (  # noqa: E402
    PADDING,
    CrystalReceptor,
    align_sequences,
    pocket_superposition,
    prepare_crystal_receptor,
    superpose,
)

PROGESTERONE = dict(data.known_ligands())["known-progesterone"]
CRYSTAL = Path(PDB_janin)
BENCH = Path(__file__).parents[3] / "bench" / "redocking.py"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> CrystalReceptor:
    """1A28 chain A prepared around progesterone (STR): about 10 s of PDBFixer and meeko, once for the module."""
    folder = tmp_path_factory.mktemp("receptor")
    return prepare_crystal_receptor(CRYSTAL, "A", "STR", folder, ligand_smiles=PROGESTERONE)


def _records(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]


def test_the_fixed_protein_is_chain_a_with_hydrogens_and_no_heterogens(prepared: CrystalReceptor) -> None:
    records = _records(prepared.pdb)
    assert {line[21] for line in records} == {"A"}
    assert not [line for line in records if line.startswith("HETATM")]
    residues = {(line[17:20], int(line[22:26])) for line in records}
    assert len(residues) == 251 and min(number for _, number in residues) == 682  # 682-932, tails not modelled
    hydrogens = sum(line[76:78].strip() == "H" for line in records)
    assert hydrogens > 0.9 * (len(records) - hydrogens)  # a protein has about as many hydrogens as heavy atoms
    gln682 = {line[12:16].strip() for line in records if int(line[22:26]) == 682}
    assert {"CG", "CD", "OE1", "NE2"} <= gln682  # REMARK 470 of 1A28: missing in the crystal, added by PDBFixer


def test_the_vina_receptor_has_autodock_types_and_polar_hydrogens_only(prepared: CrystalReceptor) -> None:
    records = _records(prepared.pdbqt)
    types = {line[77:79].strip() for line in records}
    assert {"C", "A", "N", "NA", "OA", "HD", "SA"} <= types and "H" not in types
    assert {line[17:20] for line in records}.isdisjoint({"STR", "HOH"}) and {line[21] for line in records} == {"A"}
    charges = [float(line[70:76]) for line in records]
    assert any(charge < -0.3 for charge in charges) and any(charge > 0.2 for charge in charges)


def test_the_box_envelops_the_crystal_progesterone_with_the_padding(prepared: CrystalReceptor) -> None:
    ligand = prepared.ligand
    assert Chem.MolToSmiles(ligand) == Chem.MolToSmiles(Chem.MolFromSmiles(PROGESTERONE))  # stereo from 3D included
    assert ligand.GetNumAtoms() == 23 and Chem.MolFromMolFile(str(prepared.ligand_sdf)).GetNumAtoms() == 23
    xyz = ligand.GetConformer().GetPositions()
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    assert np.allclose(prepared.center, (low + high) / 2) and np.allclose(prepared.size, high - low + 2 * PADDING)
    assert np.allclose(prepared.center, (22.853, 10.1385, 60.282), atol=1e-3)  # STR A 1 of the PDB file


def test_a_second_preparation_reuses_the_files_and_a_new_padding_only_resizes_the_box(
    prepared: CrystalReceptor,
) -> None:
    stamps = {path: path.stat().st_mtime_ns for path in prepared.pdbqt.parent.iterdir()}
    again = prepare_crystal_receptor(CRYSTAL, "A", "STR", prepared.pdbqt.parent, 8.0, ligand_smiles=PROGESTERONE)
    assert {path: path.stat().st_mtime_ns for path in prepared.pdbqt.parent.iterdir()} == stamps
    assert again.pdbqt == prepared.pdbqt and again.center == prepared.center
    assert np.allclose(np.array(again.size) - np.array(prepared.size), 2 * (8.0 - PADDING))


@pytest.mark.parametrize(
    ("pdb", "chain", "resname", "smiles", "message"),
    [
        (CRYSTAL, "Z", "STR", PROGESTERONE, r"has no chain 'Z'; its chains are 'A', 'B'"),
        (CRYSTAL, "A", "XYZ", PROGESTERONE, r"no residue 'XYZ' in chain 'A'; its hetero residues there are HOH, STR"),
        (CRYSTAL, "A", "STR", "CC(", r"template SMILES 'CC\(' of STR does not parse"),
        (CRYSTAL, "A", "STR", "CCO", r"does not match the 23 heavy atoms of STR in chain 'A'"),
        (
            CRYSTAL, "A", "STR", PROGESTERONE.replace("@@", "!").replace("@", "@@").replace("!", "@"),
            r"the stereo of STR in chain 'A' .* differs from the template's",
        ),
        (Path("/nonexistent/1abc.pdb"), "A", "STR", PROGESTERONE, r"cannot read the crystal structure .*1abc\.pdb"),
    ],
)
def test_bad_inputs_say_what_the_structure_has(
    tmp_path: Path, pdb: Path, chain: str, resname: str, smiles: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_crystal_receptor(pdb, chain, resname, tmp_path, ligand_smiles=smiles)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_superpose_undoes_a_rigid_motion() -> None:
    reference = np.random.default_rng(0).normal(size=(30, 3))
    angle = 0.7
    turn = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    mobile = reference @ turn + 1.5
    fit = superpose(mobile, reference)
    np.testing.assert_allclose(fit.apply(mobile), reference, atol=1e-9)
    assert fit.pairs == 30 and fit.rmsd_after < 1e-6
    assert fit.rmsd_before == pytest.approx(float(np.sqrt(((mobile - reference) ** 2).sum(axis=1).mean())))


def test_sequence_alignment_pairs_identities_across_gaps_and_renumbering() -> None:
    assert align_sequences(["A", "B", "C", "D"], ["B", "C", "X", "D"]) == [(1, 0), (2, 1), (3, 3)]
    assert align_sequences(["A", "B"], []) == []


def test_dockstring_pgr_is_not_in_the_crystal_frame_and_the_pocket_fit_carries_the_ligand_into_its_box(
    prepared: CrystalReceptor,
) -> None:
    pdbqt, center, _ = data.receptor("PGR")
    fit = pocket_superposition(prepared.pdb, pdbqt, prepared.ligand.GetConformer().GetPositions())
    assert fit.pairs >= 30 and fit.rmsd_before > 10 and fit.rmsd_after < 1.0
    moved = fit.moved(prepared.ligand).GetConformer().GetPositions()
    assert np.linalg.norm(moved.mean(axis=0) - np.array(center)) < 2.0  # dockstring boxes its own crystal ligand
    itself = pocket_superposition(prepared.pdb, prepared.pdbqt, prepared.ligand.GetConformer().GetPositions())
    assert itself.rmsd_before < 1e-6 and np.allclose(itself.rotation, np.eye(3), atol=1e-6)


@pytest.mark.slow
def test_redocking_progesterone_into_the_crystal_receptor_finds_the_crystal_pose(
    prepared: CrystalReceptor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = dock_batch(
        [["known-progesterone", PROGESTERONE]], str(prepared.pdbqt), list(prepared.center), list(prepared.size),
        exhaustiveness=4, seed=1,
    )["known-progesterone"]  # the demo's search: with exhaustiveness 1 the steroid was posed reversed in one full run
    assert float(result["score"]) < -9.0
    top = Chem.RemoveHs(next(iter(Chem.SDMolSupplier(str(tmp_path / POSES / "known-progesterone.sdf")))))
    assert rdMolAlign.CalcRMS(top, prepared.ligand) < 2.0


@pytest.mark.slow
def test_the_redocking_bench_prints_its_table(prepared: CrystalReceptor) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--receptors", "crystal", "--exhaustiveness", "1", "--no-fast",
         "--out", str(prepared.pdbqt.parent)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "redocking progesterone" in result.stdout and "top-pose RMSD" in result.stdout
    assert "crystal" in result.stdout and "exh 1" in result.stdout and "embedded conformer fits" in result.stdout
