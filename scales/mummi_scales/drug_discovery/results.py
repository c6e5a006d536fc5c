"""What the drug-discovery stages return: one pydantic model per kind of task value.

A stage reads what the stages before it returned: S2 picks its finalists from
the docking batches, S3-CG starts from the S2 segments, the ranking merges
everything, the reports draw it. Those values travel through the campaign
store as JSON, so each kind gets a model here: the producing task function
builds it and returns ``model.model_dump(mode="json")``, and every consumer
reads the value back with ``Model.model_validate``, instead of checking dict
keys where it reads them. A value that is not what a consumer expects is then
a validation error naming the field, and the schema is written once.

The field names are the keys the values have always had, so values stored by
earlier runs validate: keys a model does not name are ignored rather than
refused (a value is data already written, not input to correct). NaN and
infinities are kept as they are when dumped, as the store's JSON keeps them.

Energies are in kcal/mol, distances in angstrom, times in ps or seconds (as
each field says).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError


class StageResult(BaseModel):
    """Base of every stage value: unknown keys ignored (stored values are read, not corrected), NaN kept."""

    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="constants")


Result = TypeVar("Result", bound=BaseModel)


def parse_as(model: type[Result], value: Any) -> Result | None:
    """``value`` as a ``model``, or ``None`` when it is some other kind of value.

    For consumers that read the results of several stages and keep those of
    one kind: the ranking takes every upstream task, a report every task of
    its scale. A consumer that expects one kind only validates with
    ``model.model_validate`` and lets a wrong value be an error.
    """
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def problem(error: ValidationError) -> str:
    """The first thing wrong in a value, in one line, for a message that names the value and the fix."""
    first = error.errors()[0]
    where = ".".join(map(str, first["loc"])) or "the value"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


# ---------------------------------------------------------------- S1: docking


class DockedLigand(StageResult):
    """A ligand Vina docked."""

    score: float
    """Vina's best score (kcal/mol; lower binds better)."""
    poses: str
    """The SDF of its poses, relative to the task's working directory."""
    smiles: str
    """The SMILES it was docked from, so later stages need not look it up."""


class FailedLigand(StageResult):
    """A ligand that could not be docked."""

    error: str
    """``"<step>: <reason>"``: the step that failed (parse, protonation, embedding, preparation, docking, poses)."""
    smiles: str
    """The SMILES it came as."""


class DockingBatch(RootModel[dict[str, DockedLigand | FailedLigand]]):
    """What a dock task returns (``docking`` and ``active-docking`` scales): ligand id -> result."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    def docked(self) -> dict[str, DockedLigand]:
        """The ligands that were docked, by id."""
        return {ligand: entry for ligand, entry in self.root.items() if isinstance(entry, DockedLigand)}

    def failed(self) -> dict[str, FailedLigand]:
        """The ligands that failed, by id."""
        return {ligand: entry for ligand, entry in self.root.items() if isinstance(entry, FailedLigand)}


# ---------------------------------------------------------------- ML1: surrogate rounds


class SurrogateRound(StageResult):
    """What a training task of the ``active-docking`` scale returns: one round of active learning."""

    round: int
    """The round's number (0 first)."""
    docked: int
    """Docking calls spent so far, failures included."""
    labelled: int
    """Molecules with a docked score."""
    failed: int
    """Molecules whose docking failed."""
    trained_on: int
    """Labelled molecules the surrogate trained on (all of them: each member validates on its own few)."""
    held_out: int
    """Labelled molecules with an out-of-fold prediction (from members that held them out), on which ``r2`` and
    ``spearman`` are measured."""
    r2: float | None
    """R^2 of the out-of-fold predictions; ``None`` with fewer than 2."""
    spearman: float | None
    """Rank correlation of the out-of-fold predictions; ``None`` with fewer than 2."""
    topk_overlap: float | None
    """Fraction of the top-k shared with the previous round; ``None`` in round 0."""
    best_score: float | None
    """Best docked score so far (kcal/mol)."""
    best_id: str | None
    """Its molecule."""
    stop: str | None
    """Why active learning stops after this round, or ``None``."""
    next: list[tuple[str, str]]
    """``(id, smiles)`` of the molecules the next round docks, best first; empty when it stops."""
    seconds: float
    """The task's wall time."""


# ---------------------------------------------------------------- S2: complex MD


class ComplexPrep(StageResult):
    """What a ``complex-md`` prep task returns: the complex it built."""

    ligand: str
    smiles: str
    docking_score: float
    complex: str
    """The complex folder, relative to the campaign directory."""
    net_charge: int
    """Formal charge of the ligand as simulated."""
    atoms: int
    parameterization_seconds: float
    """antechamber and parmchk2, when the ligand was first parameterized."""
    seconds: float


class Segment(StageResult):
    """What a ``complex-md`` md task returns: one MD segment of a finalist."""

    ligand: str
    smiles: str
    docking_score: float
    complex: str
    """The complex folder, relative to the campaign directory."""
    trajectory: str
    """The segment's H5MD stream, relative to the campaign directory."""
    start_frame: str | None
    """The promoted frame the segment restarted from; ``None`` for one from the docked pose."""
    frames: int
    times: list[float]
    """Time of each frame in the segment (ps)."""
    ligand_rmsd: list[float]
    """Ligand heavy-atom RMSD from the docked pose per frame (angstrom, pocket C-alphas superposed)."""
    contacts: list[int]
    """Protein heavy atoms within 4 A of the ligand, per frame."""
    ligand_rmsd_max: float
    ligand_rmsd_final: float
    left_pocket: bool
    """Whether the RMSD exceeded ``leave_pocket_rmsd``: the docked pose did not hold."""
    leave_pocket_rmsd: float
    ns_per_day: float
    atoms: int


# ---------------------------------------------------------------- S3-CG: MM/GBSA


class ReplicaResult(StageResult):
    """What an ``mmgbsa`` replica task returns."""

    ligand: str
    replica: int
    dg_mean: float | None
    """Mean MM/GBSA binding energy over the replica's frames; ``None`` when it failed."""
    frames: int
    """Frames with energies."""
    seconds: float
    error: str | None = None
    """Why the replica failed (a recorded failure the summary leaves out), or ``None``."""


class CoarseEstimate(StageResult):
    """One ligand's S3-CG estimate: its replicas pooled."""

    dg_mean: float
    dg_sem: float
    ci_low: float
    ci_high: float
    """The bootstrap confidence interval of ``dg_mean``."""
    n_replicas: int
    n_frames: int
    failed_replicas: int
    smiles: str
    docking_score: float | None
    left_pocket: bool
    """Whether the ligand left the pocket in any S2 segment."""
    complex: str
    """The complex folder of the representative conformation."""
    frame: int
    """Its frame in the summary's estimates stream."""


class CoarseSummary(StageResult):
    """What the ``mmgbsa`` summary task returns."""

    ligands: dict[str, CoarseEstimate]
    """Ligand id -> its estimate."""
    failed: dict[str, str]
    """Ligand id -> why it has no estimate."""
    confidence: float
    """Level of the confidence intervals."""
    seconds: float


# ---------------------------------------------------------------- S3-FG: alchemical


class EstimateInterval(StageResult):
    """An S3-CG estimate as its stream carries it, which an alchemical task was promoted with."""

    dg_mean: float
    dg_sem: float
    ci_low: float
    ci_high: float


class LegResult(StageResult):
    """One leg (complex or solvent) of an alchemical run."""

    dg: float
    dg_err: float
    windows: int
    iterations: int
    seconds: float


class FineResult(StageResult):
    """What an ``alchemical`` task returns: a ligand's absolute binding free energy."""

    ligand: str
    dg: float
    dg_err: float
    method: str
    """What computed it, so estimates of different kinds can be told apart."""
    windows: int
    """Lambda windows of both legs together."""
    seconds: float
    coarse: EstimateInterval | None
    """The S3-CG estimate the task was promoted with, for comparison."""
    legs: dict[str, LegResult]
    """``complex`` and ``solvent``."""
    restraint_correction: float


# ---------------------------------------------------------------- ranking


class Finalist(StageResult):
    """A ligand S2 simulated, in the final order, with every stage's estimate."""

    ligand: str
    smiles: str
    docking_score: float
    left_pocket: bool | None
    """Whether it left the pocket in S2; ``None`` when no segment of it is known."""
    s3cg: CoarseEstimate | None
    s3fg: FineResult | None
    ligand_rmsd_max: float | None = None
    """Largest RMSD (angstrom) of the ligand from its docked pose over S2, pocket superposed; ``None`` without S2."""


class KnownLigand(StageResult):
    """Where a known active ended up: the campaign's test of whether it finds the binders it should."""

    ligand: str
    smiles: str
    rank_after_s1: int | None
    """1-based rank after S1; ``None`` when it failed preparation or docking."""
    rank_after_s3: int | None
    docking_score: float | None
    """Its Vina score (kcal/mol) when the campaign docked it."""
    predicted: float | None
    """The surrogate's last predicted score (kcal/mol) when it was never docked."""
    predicted_std: float | None


class Enrichment(StageResult):
    """Enrichment factors of the known ligands."""

    fraction: float
    """The top fraction of the library at which they are measured."""
    after_s1: float | None
    """Docked molecules by Vina score, the others by the surrogate's prediction; ``None`` without actives."""
    after_s3: float | None
    """Finalists reordered by their free-energy estimates."""
    known: int
    known_finalists: int


class RankingOutcome(StageResult):
    """What the ``ranking`` task returns: the campaign's outcome."""

    molecules: int
    docked: int
    failed: int
    finalists: list[Finalist]
    """In their final order."""
    enrichment: Enrichment
    known_ligands: list[KnownLigand]
    """Every known active of the library, best ranked after S3 first."""
