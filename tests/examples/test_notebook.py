"""The example notebook, executed as Jupyter runs it: a real kernel, every cell in order, then its rerun cell."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).parents[2] / "examples"
NOTEBOOK = EXAMPLES / "notebooks" / "quickstart.ipynb"
KERNEL = "mummi-like-tests"
"""A kernel of the interpreter running the tests (the project's environment), whatever kernels the user has."""


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install the test kernel where Jupyter looks first (JUPYTER_PATH) and return its name."""
    folder = tmp_path / "jupyter" / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mummi-like tests", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def test_the_notebook_is_committed_with_its_outputs_cleared() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_quickstart_notebook_runs_a_campaign_and_shows_its_status_and_figures(tmp_path: Path, kernel: str) -> None:
    # A copy of the examples it uses, so that its campaign directory (runs/ beside it) lands in tmp_path.
    ignore = shutil.ignore_patterns("runs", ".ipynb_checkpoints", "__pycache__")
    for example in ("notebooks", "sweep"):
        shutil.copytree(EXAMPLES / example, tmp_path / "examples" / example, ignore=ignore)
    folder = tmp_path / "examples" / "notebooks"
    notebook = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    NotebookClient(notebook, timeout=60, kernel_name=kernel, resources={"metadata": {"path": str(folder)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = ["".join(output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in cell.outputs)
            for cell in code]
    assert "outcome='complete'" in text[1] and "ran=True" in text[1], text[1]
    assert "complete 8/8 tasks done {'estimate': {'done': 8}}" in text[2]
    assert "estimate.7" in text[2], "the tasks' DataFrame"
    assert "mean of 8 estimates: 3.1" in text[3]
    pngs = [output for output in code[4].outputs if "image/png" in output.get("data", {})]
    assert len(pngs) >= 3, "utilization, Gantt and throughput figures at least"
    assert f"{len(pngs)} figures" in text[4]
    assert text[5].strip() == "complete ran: False", "the rerun returned the finished campaign"
    assert (folder / "runs" / "quickstart" / "report" / "index.html").is_file()
