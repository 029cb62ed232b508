"""A restricted unpickler for model files users bring (FLAME, 3DDFA whitening).

`pickle.load` on a user file can execute arbitrary code: any global the file names is
imported and may be called. This loader resolves only an allow-list of globals
(numpy array reconstruction, dtypes, scipy sparse matrices, chumpy arrays) and refuses
every other global with an error naming it. Objects that are not plain numpy arrays
(chumpy `Ch`, sparse matrices) are first captured as inert holders of their pickled
state and only then converted to numpy/scipy objects by code here, so no constructor
of a foreign class ever runs.
"""

import io
import os
import pickle

import numpy as np
import scipy.sparse

from jaxface.errors import ModelFormatError


class RefusedGlobal(pickle.UnpicklingError):
  """The pickle names a global outside the allow-list (possibly malicious)."""


class _Holder:
  """Inert stand-in for a pickled object: records its class tag and its state."""

  kind = ""

  def __setstate__(self, state):
    self.state = state


class _ChumpyHolder(_Holder):
  kind = "chumpy"


class _CscHolder(_Holder):
  kind = "csc"


class _CsrHolder(_Holder):
  kind = "csr"


class _TorchHolder(_Holder):
  """A torch tensor or storage inside a pickle: kept inert and never converted."""
  kind = "torch"


def _torch_placeholder(*args, **kwargs):
  del args, kwargs
  return _TorchHolder()


def _reconstructor(cls, base=object, state=None):
  """`copy_reg._reconstructor` / `copyreg.__newobj__`, limited to the holders."""
  if not (isinstance(cls, type) and issubclass(cls, _Holder)) or base is not object:
    raise RefusedGlobal(f"refusing to construct {cls!r}")
  return cls()


def _latin1_encode(text, encoding="latin1"):
  """`_codecs.encode` as Python 3 writes array bytes in protocol 2; latin1 only."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise RefusedGlobal(f"refusing _codecs.encode with {encoding!r}")
  return text.encode("latin1")


def _newobj(cls, *args):
  return _reconstructor(cls)


_NUMPY_RECONSTRUCT = np._core.multiarray._reconstruct  # pylint: disable=protected-access
_NUMPY_SCALAR = np._core.multiarray.scalar  # pylint: disable=protected-access

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): _newobj,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("chumpy.ch", "Ch"): _ChumpyHolder,
    ("chumpy.reordering", "Select"): _ChumpyHolder,
    ("collections", "OrderedDict"): dict,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    # DECA's landmark_embedding.npy holds torch tensors beside the numpy arrays we read.
    ("torch._utils", "_rebuild_tensor_v2"): _torch_placeholder,
    ("torch.storage", "_load_from_bytes"): _torch_placeholder,
}
for _module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr",
                "scipy.sparse._csr", "scipy.sparse.compressed", "scipy.sparse._compressed"):
  _ALLOWED[(_module, "csc_matrix")] = _CscHolder
  _ALLOWED[(_module, "csr_matrix")] = _CsrHolder


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise RefusedGlobal(f"refusing global {module}.{name}") from None


def _convert(obj):
  """Turns holders into numpy arrays / scipy sparse matrices, recursively."""
  if isinstance(obj, dict):
    return {(k.decode("latin1") if isinstance(k, bytes) else k): _convert(v)
            for k, v in obj.items()}
  if isinstance(obj, np.ndarray) and obj.dtype == object:
    return _convert(obj.item()) if obj.shape == () else [_convert(v) for v in obj.ravel()]
  if isinstance(obj, (list, tuple)):
    return type(obj)(_convert(v) for v in obj)
  if isinstance(obj, _ChumpyHolder):
    state = obj.state if isinstance(obj.state, dict) else {}
    value = state.get("x", state.get(b"x"))
    if not isinstance(value, np.ndarray):
      raise pickle.UnpicklingError("chumpy object without an array value 'x'")
    return value
  if isinstance(obj, (_CscHolder, _CsrHolder)):
    state = _convert(obj.state) if isinstance(obj.state, dict) else {}
    try:
      shape = tuple(state.get("_shape") or state["shape"])
      parts = (state["data"], state["indices"], state["indptr"])
    except KeyError as e:
      raise pickle.UnpicklingError(f"sparse matrix without field {e}") from None
    # The class named in the pickle decides the layout (new scipy omits "format").
    cls = scipy.sparse.csr_matrix if obj.kind == "csr" else scipy.sparse.csc_matrix
    return cls(parts, shape=shape)
  return obj


def loads(data: bytes):
  """Unpickles `data` with the allow-list (latin1 for Python 2 pickles)."""
  return _convert(_RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load())


def load(path: str | os.PathLike, expected: str, *, npy: bool = False):
  """Safely unpickles a file; errors are one line naming the file and `expected`.

  Args:
    path: the pickle file.
    expected: a short description of the expected format, for the error message.
    npy: the file is a `.npy` holding a pickled object array (np.save of a dict).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ModelFormatError(f"{path}: cannot read ({e.strerror}); expected {expected}") from None
  try:
    if npy:
      stream = io.BytesIO(data)
      version = np.lib.format.read_magic(stream)
      if version == (1, 0):
        np.lib.format.read_array_header_1_0(stream)
      else:
        np.lib.format.read_array_header_2_0(stream)
      data = data[stream.tell():]
    return loads(data)
  except RefusedGlobal as e:
    raise ModelFormatError(f"{path}: not a safe {expected} pickle ({e})") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
          AttributeError, KeyError) as e:
    raise ModelFormatError(f"{path}: truncated or corrupt pickle, expected {expected} "
                           f"({type(e).__name__}: {e})") from None
