"""Every notebook in ``examples/`` runs top to bottom on the CPU and its assert cells hold.

Each notebook is executed in a fresh kernel (nbclient + ipykernel, in the ``test`` extra)
with one torch thread, from a temporary directory, so that it needs neither the repository root nor
``examples/`` as its working directory and leaves no file behind.  Notebooks are stored
without outputs (checked here too: the repository keeps no stale results).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "no code cell"
    stale = [i for i, c in enumerate(code) if c["outputs"] or c["execution_count"] is not None]
    assert not stale, f"code cells {stale} hold outputs: strip them before committing"
    assert any("assert " in "".join(c["source"]) for c in code[-1:]), "no closing assert cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # one torch thread in the kernel, as the suite's own (conftest.py): on a shared 2-core
    # machine a second thread waiting for a busy core costs several times the work
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
