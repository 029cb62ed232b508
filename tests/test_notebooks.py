"""Executes every notebook's code cells in order (no kernel needed) and checks results."""

import json
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def run_notebook(path: pathlib.Path) -> dict:
  """Runs the code cells of `path` in one namespace; returns the namespace."""
  namespace = {"__name__": "__notebook__"}
  for index, cell in enumerate(json.loads(path.read_text())["cells"]):
    if cell["cell_type"] == "code":
      exec(compile("".join(cell["source"]), f"{path.name}[{index}]", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, full_model):
  del full_model  # built once for the session
  namespace = run_notebook(path)
  if path.name == "morphable_model.ipynb":
    assert namespace["losses"][-1] < 0.1 * namespace["losses"][0]
    assert namespace["landmark_rmse"] < 1.0
    assert namespace["surface_rmse"] < 0.5 * namespace["mean_rmse"]
  if path.name == "quickstart.ipynb":
    assert namespace["faces"].shape == (4, 224, 224, 3)
    assert namespace["landmark_error"] <= 0.06  # as tests/test_reconstruct.py
    turntable = namespace["turntable"]
    assert turntable.shape == (6, 224, 224, 3)
    assert all(float(view.max()) > 0.1 for view in turntable)  # the face is in every view
