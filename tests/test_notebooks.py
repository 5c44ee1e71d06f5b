"""The example notebooks run, top to bottom, in a quick setting."""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
QUICK = "TRIALS = 4\nSEEDS = 2\nSTEPS = 40"


@pytest.mark.parametrize("name", ["lr_sweep.ipynb"])
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's path notice
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters = [i for i, cell in enumerate(notebook.cells)
                  if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert parameters, f"{name} has no cell tagged 'parameters'"
    notebook.cells.insert(parameters[0] + 1, nbformat.v4.new_code_cell(QUICK))
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot did not render"
    assert any("best" in "".join(o.get("text", "")) or "accuracy" in str(o.get("data", {}))
               for o in outputs)
