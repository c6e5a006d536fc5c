"""Dock a fixed library into PGR once, so that active learning can be replayed against the scores without docking.

The table this writes, ``data/pgr_reference_scores.csv.gz`` (``id,smiles,score,error``, one row per molecule,
``score`` empty when ``error`` is set, in library order), is the oracle of ``bench/effective_performance.py``:
replaying the campaign against it measures how many docking calls the surrogate saves, in minutes instead of the
hours the dockings took. It was made with::

    cd /work/main && OMP_NUM_THREADS=1 nohup nice -n 10 .venv/bin/python bench/dock_reference.py --workers 1 \\
        > /tmp/dock_reference.log 2>&1 &

stopped after 520 rows and resumed with ``--workers 2`` (87 min for the other 4489 on a shared 2-core machine);
the scores do not depend on the number of workers or on where a run was resumed.

Library: ``drug_data.library(5000, seed=2024)`` (a uniform sample of the MOSES training set) plus
``drug_data.known_ligands()``. Docking: :func:`mummi_scales.drug_discovery.docking.dock_batch` into dockstring's PGR receptor
with its box center, a 20 A cubic box, exhaustiveness 4, ``max_evals`` 20000, seed 0 (3D embedding and Vina),
one Vina thread per worker: the fast setting the ``docking`` scale's ``box_size`` and ``max_evals`` fields
document (0.7 s per molecule on one core, within ~0.3 kcal/mol of exhaustiveness 8 in the full 30 A box).

The demo's library (2000 MOSES molecules, seed 0, plus the known ligands: what the demo spec docks from) was
docked whole at the demo's settings into both receptors the ``receptor:`` option offers, to measure the
brute-force enrichment EF_bf that active learning tries to reach (``bench/enrichment.py`` prints it)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/dock_reference.py --library-size 2000 --library-seed 0 \\
        --receptor dockstring --out data/pgr_demo_dockstring_scores.csv.gz     # 37 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python bench/dock_reference.py --library-size 2000 --library-seed 0 \\
        --receptor crystal --out data/pgr_demo_crystal_scores.csv.gz           # 45 min on 1 core

The run is resumable: rows are added per batch (the file rewritten to a temporary name and renamed, so a kill
leaves the previous complete file), and a restart skips ids already in the table. Poses are written to a scratch
folder that is deleted batch by batch: only the scores are kept.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mummi_scales.drug_discovery import data
from mummi_scales.drug_discovery.docking import dock_batch

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "pgr_reference_scores.csv.gz"
"""The table this script writes and ``effective_performance.py`` reads."""
COLUMNS = ("id", "smiles", "score", "error")
"""Columns of the table."""
LIBRARY_SIZE = 5000
"""Molecules drawn from MOSES: enough for a top 1% of 50 molecules, few enough to dock on one core in ~1.5 h."""
LIBRARY_SEED = 2024
"""Seed of the library draw; fixed, so that the table is the same library every time it is made."""
TARGET = "PGR"
"""The dockstring target."""
PREPARED = Path(__file__).resolve().parents[1] / "runs" / "bench-dock-reference"
"""Where ``--receptor crystal`` prepares its receptor (as a campaign does below its directory)."""
BOX = 20.0
"""Edge of the cubic search box (angstrom), around the receptor's box center: the demo's ``box_size``."""
EXHAUSTIVENESS = 4
"""Vina's Monte Carlo runs per ligand."""
MAX_EVALS = 20_000
"""Vina's cap on evaluations per Monte Carlo run."""
SEED = 0
"""Seed of embedding and of Vina."""
BATCH = 20
"""Ligands per batch: one receptor-map computation, and the unit of progress that a restart does not repeat."""


def ligands(size: int = LIBRARY_SIZE, seed: int = LIBRARY_SEED) -> list[tuple[str, str]]:
    """The fixed library: known PGR ligands first, then the MOSES sample of ``size`` drawn with ``seed``."""
    return [*data.known_ligands(), *data.library(size, seed)]


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows already in the table at ``path``; none when it does not exist yet."""
    if not path.exists():
        return []
    with gzip.open(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def write_table(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Write ``rows`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    ``mtime=0`` keeps the gzip bytes a function of the rows alone, so an
    unchanged table does not show up as a change in git.
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.getvalue().encode())
    os.replace(partial, path)


def dock_rows(batch: list[list[str]], scratch: str, receptor: data.DockingReceptor) -> list[dict[str, str]]:
    """Dock ``batch`` (``[id, smiles]`` pairs) into ``receptor`` in a fresh folder under ``scratch``; one table row
    per ligand.

    Runs in a worker process; the folder (with the poses) is deleted afterwards.
    """
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        os.chdir(folder)
        try:
            results = dock_batch(
                batch,
                str(receptor.pdbqt),
                list(receptor.center),
                [BOX] * 3,
                exhaustiveness=EXHAUSTIVENESS,
                seed=SEED,
                poses=1,
                cpu=1,
                max_evals=MAX_EVALS,
            )
        finally:
            os.chdir(scratch)
    return [
        {
            "id": ligand_id,
            "smiles": smiles,
            "score": f"{results[ligand_id]['score']:.3f}" if "score" in results[ligand_id] else "",
            "error": str(results[ligand_id].get("error", "")),
        }
        for ligand_id, smiles in batch
    ]


def batches(todo: Sequence[tuple[str, str]]) -> Iterator[list[list[str]]]:
    """``todo`` in batches of :data:`BATCH`, as ``[id, smiles]`` lists (what :func:`dock_batch` takes)."""
    for start in range(0, len(todo), BATCH):
        yield [[ligand_id, smiles] for ligand_id, smiles in todo[start : start + BATCH]]


def main(argv: Sequence[str] | None = None) -> int:
    """Dock whatever of the fixed library the table lacks, ``--workers`` batches at a time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="Docking processes, one Vina thread each.")
    parser.add_argument("--out", type=Path, default=REFERENCE, help="The table (gzip CSV) to complete.")
    parser.add_argument("--library-size", type=int, default=LIBRARY_SIZE, help="MOSES molecules drawn.")
    parser.add_argument(
        "--library-seed",
        type=int,
        default=LIBRARY_SEED,
        help="Seed of the MOSES draw (the demo's library: --library-size 2000 --library-seed 0).",
    )
    parser.add_argument(
        "--receptor",
        choices=get_args(data.ReceptorSource),
        default="dockstring",
        help="dockstring's prepared PGR, or PGR prepared from the crystal structure 1A28 (as the spec's receptor:).",
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    receptor = data.docking_receptor(TARGET, args.receptor, PREPARED)
    console.print(f"receptor {receptor.name}: {receptor.pdbqt}, box center {receptor.center}, {BOX} A cube")
    rows = read_table(args.out)
    done = {row["id"] for row in rows}
    library = ligands(args.library_size, args.library_seed)
    order = {ligand_id: position for position, (ligand_id, _) in enumerate(library)}
    todo = [(ligand_id, smiles) for ligand_id, smiles in library if ligand_id not in done]
    console.print(f"{len(library)} molecules, {len(done)} already in {args.out}, {len(todo)} to dock")
    if not todo:
        return 0
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="dock_reference-") as scratch,
        ProcessPoolExecutor(max_workers=args.workers) as pool,
        Progress(
            TextColumn("docking"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        bar = progress.add_task("dock", total=len(todo))
        pending = iter(batches(todo))
        running: set[Future[list[dict[str, str]]]] = set()
        for batch in pending:
            running.add(pool.submit(dock_rows, batch, scratch, receptor))
            if len(running) >= 2 * args.workers:
                break
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                new = future.result()
                rows.extend(new)
                rows.sort(key=lambda row: order[row["id"]])  # library order, whichever worker finished first
                write_table(args.out, rows)
                progress.advance(bar, len(new))
                if not console.is_terminal:  # a log file gets no live bar: a line per batch instead
                    console.print(f"{len(rows)} rows, {time.perf_counter() - start:.0f} s")
                following = next(pending, None)
                if following is not None:
                    running.add(pool.submit(dock_rows, following, scratch, receptor))
    seconds = time.perf_counter() - start
    failed = sum(1 for row in rows if row["error"])
    console.print(
        f"{len(todo)} docked in {seconds:.0f} s ({seconds * args.workers / len(todo):.2f} s per molecule and "
        f"worker, {args.workers} workers); table: {len(rows)} rows, {failed} failed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
