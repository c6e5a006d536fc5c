"""Receptors prepared from a crystal structure, and the frame of another receptor relative to the crystal.

dockstring ships the progesterone receptor prepared for Vina, but a campaign on
a target of its own starts from a crystal structure: the protein of one chain
with its co-crystallized ligand marking the pocket. :func:`prepare_crystal_receptor`
turns such a PDB file into what docking and MD need, offline:

1. PDBFixer keeps the chain, drops heterogens and water, adds missing heavy
   atoms and the hydrogens of pH 7.4 (the protonation the ligands get too);
   missing residues (disordered tails and loops) are not modelled, because
   PDBFixer builds them without any refinement and a guessed loop next to a
   pocket misleads docking more than a gap does;
2. meeko's receptor preparation (``Polymer`` with its residue templates, then
   ``PDBQTWriterLegacy``: AutoDock atom types, Gasteiger charges, polar
   hydrogens) writes the Vina receptor, as ``mk_prepare_receptor`` does;
3. the search box is the crystal ligand's extent plus a padding on each side
   (meeko's ``gridbox.calc_box``, as ``mk_prepare_receptor --box_enveloping``);
4. the crystal ligand itself comes back as an RDKit molecule with its bond
   orders assigned from a SMILES, the reference pose of redocking.

:func:`pocket_superposition` finds the rigid motion from the crystal's frame to
another structure of the same protein (dockstring's receptor, say), by the
C-alpha atoms of the pocket residues matched through a sequence alignment, so
that a crystal pose can be compared with poses docked into the other receptor.
Its fit, :func:`superpose`, is MDAnalysis's, and serves S2 too (a ligand's RMSD
from its docked pose with the pocket superposed).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mummi_like import atomic_write_text
from mummi_scales.drug_discovery.docking import PH

if TYPE_CHECKING:
    from rdkit import Chem

PADDING = 5.0
"""Angstrom added on each side of the crystal ligand's extent to make the search box, as in meeko's examples
(``--padding 5``): room for ligands a little larger than the crystal one, whose pocket a steroid receptor closes
around, while the box stays a fraction of a 30 A cube (Vina's search time grows with the box's volume)."""
POCKET_CUTOFF = 10.0
"""Angstrom from the crystal ligand within which a residue's C-alpha counts as the pocket in
:func:`pocket_superposition`: the residues whose positions decide where a docked pose sits."""


@dataclass(frozen=True)
class CrystalReceptor:
    """A receptor prepared from a crystal structure, with the box and the pose of its crystal ligand.

    Attributes
    ----------
    pdbqt:
        The Vina receptor (meeko: AutoDock types, Gasteiger charges, polar hydrogens).
    pdb:
        The fixed protein with all hydrogens (PDBFixer), the starting point of MD.
    center, size:
        The search box around the crystal ligand (angstrom).
    ligand:
        The crystal ligand, heavy atoms in the crystal's frame, bond orders and
        stereo from the template SMILES.
    ligand_sdf:
        The same ligand as an SD file.
    """

    pdbqt: Path
    pdb: Path
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    ligand: Chem.Mol
    ligand_sdf: Path


def _read_pdb(pdb: Path) -> str:
    """The text of a PDB file, gzip-compressed (``.gz``) or not.

    Raises
    ------
    ValueError
        When the file cannot be read, naming it.
    """
    try:
        if pdb.name.lower().endswith(".gz"):
            with gzip.open(pdb, "rt") as handle:
                return handle.read()
        return pdb.read_text()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the crystal structure {pdb}: {error}; give a readable PDB file") from None


def _atom_lines(text: str) -> list[str]:
    """The coordinate records of the first model, first alternate location of each atom only.

    PDB files carry alternate locations of disordered atoms side by side; a
    molecule built from both would have doubled atoms.
    """
    lines, seen = [], set()
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        atom = (line[12:16], line[17:20], line[21], line[22:27])
        if atom not in seen:
            seen.add(atom)
            lines.append(line)
    return lines


def crystal_ligand(text: str, chain: str, resname: str, smiles: str, source: Path) -> Chem.Mol:
    """The ligand ``resname`` of ``chain`` in a PDB text, with bond orders and stereo from ``smiles``.

    A PDB file has no bond orders; they come from a template (RDKit's
    ``AssignBondOrdersFromTemplate``), and the stereo centres are then read
    from the 3D coordinates and checked against the template's, which catches
    a template of the wrong molecule. Where the chain holds several copies of
    the residue, the first (lowest residue number) is taken.

    Raises
    ------
    ValueError
        When the chain or the residue is absent (the message lists what the
        file has), or the template does not match the residue's atoms.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    lines = _atom_lines(text)
    chains = sorted({line[21] for line in lines})
    if chain not in chains:
        raise ValueError(f"{source} has no chain {chain!r}; its chains are {', '.join(map(repr, chains))}")
    residues = [line for line in lines if line[21] == chain and line[17:20].strip() == resname]
    if not residues:
        hetero = sorted({line[17:20].strip() for line in lines if line[21] == chain and line.startswith("HETATM")})
        raise ValueError(
            f"{source} has no residue {resname!r} in chain {chain!r}; its hetero residues there are "
            f"{', '.join(hetero) or 'none'}; give the residue name of the co-crystallized ligand"
        )
    first = residues[0][22:27]
    block = "".join(line + "\n" for line in residues if line[22:27] == first)
    template = Chem.MolFromSmiles(smiles)
    if template is None:
        raise ValueError(f"the template SMILES {smiles!r} of {resname} does not parse; give the ligand's SMILES")
    molecule = Chem.MolFromPDBBlock(block, removeHs=True)
    if molecule is None:
        raise ValueError(f"RDKit cannot read {resname} in chain {chain!r} of {source}; check its HETATM records")
    mismatch = ValueError(
        f"the template SMILES {smiles!r} does not match the {molecule.GetNumAtoms()} heavy atoms of {resname} in "
        f"chain {chain!r} of {source}; give the SMILES of that ligand"
    )
    if template.GetNumHeavyAtoms() != molecule.GetNumAtoms():  # RDKit would match a template that is only a part
        raise mismatch
    try:
        molecule = AllChem.AssignBondOrdersFromTemplate(template, molecule)
    except ValueError:
        raise mismatch from None
    Chem.AssignStereochemistryFrom3D(molecule)
    expected = Chem.MolToSmiles(template)
    if expected != Chem.MolToSmiles(template, isomericSmiles=False) and Chem.MolToSmiles(molecule) != expected:
        raise ValueError(
            f"the stereo of {resname} in chain {chain!r} of {source} ({Chem.MolToSmiles(molecule)}) differs from the "
            f"template's ({expected}); give the SMILES of the stereoisomer in the crystal"
        )
    molecule.SetProp("_Name", f"{source.name.split('.')[0]}:{chain}:{resname}")
    return molecule


def fix_protein(text: str, chain: str) -> str:
    """PDB text of ``chain`` with heterogens and water dropped, missing atoms and pH 7.4 hydrogens added (PDBFixer).

    Original residue numbers and chain ids are kept (``keepIds``), so that
    residues keep the names the literature gives them.
    """
    from openmm.app import PDBFile
    from pdbfixer import PDBFixer

    fixer = PDBFixer(pdbfile=io.StringIO(text))
    fixer.removeChains(chainIds=sorted({other.id for other in fixer.topology.chains() if other.id != chain}))
    fixer.findMissingResidues()
    fixer.missingResidues = {}  # tails and loops are not modelled: see the module's docstring
    fixer.findNonstandardResidues()
    fixer.replaceNonstandardResidues()
    fixer.removeHeterogens(keepWater=False)
    fixer.findMissingAtoms()
    fixer.addMissingAtoms(seed=0)
    fixer.addMissingHydrogens(PH)
    out = io.StringIO()
    PDBFile.writeFile(fixer.topology, fixer.positions, out, keepIds=True)
    return out.getvalue()


def vina_receptor(pdb_text: str, source: Path) -> str:
    """The Vina PDBQT of a protein with hydrogens, by meeko's receptor preparation.

    Raises
    ------
    ValueError
        When meeko matches no residue template for some residue (the message
        is meeko's, naming the residues and its recommendations).
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy, Polymer, PolymerCreationError, ResidueChemTemplates

    try:
        polymer = Polymer.from_pdb_string(pdb_text, ResidueChemTemplates.create_from_defaults(), MoleculePreparation())
    except PolymerCreationError as error:
        raise ValueError(f"meeko could not prepare the receptor of {source}: {error}") from None
    rigid, _ = PDBQTWriterLegacy.write_string_from_polymer(polymer)
    return rigid


def prepare_crystal_receptor(
    pdb: Path,
    chain: str,
    ligand_resname: str,
    out_dir: Path,
    padding: float = PADDING,
    *,
    ligand_smiles: str,
) -> CrystalReceptor:
    """Prepare the receptor of ``chain`` of a crystal structure for Vina, boxed around its ligand ``ligand_resname``.

    The files go to ``out_dir`` as ``<pdb>-<chain>-<resname>.receptor.pdb``
    (PDBFixer's protein), ``.receptor.pdbqt`` (meeko's), ``.ligand.sdf`` and
    ``.json`` (what they were made from). They are reused when the JSON shows
    the same input file (by SHA-256), chain, residue, SMILES, pH and versions
    of PDBFixer, OpenMM and meeko, since preparation takes seconds and every
    docking task needs the receptor; each file is written whole through a
    rename, the JSON last, so an interrupted preparation is redone rather
    than half reused. The padding only sizes the box and is not part of the
    cache key.

    Parameters
    ----------
    pdb:
        The crystal structure, ``.pdb`` or ``.pdb.gz``.
    chain:
        The chain to keep (the others, often symmetry copies, are dropped).
    ligand_resname:
        Residue name of the co-crystallized ligand in that chain (``STR`` for
        progesterone in 1A28).
    out_dir:
        Folder of the prepared files (created).
    padding:
        Angstrom on each side of the ligand's extent (:data:`PADDING`).
    ligand_smiles:
        SMILES of the ligand, the template of its bond orders and stereo.

    Raises
    ------
    ValueError
        When the file cannot be read, the chain or the residue is absent, the
        SMILES does not match the residue, or meeko cannot prepare the protein.
    """
    from meeko import gridbox
    from rdkit import Chem

    pdb, out_dir = Path(pdb), Path(out_dir)
    if padding < 0:
        raise ValueError(f"the box padding must be >= 0 angstrom, got {padding}")
    text = _read_pdb(pdb)
    stem = f"{pdb.name.split('.')[0]}-{chain}-{ligand_resname}"
    manifest, protein, receptor, sdf = (
        out_dir / f"{stem}{suffix}" for suffix in (".json", ".receptor.pdb", ".receptor.pdbqt", ".ligand.sdf")
    )
    key = {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "chain": chain,
        "ligand_resname": ligand_resname,
        "ligand_smiles": ligand_smiles,
        "ph": PH,
        "versions": {package: version(package) for package in ("pdbfixer", "openmm", "meeko")},
    }
    cached = manifest.is_file() and json.loads(manifest.read_text()) == key
    if cached and protein.is_file() and receptor.is_file() and sdf.is_file():
        ligand = Chem.MolFromMolFile(str(sdf))
    else:
        ligand = crystal_ligand(text, chain, ligand_resname, ligand_smiles, pdb)
        fixed = fix_protein(text, chain)
        pdbqt = vina_receptor(fixed, pdb)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(protein, fixed)
        atomic_write_text(receptor, pdbqt)
        atomic_write_text(sdf, Chem.MolToMolBlock(ligand) + "$$$$\n")
        atomic_write_text(manifest, json.dumps(key, indent=2) + "\n")
    center, size = gridbox.calc_box(ligand.GetConformer().GetPositions(), padding)
    return CrystalReceptor(
        pdbqt=receptor,
        pdb=protein,
        center=(float(center[0]), float(center[1]), float(center[2])),
        size=(float(size[0]), float(size[1]), float(size[2])),
        ligand=ligand,
        ligand_sdf=sdf,
    )


@dataclass(frozen=True)
class Superposition:
    """The rigid motion that carries coordinates of one structure's frame into another's.

    ``moved = (x - origin) @ rotation.T + target``.

    Attributes
    ----------
    rotation, origin, target:
        The motion: rotation matrix, centroid of the fitted atoms in the
        mobile frame, and their centroid in the reference frame.
    pairs:
        Atom pairs fitted (the pocket's C-alphas, in :func:`pocket_superposition`).
    rmsd_before:
        Their RMSD (angstrom) with no motion: under ~1 A, the two structures
        already share a frame.
    rmsd_after:
        Their RMSD after the fit: how alike the two pockets are.
    """

    rotation: np.ndarray
    origin: np.ndarray
    target: np.ndarray
    pairs: int
    rmsd_before: float
    rmsd_after: float

    def apply(self, coordinates: np.ndarray) -> np.ndarray:
        """``coordinates`` (N x 3, mobile frame) in the reference frame."""
        return (np.asarray(coordinates, dtype=float) - self.origin) @ self.rotation.T + self.target

    def moved(self, molecule: Chem.Mol) -> Chem.Mol:
        """A copy of ``molecule`` with its (first) conformer carried into the reference frame."""
        from rdkit import Chem
        from rdkit.Geometry import Point3D

        copy = Chem.Mol(molecule)
        conformer = copy.GetConformer()
        for index, (x, y, z) in enumerate(self.apply(conformer.GetPositions())):
            conformer.SetAtomPosition(index, Point3D(float(x), float(y), float(z)))
        return copy


def superpose(mobile: np.ndarray, reference: np.ndarray) -> Superposition:
    """The rigid motion that best superposes ``mobile`` onto ``reference`` (the same atoms, in the same order).

    The least-squares rotation of the centred coordinates is MDAnalysis's
    (``align.rotation_matrix``, Theobald's QCP), the RMSD before the fit
    ``rms.rmsd``; both in the coordinates' unit.
    """
    from MDAnalysis.analysis import rms
    from MDAnalysis.analysis.align import rotation_matrix

    moving, fixed = np.asarray(mobile, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    origin, target = moving.mean(axis=0), fixed.mean(axis=0)
    rotation, rmsd_after = rotation_matrix(moving - origin, fixed - target)
    return Superposition(np.asarray(rotation), origin, target, len(moving), float(rms.rmsd(moving, fixed)),
                         float(rmsd_after))


def c_alphas(path: Path) -> tuple[list[str], np.ndarray]:
    """Residue names and positions of the C-alpha atoms of a PDB or PDBQT file, in file order."""
    lines = [line for line in _atom_lines(_read_pdb(path)) if line[12:16] == " CA " and line.startswith("ATOM")]
    names = [line[17:20] for line in lines]
    return names, np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])] for line in lines])


def align_sequences(first: list[str], second: list[str]) -> list[tuple[int, int]]:
    """Index pairs of identical residues in a global alignment of two sequences of residue names.

    Needleman-Wunsch with +1 for an identity, -1 for a mismatch or a gap: two
    structures of one protein differ by missing residues and renumbering, not
    by substitutions, so identities are what matter. Written here because the
    aligners at hand (MDAnalysis's, Biopython's) need Biopython, which the
    campaign does not install.
    """
    rows, cols = len(first) + 1, len(second) + 1
    score = np.zeros((rows, cols))
    score[:, 0] = -np.arange(rows)
    score[0, :] = -np.arange(cols)
    for i in range(1, rows):
        for j in range(1, cols):
            diagonal = score[i - 1, j - 1] + (1 if first[i - 1] == second[j - 1] else -1)
            score[i, j] = max(diagonal, score[i - 1, j] - 1, score[i, j - 1] - 1)
    pairs = []
    i, j = rows - 1, cols - 1
    while i > 0 and j > 0:
        match = first[i - 1] == second[j - 1]
        if score[i, j] == score[i - 1, j - 1] + (1 if match else -1):
            if match:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif score[i, j] == score[i - 1, j] - 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def pocket_superposition(
    mobile: Path, reference: Path, around: np.ndarray, cutoff: float = POCKET_CUTOFF
) -> Superposition:
    """The fit of ``mobile``'s pocket C-alphas onto the matching C-alphas of ``reference``.

    The pocket is the residues of ``mobile`` with a C-alpha within ``cutoff``
    of any of the points ``around`` (the crystal ligand, in ``mobile``'s
    frame); they are matched to ``reference``'s residues through
    :func:`align_sequences`, so renumbering and missing residues do not
    matter. Fitting the pocket rather than the whole protein puts a ligand
    where the residues around it are, even if a distant helix moved.

    Raises
    ------
    ValueError
        When fewer than three pocket residues can be matched (no rigid fit).
    """
    from MDAnalysis.lib.distances import capped_distance

    mobile_names, mobile_xyz = c_alphas(mobile)
    reference_names, reference_xyz = c_alphas(reference)
    pairs_near = capped_distance(mobile_xyz, np.asarray(around, dtype=float), max_cutoff=cutoff, return_distances=False)
    near = np.zeros(len(mobile_xyz), dtype=bool)
    near[pairs_near[:, 0]] = True
    pairs = [(i, j) for i, j in align_sequences(mobile_names, reference_names) if near[i]]
    if len(pairs) < 3:
        raise ValueError(
            f"only {len(pairs)} residues within {cutoff} A of the ligand in {mobile} match residues of {reference}; "
            "are they structures of the same protein?"
        )
    return superpose(mobile_xyz[[i for i, _ in pairs]], reference_xyz[[j for _, j in pairs]])
