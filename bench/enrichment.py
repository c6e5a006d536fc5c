"""The physics ceiling of the reference campaign: how well brute-force docking ranks the known PGR ligands.

Reads brute-force docking tables written by ``bench/dock_reference.py`` (``id,smiles,score,error``) and prints,
side by side, each known ligand's rank and score and the enrichment factor of the known ligands in the top 1%
(EF1%, :func:`mummi_scales.drug_discovery.data.enrichment_factor`, the campaign's own measure). EF_bf of the
demo's library in a receptor is what the demo's active learning tries to reach with 15% of the docking calls.
Run::

    .venv/bin/python bench/enrichment.py       # both demo tables and the 5,009-molecule reference table
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mummi_scales.drug_discovery import data

DATA = Path(__file__).resolve().parents[1] / "data"
TABLES = {
    "demo library, crystal 1A28": DATA / "pgr_demo_crystal_scores.csv.gz",
    "demo library, dockstring PGR": DATA / "pgr_demo_dockstring_scores.csv.gz",
    "reference 5,009, dockstring PGR": DATA / "pgr_reference_scores.csv.gz",
}
"""The tables compared by default, by what they are."""
FRACTION = 0.01
"""The top fraction the enrichment counts."""


def read_scores(path: Path) -> dict[str, float]:
    """Docked score per molecule id of a table; molecules whose docking failed are left out."""
    with gzip.open(path, "rt", newline="") as handle:
        return {row["id"]: float(row["score"]) for row in csv.DictReader(handle) if row["score"]}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the known ligands' ranks and EF1% of every table given (the shipped ones by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", type=Path, help="Tables to compare (default: the shipped ones).")
    args = parser.parse_args(argv)
    tables = {str(path): path for path in args.tables} if args.tables else TABLES
    console = Console(width=160)
    known = [ligand for ligand, _ in data.known_ligands()]
    table = Table(title=f"Known PGR ligands under brute-force docking (rank of each, EF{FRACTION:.0%})")
    table.add_column("known ligand")
    summary = []
    for name, path in tables.items():
        if not path.is_file():
            console.print(f"{path} is missing: make it with bench/dock_reference.py")
            return 1
        scores = read_scores(path)
        order = {ligand: rank for rank, ligand in enumerate(sorted(scores, key=lambda key: (scores[key], key)), 1)}
        cut = math.ceil(FRACTION * len(scores))
        ef = data.enrichment_factor(scores, set(known), FRACTION)
        hits = sum(1 for ligand in known if order.get(ligand, cut + 1) <= cut)
        table.add_column(f"{name}\n{len(scores)} molecules, top 1% = {cut}", justify="right")
        summary.append((name, path, order, scores, hits, ef))
    for ligand in known:
        table.add_row(ligand.removeprefix(data.KNOWN_PREFIX), *(
            f"{order[ligand]} ({scores[ligand]:.2f})" if ligand in order else "failed"
            for _, _, order, scores, _, _ in summary))  # fmt: skip
    table.add_row("EF1% (known in the top 1%)", *(f"{ef:.1f} ({hits} of {len(known)})"
                                                   for _, _, _, _, hits, ef in summary))  # fmt: skip
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
