"""The restricted unpickler: numpy/scipy/chumpy data loads, code never runs."""

import builtins
import os
import pickle

import numpy as np
import pytest
import scipy.sparse

from jaxface import safe_pickle
from jaxface.errors import ModelFormatError


class _RunsCommand:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


class _Evaluates:
  def __reduce__(self):
    return (builtins.eval, ("1 + 1",))


def test_plain_arrays_scalars_and_sparse_matrices_load():
  data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5),
          "s": scipy.sparse.random(4, 5, density=0.5, format="csc", random_state=0)}
  for protocol in (0, 2, 4):
    loaded = safe_pickle.loads(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(loaded["a"], data["a"])
    assert loaded["b"] == 2.5
    np.testing.assert_array_equal(loaded["s"].toarray(), data["s"].toarray())


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_execution_is_refused(tmp_path, protocol):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pkl"
  path.write_bytes(pickle.dumps({"v_template": _RunsCommand(marker)}, protocol=protocol))
  with pytest.raises(ModelFormatError, match=r"evil.pkl.*refusing global (posix|os)\.system"):
    safe_pickle.load(path, "FLAME generic_model.pkl")
  assert not marker.exists()
  with pytest.raises(pickle.UnpicklingError, match=r"(__builtin__|builtins)\.eval"):
    safe_pickle.loads(pickle.dumps(_Evaluates(), protocol=protocol))


def test_reconstructor_refuses_foreign_classes():
  # copy_reg._reconstructor(os.system-like class, object, None) must not construct it.
  crafted = (b"ccopy_reg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.")
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    safe_pickle.loads(crafted)


def test_truncated_pickle_is_one_clear_error(tmp_path):
  path = tmp_path / "cut.pkl"
  path.write_bytes(pickle.dumps({"a": np.arange(1000)}, protocol=2)[:200])
  with pytest.raises(ModelFormatError, match="cut.pkl: truncated or corrupt"):
    safe_pickle.load(path, "test dict")
