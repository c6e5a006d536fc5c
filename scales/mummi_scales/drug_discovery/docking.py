"""The ``docking`` scale: S1 of the drug-discovery campaign, AutoDock Vina on a library of SMILES.

The scale draws its ligands (a seeded sample of the MOSES library, plus the
known progesterone-receptor ligands when asked, so that enrichment can be
measured) and splits them into batches of ``ligands_per_task``: one task per
batch, because Vina's affinity maps of a receptor take seconds to compute and
are shared by every ligand of a batch, while a whole library in one task would
neither spread over the backend's cores nor survive a crash.

Every task runs :func:`dock_batch` in its working directory. Each ligand goes
through RDKit (parse, protonation at pH 7.4 with Dimorphite-DL, hydrogens, 3D
embedding with ETKDG), meeko (PDBQT), and Vina; its best score is returned and
its poses are written as SDF under :data:`POSES`. A ligand that fails any step
is reported with the step and the reason and the batch goes on: one bad SMILES
in a library of millions is expected, not exceptional.

The target is a config string: any receptor that dockstring ships prepared
(PDBQT and box) works by changing ``target`` only. ``receptor`` chooses, for a
target with a known crystal structure (PGR: 1A28), between dockstring's
prepared receptor and one prepared here from the crystal
(:func:`~mummi_scales.drug_discovery.data.docking_receptor`), boxed around the
crystal ligand; S2 and S3 build their complexes on the same receptor.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import Field, JsonValue, PositiveFloat, model_validator

from mummi_like import CallablePayload, TaskSpec
from mummi_scales.drug_discovery import data
from mummi_scales.drug_discovery.results import DockedLigand, DockingBatch, FailedLigand
from mummi_scales.generic.parameters import ParameterizedConfig, ParameterizedScale, ParameterSpace, Scalar

if TYPE_CHECKING:
    from rdkit import Chem

DOCK_FUNCTION = "mummi_scales.drug_discovery.docking:dock_batch"
"""What every task of the scale calls."""
POSES = "poses"
"""Folder of a task's working directory that holds one SDF of poses per docked ligand (``<id>.sdf``)."""
BATCH = "batch"
"""The parameter that numbers the batches; its ``param.batch`` label says which slice of the ligands a task docks."""
PH = 7.4
"""Protonation pH: physiological, as in the binding assays the known ligands come from."""
LIBRARY_ROWS = 1_584_663
"""Molecules in the MOSES training set: the largest library the scale can draw."""
MAX_HEAVY_ATOMS = 100
"""Largest ligand docked, in heavy atoms: above the largest drug-like molecules (cyclosporin has 85), where a
pocket-sized search box no longer holds the ligand and ETKDG alone takes minutes (a C400 chain: 3.5 min to fail)."""
ORGANIC_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"})
"""Elements every docking program types; a ligand meeko refuses is told which others it holds."""
EMBED_TIMEOUT_S = 30
"""Seconds ETKDG may search for one ligand's conformer, so that one pathological molecule cannot stall its batch
(RDKit checks the limit between attempts, so a search may overrun it by its setup time)."""


class DockingSettings(ParameterizedConfig):
    """What every docking scale shares: target, library draw, batching and Vina's search.

    Besides the fields below it takes ``resources`` (``cores`` become Vina's
    threads), ``retry``, ``env`` and ``priority`` of every parameterized scale;
    ``parameters`` must stay empty, because the tasks are the batches. The
    ``docking`` scale docks the whole library; the ``active-docking`` scale
    docks the part of it its surrogate chooses, with the same settings.
    """

    target: str = Field("PGR", description="dockstring target whose prepared receptor and box are docked into.")
    receptor: data.ReceptorSource = Field(
        "crystal",
        description="dockstring: the target's receptor and box as dockstring ships them (for PGR not 1A28, and in "
        "another frame); crystal: the target's crystal structure (PGR: 1A28 chain A, from MDAnalysisTests) prepared "
        "with PDBFixer and meeko, boxed around its ligand. Brute-force docking of the demo library put more known "
        "ligands in the top 1% with crystal (bench/README.md).",
    )
    library_size: int = Field(
        100, ge=0, le=LIBRARY_ROWS, description="Molecules drawn from the MOSES library (uniformly, by library_seed)."
    )
    seed: int = Field(0, ge=0, description="Seed of 3D embedding and of Vina's search (and of the library draw "
                      "unless library_seed is set).")  # fmt: skip
    library_seed: int | None = Field(
        None,
        ge=0,
        description="Seed of the MOSES draw; None: seed. Set it to keep one library while seed varies the rest, so "
        "that runs with several seeds are replicates of one screen (the demo's library is library_seed 0).",
    )
    ligands_per_task: int = Field(
        8, ge=1, description="Ligands docked by one task; larger batches spread the receptor maps over more ligands."
    )
    exhaustiveness: int = Field(
        8,
        ge=1,
        description="Vina's independent Monte Carlo runs per ligand; 8 is Vina's default, and 1 may miss the best "
        "pose (progesterone in PGR scored -6.9 at 1 and -9.6 at 4 kcal/mol here).",
    )
    box_size: PositiveFloat | tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = Field(
        None,
        description="Edge length(s) of the search box in angstrom, around dockstring's center; None keeps "
        "dockstring's box (a 30 A cube for PGR). A smaller box is a much smaller search: on 10 MOSES molecules on "
        "one core, a 20 A box at exhaustiveness 4 with max_evals 20000 took 0.7 s per molecule and scored within "
        "~0.3 kcal/mol of the 30 A box at exhaustiveness 8 without a cap (30 s per molecule), while the 30 A box at "
        "exhaustiveness 1 took 6.6 s and scored several kcal/mol worse.",
    )
    max_evals: int = Field(
        0,
        ge=0,
        description="Vina's cap on scoring evaluations per Monte Carlo run; 0 keeps Vina's own heuristic (which "
        "grows with the ligand's size and the box). 20000 with a 20 A box and exhaustiveness 4 scored within ~0.3 "
        "kcal/mol of exhaustiveness 8 uncapped at 1/40 of the time on 10 MOSES molecules (see box_size).",
    )
    poses: int = Field(3, ge=1, le=20, description="Poses kept per ligand in its SDF, best first.")
    include_known_ligands: bool = Field(
        True, description="Add the known progesterone-receptor ligands of data/pgr_ligands.csv to the library."
    )

    @model_validator(mode="after")
    def _batches_only(self) -> Self:
        problems = self.own_tasks_problems(
            "the docking scale makes one task per batch of ligands (set library_size and ligands_per_task)", "Vina")
        try:
            data.check_receptor(self.target, self.receptor)
        except (ValueError, ModuleNotFoundError) as error:
            problems.append(str(error))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def library(self) -> list[tuple[str, str]]:
        """``(id, smiles)`` of the MOSES draw these settings name."""
        return data.library(self.library_size, self.seed if self.library_seed is None else self.library_seed)


class DockingConfig(DockingSettings):
    """Config of the ``docking`` scale: the shared :class:`DockingSettings`, one task per batch of the library."""

    @property
    def space(self) -> ParameterSpace:
        """One point per batch (:data:`BATCH`), from the number of ligands the config asks for."""
        known = len(data.known_ligands()) if self.include_known_ligands else 0
        batches = math.ceil((self.library_size + known) / self.ligands_per_task)
        return ParameterSpace(values={BATCH: list(range(batches))} if batches else {})


class DockingScale(ParameterizedScale):
    """Dock a seeded library sample (and the known ligands) into a dockstring target, one batch per task.

    Task ids are ``<scale>.<batch>`` with the label ``param.batch``; a task's
    result is a :class:`~mummi_scales.drug_discovery.results.DockingBatch` (see :func:`dock_batch`).
    """

    config_model: ClassVar[type[DockingConfig]] = DockingConfig
    config: DockingConfig

    @cached_property
    def ligands(self) -> list[tuple[str, str]]:
        """``(id, smiles)`` of everything the scale docks: known ligands first, then the library draw."""
        known = data.known_ligands() if self.config.include_known_ligands else []
        return [*known, *self.config.library()]

    def tasks(self) -> list[TaskSpec]:
        """One task per batch of ``ligands_per_task`` ligands; none for an empty library."""
        return super().tasks() if self.config.space.values else []

    def payload(self, point: Mapping[str, Scalar], values: Mapping[str, str], env: dict[str, str]) -> CallablePayload:
        """:func:`dock_batch` on the point's slice of :attr:`ligands`, with the receptor and box of the target."""
        size = self.config.ligands_per_task
        start = int(point[BATCH]) * size
        batch: list[JsonValue] = [[ligand_id, smiles] for ligand_id, smiles in self.ligands[start : start + size]]
        return dock_payload(self.config, batch, env, self.context.campaign_dir)


def search_box(config: DockingSettings, campaign_dir: Path) -> tuple[Path, list[float], list[float]]:
    """The receptor, box center and box edges ``config`` docks with: its receptor's box, edges overridden by
    ``box_size`` (a crystal receptor is prepared below ``campaign_dir`` on first use)."""
    receptor = data.docking_receptor(config.target, config.receptor, campaign_dir)
    size = config.box_size
    edges = list(receptor.size) if size is None else [float(size)] * 3 if isinstance(size, (int, float)) else list(size)
    return receptor.pdbqt, list(receptor.center), edges


def dock_payload(
    config: DockingSettings,
    ligands: list[JsonValue],
    env: dict[str, str],
    campaign_dir: Path,
    function: str = DOCK_FUNCTION,
) -> CallablePayload:
    """The call that docks ``ligands`` (``[id, smiles]`` pairs) with ``config``'s settings.

    Shared with the active-docking scale, so that both scales dock the same way
    from the same config fields; ``function`` takes :func:`dock_batch`'s
    arguments (the active-docking scale's wrapper also records the scores for
    its training tasks).
    """
    receptor, center, size = search_box(config, campaign_dir)
    kwargs: dict[str, JsonValue] = {
        "ligands": ligands,
        "receptor": str(receptor),
        "center": center,
        "size": size,
        "exhaustiveness": config.exhaustiveness,
        "seed": config.seed,
        "poses": config.poses,
        "cpu": config.resources.cores,
        "max_evals": config.max_evals,
    }
    return CallablePayload(function=function, kwargs=kwargs, env=env)


class LigandError(Exception):
    """A ligand that cannot be docked; the message says which step failed and why."""


@contextmanager
def _rdkit_messages() -> Iterator[list[str]]:
    """Collect what RDKit logs meanwhile (it explains a parse failure only in its log), without printing it."""
    from rdkit import rdBase

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(re.sub(r"^\[[\d:]+\] ", "", record.getMessage()).removeprefix("SMILES Parse Error: "))

    rdBase.LogToPythonLogger()
    logger = logging.getLogger("rdkit")
    handler, propagate = Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def prepare_ligand(smiles: str, seed: int) -> Chem.Mol:
    """The ligand of ``smiles`` protonated at :data:`PH`, with hydrogens and one seeded ETKDG conformer.

    Protonation uses Dimorphite-DL's most probable state at pH 7.4, so that
    acids and amines carry the charges they have in the assay, which changes
    Vina's hydrogen-bond donors and acceptors.

    Raises
    ------
    LigandError
        When the SMILES does not parse or sanitize, holds no heavy atom or more
        than :data:`MAX_HEAVY_ATOMS`, protonation fails or gives more than one
        molecule (a salt or a mixture), or 3D embedding fails. The message names
        the step, the SMILES and the cause.
    """
    from dimorphite_dl import protonate_smiles
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if not smiles.strip():  # RDKit reads "" as an empty molecule, which would fail later with a puzzling message
        raise LigandError("parse: empty SMILES (an unreadable or empty record of the library file); fix or remove it")
    with _rdkit_messages() as messages:
        parsed = Chem.MolFromSmiles(smiles, sanitize=False)
    if parsed is None:
        reason = messages[0] if messages else "not valid SMILES syntax"
        raise LigandError(f"parse: {smiles!r}: {reason}")
    try:
        Chem.SanitizeMol(parsed)
    except Exception as error:  # RDKit raises several sanitization error types, all with a useful message
        raise LigandError(f"parse: {smiles!r}: {error}") from None
    if any(atom.GetAtomicNum() == 0 for atom in parsed.GetAtoms()):
        raise LigandError(f"parse: {smiles!r} holds a dummy atom '*' (a fragment's attachment point), not a molecule")
    heavy = parsed.GetNumHeavyAtoms()
    if heavy == 0:
        raise LigandError(f"parse: {smiles!r} has no heavy atom, only hydrogens: there is no ligand to dock")
    if heavy > MAX_HEAVY_ATOMS:
        raise LigandError(
            f"size: {smiles!r} has {heavy} heavy atoms, more than the {MAX_HEAVY_ATOMS} of the largest drug-like "
            "ligands; dock it in parts, or leave it out of the library"
        )
    try:
        states = protonate_smiles(Chem.MolToSmiles(parsed), ph_min=PH, ph_max=PH, max_variants=1)
        protonated = Chem.MolFromSmiles(states[0]) if states else None
    except Exception as error:  # Dimorphite-DL's own failures; one molecule must not stop its batch
        raise LigandError(f"protonation: Dimorphite-DL failed on {smiles!r}: {type(error).__name__}: {error}") from None
    if protonated is None:
        raise LigandError(f"protonation: Dimorphite-DL gave no readable state of {smiles!r} at pH {PH}")
    fragments = len(Chem.GetMolFrags(protonated))
    if fragments > 1:
        raise LigandError(
            f"protonation: {smiles!r} is {fragments} separate molecules at pH {PH} ({states[0]}): a salt or a "
            "mixture; give the one molecule to dock, without its counter-ions"
        )
    molecule = Chem.AddHs(protonated)
    parameters = AllChem.ETKDGv3()
    parameters.randomSeed = seed
    parameters.timeout = EMBED_TIMEOUT_S
    if AllChem.EmbedMolecule(molecule, parameters) != 0:
        raise LigandError(
            f"embedding: ETKDG found no 3D conformer of {smiles!r} within {EMBED_TIMEOUT_S} s (strained or "
            "contradictory geometry, such as impossible stereocentres, or a molecule too flexible to place)"
        )
    return molecule


def ligand_pdbqt(molecule: Chem.Mol, name: str = "the ligand") -> str:
    """The Vina input of an embedded ``molecule``: meeko's atom types, charges and torsion tree.

    Parameters
    ----------
    molecule:
        The ligand, with hydrogens and a conformer (:func:`prepare_ligand`).
    name:
        What messages call it: its SMILES, in a docking batch.

    Raises
    ------
    LigandError
        When meeko cannot type the molecule (an element Vina has no parameters
        for, say); the message is one line, whatever meeko printed.
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    try:
        setups = MoleculePreparation().prepare(molecule)
        text, ok, message = PDBQTWriterLegacy.write_string(setups[0])
    except Exception as error:  # meeko raises RuntimeError, ValueError or KeyError on molecules it cannot type
        ok, message = False, f"{type(error).__name__}: {error}"
    if not ok:
        unusual = sorted({atom.GetSymbol() for atom in molecule.GetAtoms()} - ORGANIC_ELEMENTS)
        holds = f"; it holds {', '.join(unusual)}, which Vina may have no atom type for" if unusual else ""
        raise LigandError(f"preparation: meeko cannot type {name}: {_one_line(message)}{holds}")
    return text


def _one_line(message: str) -> str:
    """The first line of a (multi-line) library message, saying how many lines were left out."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    return lines[0] + (f" (and {len(lines) - 1} more line(s) of the same kind)" if len(lines) > 1 else "")


def write_poses(poses_pdbqt: str, ligand_id: str, scores: Sequence[float], path: Path) -> None:
    """Write Vina's poses as SDF, hydrogens and bond orders rebuilt by meeko from the ligand's SMILES.

    Vina's PDBQT drops nonpolar hydrogens and bond orders; meeko keeps the
    SMILES and atom mapping in its remarks and rebuilds a full RDKit molecule,
    which later stages (MD) need.

    Raises
    ------
    LigandError
        When meeko cannot rebuild the molecule.
    """
    from meeko import PDBQTMolecule, RDKitMolCreate
    from rdkit import Chem

    molecules = RDKitMolCreate.from_pdbqt_mol(PDBQTMolecule(poses_pdbqt, skip_typing=True))
    if not molecules or molecules[0] is None:
        raise LigandError("poses: meeko could not rebuild the docked molecule from Vina's PDBQT")
    molecule = molecules[0]
    molecule.SetProp("_Name", ligand_id)
    with Chem.SDWriter(str(path)) as writer:
        for conformer, score in zip(molecule.GetConformers(), scores):
            molecule.SetDoubleProp("vina_score", float(score))
            writer.write(molecule, confId=conformer.GetId())


VINA_SEED_FOR_ZERO = 2**31 - 1
"""What Vina gets for seed 0, which Vina itself reads as "draw a random seed" (see :func:`vina_seed`)."""


def vina_seed(seed: int) -> int:
    """The seed handed to Vina for a config's ``seed``.

    Vina reads 0 as "draw a random seed", which made seed 0, the default, the
    one setting whose scores changed from run to run (by up to 0.4 kcal/mol,
    enough to change which molecules the active learning docks next). Every
    other seed goes to Vina as it is, so results of seeds >= 1 are unchanged.
    """
    return seed or VINA_SEED_FOR_ZERO


def dock_batch(
    ligands: list[list[str]],
    receptor: str,
    center: list[float],
    size: list[float],
    exhaustiveness: int,
    seed: int,
    poses: int = 3,
    cpu: int = 1,
    max_evals: int = 0,
) -> dict[str, JsonValue]:
    """Dock each ``[id, smiles]`` of ``ligands`` into ``receptor``; a failing ligand is reported, never raised.

    The receptor's affinity maps are computed once for the batch. Vina is
    seeded with ``seed`` for every ligand, so a ligand's score does not depend
    on the batch it lands in. Poses go to ``poses/<id>.sdf`` in the current
    (the task's working) directory.

    Parameters
    ----------
    ligands:
        ``[id, smiles]`` pairs; ids name the SDF files, so they must be
        file-name safe (library and known-ligand ids are).
    receptor:
        Path of the receptor PDBQT.
    center, size:
        Search box center and edge lengths (angstrom).
    exhaustiveness:
        Vina's Monte Carlo runs per ligand.
    seed:
        Seed of 3D embedding and of Vina.
    poses:
        Poses kept per ligand.
    cpu:
        Vina's threads: the cores the task reserved.
    max_evals:
        Vina's cap on evaluations per Monte Carlo run; 0 for Vina's heuristic.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.DockingBatch`: ligand id -> ``{"score": best
        kcal/mol, "poses": sdf path relative to the working directory, "smiles": input SMILES}`` or ``{"error":
        "<step>: <reason>", "smiles": input SMILES}``; the SMILES travels with the score so that later stages
        (the surrogate, MD) need not look the ligand up again.
    """
    from vina import Vina

    vina = Vina(sf_name="vina", cpu=cpu, seed=vina_seed(seed), verbosity=0)
    vina.set_receptor(receptor)
    vina.compute_vina_maps(center=center, box_size=size)
    folder = Path(POSES)
    folder.mkdir(exist_ok=True)
    results: dict[str, DockedLigand | FailedLigand] = {}
    for ligand_id, smiles in ligands:
        try:
            pdbqt = ligand_pdbqt(prepare_ligand(smiles, seed), repr(smiles))
            try:
                vina.set_ligand_from_string(pdbqt)
                vina.dock(exhaustiveness=exhaustiveness, n_poses=poses, max_evals=max_evals)
            except Exception as error:  # Vina raises RuntimeError or TypeError on ligands it cannot place
                raise LigandError(f"docking: vina: {error}") from None
            scores = [float(row[0]) for row in vina.energies(n_poses=poses)]
            path = folder / f"{ligand_id}.sdf"
            write_poses(vina.poses(n_poses=poses), ligand_id, scores, path)
        except LigandError as error:
            results[ligand_id] = FailedLigand(error=str(error), smiles=smiles)
            continue
        results[ligand_id] = DockedLigand(score=scores[0], poses=str(path), smiles=smiles)
    return DockingBatch(results).model_dump(mode="json")
