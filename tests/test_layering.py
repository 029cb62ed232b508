"""The house's import rules (DESIGN.md §2), checked on the source files."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
  """Top-level and function-level imports of a file, as dotted module names."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _files(folder: str):
  return sorted((ROOT / folder).rglob("*.py"))


def test_the_library_never_imports_data_pipelines():
  # cli.py is the program's composition root (synth, prepare, train wire the input
  # pipelines to the library); no library module may depend on tf.data code.
  offenders = [str(p.relative_to(ROOT)) for p in _files("jaxface") if p.name != "cli.py"
               and any(m.split(".")[0] == "data_pipelines" for m in imported_modules(p))]
  assert not offenders


def test_the_library_never_imports_tensorflow():
  offenders = [str(p.relative_to(ROOT)) for p in _files("jaxface")
               if any(m.split(".")[0] in ("tensorflow", "tensorflow_datasets")
                      for m in imported_modules(p))]
  assert not offenders


@pytest.mark.parametrize("package, forbidden", [
    ("jaxface/nets", ("jaxface.render", "jaxface.losses")),
    ("jaxface/render", ("jaxface.morphable", "jaxface.nets", "jaxface.losses", "jaxface.fit")),
])
def test_package_boundaries(package, forbidden):
  offenders = [str(p.relative_to(ROOT)) for p in _files(package)
               if any(m == f or m.startswith(f + ".") for m in imported_modules(p)
                      for f in forbidden)]
  assert not offenders
