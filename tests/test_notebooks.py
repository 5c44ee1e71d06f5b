"""The example notebooks are committed executed, and run top to bottom in a quick setting.

Each notebook has a cell tagged `parameters` holding its sizes (steps, trials,
seeds ...); the test inserts the notebook's QUICK cell right after it, so the
whole notebook runs in seconds while exercising every cell. The notebooks check
their own claims with `assert`, so a broken claim fails here.
"""

import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

# Notebook -> the code that overrides its `parameters` cell in the test.
QUICK = {
    "lr_sweep.ipynb": "TRIALS = 4\nSEEDS = 2\nSTEPS = 40",
    "gradient_descent.ipynb": "STEPS = 150\nTRIALS = 16\nSEEDS = 2",
    "learning_rate_schedules.ipynb": "STEPS = 200\nSEEDS = 1",
    "regularization_and_overfitting.ipynb": (
        "STEPS = 2000\nSEEDS = 2\nLASSO_STEPS = 200\nLASSO_TRIALS = 10"
    ),
    "metrics_and_model_selection.ipynb": "STEPS = 200\nSEEDS = 2\nWIDTHS = (2, 32)",
    "early_stopping_and_pbt.ipynb": "TRIALS = 9\nSTEPS = 54\nEVAL_EVERY = 2\nLR_FIND_STEPS = 40",
    "automatic_search.ipynb": "TRIALS = 8\nSTEPS = 60\nEVAL_EVERY = 6\nCONCURRENT = 4",
    "flax_and_equinox.ipynb": "TRIALS = 2\nSTEPS = 40\nEQX_TRIALS = 2\nEQX_STEPS = 60",
}

ALL = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def _parameters_cell(notebook, name):
    tagged = [i for i, cell in enumerate(notebook.cells)
              if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert tagged, f"{name} has no cell tagged 'parameters'"
    return tagged[0]


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_committed_executed(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{name} is not committed executed top to bottom in one kernel "
        f"(execution counts {counts}); re-run it and save it with its outputs"
    )
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{name} was committed with an error output: {errors[0].get('ename')}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_notebook_executes(name, monkeypatch):
    assert name in QUICK, f"add the quick setting of {name} to QUICK in {__file__}"
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's path notice
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    notebook.cells.insert(_parameters_cell(notebook, name) + 1, nbformat.v4.new_code_cell(QUICK[name]))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot rendered"
