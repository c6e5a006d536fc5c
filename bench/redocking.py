"""Redocking progesterone into the progesterone receptor: does docking find the crystal pose?

The crystal structure 1A28 (chain A, shipped by MDAnalysisTests) holds
progesterone (residue STR) in the receptor's pocket. Progesterone is redocked
from its SMILES exactly as the campaign's S1 docks a library molecule
(``mummi_scales.drug_discovery.docking.dock_batch``: RDKit + Dimorphite-DL + ETKDG, meeko,
Vina) into

* **crystal**: the receptor prepared from 1A28 by
  ``mummi_scales.drug_discovery.receptors.prepare_crystal_receptor`` (PDBFixer + meeko, box
  around the crystal ligand), and
* **dockstring**: the PGR receptor and box that dockstring ships, which the
  campaign docks into by default.

Each row gives Vina's best score, the symmetry-aware heavy-atom RMSD of the
top pose (and of the best of the kept poses) to the crystal ligand without
re-alignment (RDKit ``CalcRMS``), and the seconds of the ``dock_batch`` call
(one core; the receptor's affinity maps included). dockstring's receptor is
not in 1A28's frame, so the crystal ligand is first carried into its frame by
a fit of the pocket's C-alpha atoms (``pocket_superposition``); the bench
prints both RMSDs of that fit. Vina cannot bend rings, so a pose can come no
closer to the crystal than the ring conformations ETKDG embedded: the bench
prints that floor (the prepared conformer's best-fit RMSD) for each seed,
and how far Vina's local optimization moves the crystal pose itself in each
receptor (how well the receptor holds the crystal pose, search aside).
Usage::

    .venv/bin/python bench/redocking.py [--exhaustiveness 1 4 8] [--seeds 1] [--receptors crystal dockstring]
        [--no-fast] [--out DIR]
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from MDAnalysisTests.datafiles import PDB_janin
from rdkit import Chem
from rdkit.Chem import rdMolAlign
from rich.console import Console
from rich.table import Table

from mummi_scales.drug_discovery import data
from mummi_scales.drug_discovery.docking import POSES, dock_batch, ligand_pdbqt, prepare_ligand
from mummi_scales.drug_discovery.receptors import prepare_crystal_receptor, pocket_superposition

HERE = Path(__file__).resolve().parent
PROGESTERONE = "known-progesterone"
FAST_BOX = 20.0
"""Edge of the cubic box of the fast setting (angstrom), around each receptor's own box center."""
FAST_MAX_EVALS = 20_000


@dataclass(frozen=True)
class Setting:
    """One docking setting of the table."""

    label: str
    exhaustiveness: int
    max_evals: int = 0
    box: float | None = None


@dataclass(frozen=True)
class Target:
    """A receptor to redock into, with its box and the crystal ligand in its frame."""

    name: str
    pdbqt: Path
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    reference: Chem.Mol


def redock(
    target: Target, setting: Setting, smiles: str, seed: int, workdir: Path
) -> tuple[float, float, float, float]:
    """Dock ``smiles`` into ``target`` with ``setting``: (best score, top-pose RMSD, best-pose RMSD, seconds)."""
    size = list(target.size) if setting.box is None else [setting.box] * 3
    extra = {"max_evals": setting.max_evals} if setting.max_evals else {}
    folder = workdir / f"{target.name}-{setting.label.replace(' ', '_')}-{seed}"
    folder.mkdir()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        start = time.perf_counter()
        result = dock_batch(
            [[PROGESTERONE, smiles]], str(target.pdbqt), list(target.center), size,
            exhaustiveness=setting.exhaustiveness, seed=seed, poses=3, cpu=1, **extra,
        )[PROGESTERONE]
        seconds = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    if "error" in result:
        raise RuntimeError(f"redocking progesterone into {target.name} failed: {result['error']}")
    poses = [Chem.RemoveHs(pose) for pose in Chem.SDMolSupplier(str(folder / POSES / f"{PROGESTERONE}.sdf"))]
    rmsds = [rdMolAlign.CalcRMS(pose, target.reference) for pose in poses]
    return float(result["score"]), rmsds[0], min(rmsds), seconds


def crystal_pose(target: Target, workdir: Path) -> tuple[float, float, float]:
    """Vina on the crystal ligand where the crystal puts it: (score, score after local optimization, RMSD then).

    Separates the receptor from the search: a receptor that holds the crystal
    pose keeps it within a fraction of an angstrom under local optimization,
    whatever docking from a SMILES then finds.
    """
    from meeko import PDBQTMolecule, RDKitMolCreate
    from vina import Vina

    vina = Vina(sf_name="vina", cpu=1, seed=0, verbosity=0)
    vina.set_receptor(str(target.pdbqt))
    vina.compute_vina_maps(center=list(target.center), box_size=list(target.size))
    vina.set_ligand_from_string(ligand_pdbqt(Chem.AddHs(target.reference, addCoords=True)))
    score = float(vina.score()[0])
    optimized = float(vina.optimize()[0])
    path = workdir / f"{target.name}-crystal-pose.pdbqt"
    vina.write_pose(str(path), overwrite=True)
    pose = RDKitMolCreate.from_pdbqt_mol(PDBQTMolecule.from_file(str(path), skip_typing=True))[0]
    return score, optimized, rdMolAlign.CalcRMS(Chem.RemoveHs(pose), target.reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exhaustiveness", type=int, nargs="+", default=[1, 4, 8], help="Vina settings to time")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds of embedding and of Vina")
    parser.add_argument("--receptors", nargs="+", choices=["crystal", "dockstring"], default=["crystal", "dockstring"])
    parser.add_argument("--no-fast", action="store_true", help="leave out exhaustiveness 4 + max_evals + 20 A box")
    parser.add_argument("--out", type=Path, default=HERE.parent / "runs" / "bench-redocking",
                        help="folder of the prepared crystal receptor (reused when its inputs are unchanged)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    smiles = dict(data.known_ligands())[PROGESTERONE]
    console = Console(width=120)
    start = time.perf_counter()
    crystal = prepare_crystal_receptor(Path(PDB_janin), "A", "STR", args.out, ligand_smiles=smiles)
    console.print(f"crystal receptor 1A28 chain A prepared (or reused) in {time.perf_counter() - start:.1f} s: "
                  f"{crystal.pdbqt}; box center {tuple(round(v, 2) for v in crystal.center)}, "
                  f"size {tuple(round(v, 2) for v in crystal.size)} A")
    targets = []
    if "crystal" in args.receptors:
        targets.append(Target("crystal", crystal.pdbqt, crystal.center, crystal.size, crystal.ligand))
    if "dockstring" in args.receptors:
        pdbqt, center, size = data.receptor("PGR")
        fit = pocket_superposition(crystal.pdb, pdbqt, crystal.ligand.GetConformer().GetPositions())
        moved = fit.moved(crystal.ligand)
        offset = sum((a - b) ** 2 for a, b in zip(moved.GetConformer().GetPositions().mean(axis=0), center)) ** 0.5
        console.print(f"dockstring PGR vs 1A28 chain A, {fit.pairs} pocket C-alphas: RMSD {fit.rmsd_before:.2f} A as "
                      f"they are ({'the same' if fit.rmsd_before < 1 else 'NOT the crystal'} frame), "
                      f"{fit.rmsd_after:.2f} A after the fit; the moved crystal ligand's centroid is {offset:.2f} A "
                      "from dockstring's box center")
        targets.append(Target("dockstring", pdbqt, center, size, moved))

    settings = [Setting(f"exh {value}", value) for value in args.exhaustiveness]
    if not args.no_fast:
        if "max_evals" in inspect.signature(dock_batch).parameters:
            settings.append(Setting(f"exh 4, {FAST_MAX_EVALS} evals, {FAST_BOX:.0f} A box", 4, FAST_MAX_EVALS,
                                    FAST_BOX))
        else:
            console.print("dock_batch takes no max_evals here: the fast setting is left out")
    for seed in args.seeds:
        floor = rdMolAlign.GetBestRMS(Chem.RemoveHs(prepare_ligand(smiles, seed)), crystal.ligand)
        console.print(f"seed {seed}: the embedded conformer fits the crystal ligand at best to {floor:.2f} A "
                      "(rigid rings: no pose can come closer)")

    table = Table(title="redocking progesterone (SMILES) into the progesterone receptor, 1 core")
    for column in ("receptor", "setting", "seed", "best score (kcal/mol)", "top-pose RMSD (A)",
                   "best of 3 poses (A)", "seconds"):
        table.add_column(column, justify="left" if column in ("receptor", "setting") else "right")
    with tempfile.TemporaryDirectory(prefix="redocking-") as scratch:
        for target in targets:
            score, optimized, rmsd = crystal_pose(target, Path(scratch))
            console.print(f"{target.name}: the crystal pose scores {score:.2f} kcal/mol; local optimization takes it "
                          f"to {optimized:.2f} kcal/mol at {rmsd:.2f} A from where it was")
        for target in targets:
            for setting in settings:
                for seed in args.seeds:
                    score, top, best, seconds = redock(target, setting, smiles, seed, Path(scratch))
                    table.add_row(target.name, setting.label, str(seed), f"{score:.2f}", f"{top:.2f}", f"{best:.2f}",
                                  f"{seconds:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
