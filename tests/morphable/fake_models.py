"""Writers of small synthetic face-model files in the real on-disk formats, for tests.

Every writer builds its arrays on one small head-like mesh (`head()`: an ellipsoid of
~500 vertices in mm, facing +z, with 68 iBUG landmarks as vertices and outer eye
corners 90 mm apart), writes them to a file laid out like the licensed original, and
returns the arrays exactly as stored, so tests derive the expected conversion from
what is on disk. All randomness uses fixed seeds.

Formats written (see `jaxface/morphable/loaders.py`):
- BFM2009 `01_MorphableModel.mat` (µm, 1-based `tl`, EV = standard deviations) and
  Guo et al.'s `Exp_Pca.bin` + `std_exp.txt` + `BFM_exp_idx.mat`.
- Deng et al. `BFM_model_front.mat` (dm, 1-based `tri` and `keypoints`).
- BFM2017 statismo `.h5` (orthonormal `pcaBasis`, `pcaVariance`, 0-based cells).
- FLAME `generic_model.pkl`: a Python 2 pickle (protocol 0, 1 or 2) with a chumpy `Ch`
  `shapedirs` and a scipy `csc_matrix` `J_regressor`, written opcode by opcode by
  `dumps` below since neither Python 2 nor chumpy is available; DECA's
  `landmark_embedding.npy` (numpy 1.x pickle with torch tensors, or `np.save`) and the
  `.npz` embedding.
"""

import codecs
import dataclasses
import functools
import pathlib
import struct

import h5py
import numpy as np
import scipy.io
import scipy.sparse
import scipy.spatial

HEAD_RADII_MM = (78.0, 100.0, 95.0)  # half width (x), height (y), depth (z)
EYE_CORNER_DISTANCE_MM = 90.0

# Approximate iBUG-68 layout on a face, (x, y) in mm; +x is the subject's left, so the
# subject's right eye (36-41) has x < 0. Outer eye corners 36 and 45 are 90 mm apart.
_JAW_T = np.linspace(0.0, np.pi, 17)
LANDMARK_XY = np.concatenate([
    np.stack([-70.0 * np.cos(_JAW_T), 15.0 - 90.0 * np.sin(_JAW_T)], axis=1),  # 0-16 jaw
    [[-60, 45], [-50, 51], [-40, 53], [-29, 52], [-17, 48]],  # 17-21 right brow
    [[17, 48], [29, 52], [40, 53], [50, 51], [60, 45]],  # 22-26 left brow
    [[0, 30], [0, 20], [0, 10], [0, 0]],  # 27-30 nose bridge
    [[-15, -8], [-8, -11], [0, -13], [8, -11], [15, -8]],  # 31-35 nostrils
    [[-45, 30], [-37, 35], [-27, 35], [-18, 30], [-27, 25], [-37, 25]],  # 36-41 right eye
    [[18, 30], [27, 35], [37, 35], [45, 30], [37, 25], [27, 25]],  # 42-47 left eye
    [[-25, -35], [-16, -29], [-6, -27], [0, -28], [6, -27], [16, -29],  # 48-59 outer lips
     [25, -35], [16, -42], [6, -45], [0, -46], [-6, -45], [-16, -42]],
    [[-19, -35], [-8, -32], [0, -32], [8, -32], [19, -35],  # 60-67 inner lips
     [8, -38], [0, -39], [-8, -38]],
]).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Head:
  """A closed head-like triangle mesh in mm, centred on the ellipsoid's centre.

  Attributes:
    vertices: [V, 3] float64, mm; +x left, +y up, +z out of the face.
    triangles: [F, 3] int64 0-based, counter-clockwise seen from outside.
    landmarks: [68] int64 iBUG-68 vertex indices.
  """
  vertices: np.ndarray
  triangles: np.ndarray
  landmarks: np.ndarray


def on_ellipsoid(xy: np.ndarray) -> np.ndarray:
  """[N, 2] front (x, y) in mm -> [N, 3] points on the head ellipsoid's front (z > 0)."""
  a, b, c = HEAD_RADII_MM
  z = c * np.sqrt(1.0 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2)
  return np.concatenate([xy, z[:, None]], axis=1)


@functools.lru_cache(maxsize=None)
def head() -> Head:
  """The shared test mesh: a latitude-longitude ellipsoid, denser on the face.

  Vertices are the 68 landmark points, a jittered 10 mm grid over the face and a
  13-ring x 20-meridian lattice plus poles elsewhere, shuffled so that landmark
  indices are scattered; triangles are the convex hull (every point of a strictly
  convex surface is a hull vertex), oriented outward.
  """
  rng = np.random.default_rng(1234)
  a, b, c = HEAD_RADII_MM
  landmark_points = on_ellipsoid(LANDMARK_XY)
  gx, gy = np.meshgrid(np.arange(-55.0, 56.0, 10.0), np.arange(-65.0, 66.0, 10.0))
  grid = np.stack([gx.ravel(), gy.ravel()], axis=1) + rng.uniform(-2, 2, (gx.size, 2))
  grid = on_ellipsoid(grid)
  lat, lon = np.meshgrid(np.linspace(-np.pi / 2, np.pi / 2, 15)[1:-1],
                         np.linspace(-np.pi, np.pi, 20, endpoint=False))
  lattice = np.stack([a * np.cos(lat) * np.sin(lon), b * np.sin(lat),
                      c * np.cos(lat) * np.cos(lon)], axis=-1).reshape(-1, 3)
  lattice = np.concatenate([lattice, [[0.0, b, 0.0], [0.0, -b, 0.0]]])
  # The face is covered by the grid: drop lattice points inside it, grid points on landmarks.
  in_face = (np.abs(lattice[:, 0]) < 60) & (np.abs(lattice[:, 1]) < 70) & (lattice[:, 2] > 0)
  lattice = lattice[~in_face]
  near = scipy.spatial.cKDTree(landmark_points).query(grid)[0] < 4.0
  grid = grid[~near]
  points = np.concatenate([landmark_points, grid, lattice])
  order = rng.permutation(len(points))  # new index -> old index
  vertices = points[order]
  landmarks = np.argsort(order)[:68]
  hull = scipy.spatial.ConvexHull(vertices)
  triangles = hull.simplices.astype(np.int64)
  assert np.unique(triangles).size == len(vertices), "a point is not on the hull"
  a_, b_, c_ = (vertices[triangles[:, i]] for i in range(3))
  outward = np.sum(np.cross(b_ - a_, c_ - a_) * (a_ + b_ + c_), axis=1) > 0
  triangles[~outward] = triangles[~outward][:, ::-1]
  return Head(vertices=vertices, triangles=triangles, landmarks=landmarks)


def orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
  """[rows, cols] float64 with orthonormal columns (QR of a Gaussian matrix)."""
  q, _ = np.linalg.qr(rng.normal(size=(rows, cols)))
  return q


def write_landmark_indices(path, indices) -> pathlib.Path:
  """Text file of 68 0-based vertex indices, one line, space separated."""
  path = pathlib.Path(path)
  path.write_text(" ".join(str(int(i)) for i in indices) + "\n")
  return path


# --------------------------------------------------------------------------- Basel / Deng


def write_bfm2009(path, mesh: Head | None = None, *, num_shape: int = 199,
                  num_albedo: int = 199, offset_mm=(2.0, 15.0, -7.0),
                  reverse_winding: bool = False, seed: int = 0) -> dict:
  """BFM2009 `01_MorphableModel.mat` (MATLAB v5): µm, xyz interleaved, EV = std.

  The mean sits `offset_mm` away from the origin (BFM is not centred). Returns the
  stored arrays (plus `segbin`, an extra variable as in the real file).
  """
  mesh = mesh or head()
  rng = np.random.default_rng(seed)
  n = len(mesh.vertices)
  shape_ev = np.sort(rng.uniform(200.0, 30000.0, num_shape))[::-1]  # µm
  tex_ev = np.sort(rng.uniform(1.0, 60.0, num_albedo))[::-1]  # 0..255 units
  tex_mu = np.clip(rng.normal([160.0, 115.0, 95.0], 10.0, (n, 3)), 0, 255)
  triangles = mesh.triangles[:, ::-1] if reverse_winding else mesh.triangles
  data = {
      "shapeMU": ((mesh.vertices + offset_mm) * 1000.0).reshape(-1, 1).astype(np.float32),
      "shapePC": orthonormal_columns(rng, 3 * n, num_shape).astype(np.float32),
      "shapeEV": shape_ev.reshape(-1, 1).astype(np.float32),
      "texMU": tex_mu.reshape(-1, 1).astype(np.float32),
      "texPC": orthonormal_columns(rng, 3 * n, num_albedo).astype(np.float32),
      "texEV": tex_ev.reshape(-1, 1).astype(np.float32),
      "tl": (triangles + 1).astype(np.float64),
      "segbin": rng.integers(0, 2, (n, 4)).astype(np.float64),
  }
  scipy.io.savemat(str(path), data)
  return data


def write_guo_expressions(folder, keep: np.ndarray, *, num_expression: int = 79,
                          seed: int = 1) -> dict:
  """Guo et al. `Exp_Pca.bin`, `std_exp.txt` and `BFM_exp_idx.mat` in `folder`.

  Args:
    keep: sorted 0-based BFM2009 vertex indices of the trim (N' of them).
  Returns:
    dict with the stored `trimIndex` [N', 1] uint16 (1-based), `mean` [3N'] and
    `basis` [K, 3N'] float32 (component-major, as in the file), `std` [K] (µm), and
    `path` of `Exp_Pca.bin`.
  """
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  size = 3 * len(keep)
  mean = rng.normal(0.0, 5000.0, size).astype(np.float32)  # ignored by the loader
  basis = orthonormal_columns(rng, size, num_expression).T.astype("<f4")
  std = np.sort(rng.uniform(1000.0, 40000.0, num_expression))[::-1]
  path = folder / "Exp_Pca.bin"
  path.write_bytes(struct.pack("<i", num_expression) + mean.astype("<f4").tobytes()
                   + basis.tobytes())
  (folder / "std_exp.txt").write_text(" ".join(f"{s:.6f}" for s in std) + "\n")
  trim = (np.asarray(keep) + 1).astype(np.uint16).reshape(-1, 1)
  scipy.io.savemat(str(folder / "BFM_exp_idx.mat"), {"trimIndex": trim})
  return {"trimIndex": trim, "mean": mean, "basis": basis,
          "std": np.loadtxt(folder / "std_exp.txt"), "path": path}


def write_deng(path, mesh: Head | None = None, *, num_id: int = 80, num_exp: int = 64,
               num_tex: int = 80, offset_mm=(0.0, 3.0, -10.0), seed: int = 2) -> dict:
  """Deng et al. `BFM_model_front.mat` (savemat defaults): dm, 1-based tri/keypoints.

  Returns the stored arrays, including the extra `point_buf`, `frontmask2_idx`,
  `skinmask` and `tri_mask2` the loader ignores.
  """
  mesh = mesh or head()
  rng = np.random.default_rng(seed)
  n = len(mesh.vertices)
  tex = np.clip(rng.normal([170.0, 120.0, 100.0], 10.0, (n, 3)), 0, 255)

  def basis(std, count):  # [3N, count], decaying standard deviations
    return rng.normal(0.0, std, (3 * n, count)) * np.linspace(1.0, 0.1, count)

  data = {
      "meanshape": ((mesh.vertices + offset_mm) / 100.0).reshape(1, -1).astype(np.float32),
      "idBase": basis(0.03, num_id).astype(np.float32),
      "exBase": basis(0.01, num_exp),  # float64, as shipped
      "meantex": tex.reshape(1, -1).astype(np.float32),
      "texBase": basis(8.0, num_tex).astype(np.float32),
      "tri": (mesh.triangles + 1).astype(np.float32),
      "keypoints": (mesh.landmarks + 1).reshape(1, -1).astype(np.float32),
      "point_buf": rng.integers(1, len(mesh.triangles) + 1, (n, 8)).astype(np.float32),
      "frontmask2_idx": np.arange(1, n // 2 + 1, dtype=np.float32).reshape(-1, 1),
      "skinmask": rng.integers(0, 2, (1, n)).astype(np.float32),
      "tri_mask2": (mesh.triangles[: len(mesh.triangles) // 2] + 1).astype(np.float32),
  }
  scipy.io.savemat(str(path), data)
  return data


def write_bfm2017(path, mesh: Head | None = None, *, unit_scale: float = 1.0,
                  with_expression: bool = True, num_shape: int = 199, num_color: int = 199,
                  num_expression: int = 100, seed: int = 3) -> dict:
  """BFM2017 statismo `.h5`: orthonormal pcaBasis + pcaVariance per part, mm.

  Args:
    unit_scale: length unit of the file relative to mm (1e-3 writes metres); scales
      the means and the standard deviations, not the orthonormal bases.
  Returns:
    {part: {"mean", "pcaBasis", "pcaVariance"}} as stored, plus "cells" [3, F].
  """
  mesh = mesh or head()
  rng = np.random.default_rng(seed)
  n = len(mesh.vertices)
  colour = np.clip(rng.normal([0.65, 0.47, 0.38], 0.04, (n, 3)), 0, 1)
  parts = {
      "shape": ((mesh.vertices + (0.0, 20.0, 5.0)) * unit_scale, num_shape, 3.0 * unit_scale),
      "color": (colour, num_color, 0.05),
  }
  if with_expression:
    parts["expression"] = (np.zeros((n, 3)), num_expression, 2.0 * unit_scale)
  stored = {}
  cells = mesh.triangles.T.astype(np.int32)
  with h5py.File(path, "w") as h5:
    h5.create_group("catalog")
    h5.create_group("metadata")
    version = h5.create_group("version")
    version["majorVersion"] = np.int32(0)
    version["minorVersion"] = np.int32(9)
    for name, (mean, count, top_std) in parts.items():
      std = top_std * np.linspace(1.0, 0.05, count)
      arrays = {"mean": mean.reshape(-1).astype(np.float32),
                "pcaBasis": orthonormal_columns(rng, 3 * n, count).astype(np.float32),
                "pcaVariance": (std ** 2).astype(np.float32)}
      model = h5.create_group(f"{name}/model")
      for key, value in arrays.items():
        model[key] = value
      model["noiseVariance"] = np.float32(0.0 if name != "shape" else 1e-6 * unit_scale ** 2)
      representer = h5.create_group(f"{name}/representer")
      representer.attrs["name"] = "gravis::Mesh"
      representer.attrs["datasetType"] = "POLYGON_MESH"
      representer["points"] = (mesh.vertices.T * unit_scale).astype(np.float32)
      representer["cells"] = cells
      stored[name] = arrays
  stored["cells"] = cells
  return stored


# ------------------------------------------------------------------- Python 2 pickles

# Opcodes (pickle.py names); only those a Python 2 or numpy 1.x pickle uses.
MARK, STOP, NONE, NEWTRUE, NEWFALSE = b"(", b".", b"N", b"\x88", b"\x89"
INT, BININT, LONG1, FLOAT, BINFLOAT = b"I", b"J", b"\x8a", b"F", b"G"
STRING, BINSTRING, SHORT_BINSTRING, BINUNICODE = b"S", b"T", b"U", b"X"
BINBYTES, SHORT_BINBYTES = b"B", b"C"
TUPLE, EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3 = b"t", b")", b"\x85", b"\x86", b"\x87"
LIST, EMPTY_LIST, APPEND, APPENDS = b"l", b"]", b"a", b"e"
DICT, EMPTY_DICT, SETITEM, SETITEMS = b"d", b"}", b"s", b"u"
GLOBAL, REDUCE, BUILD, NEWOBJ, PROTO = b"c", b"R", b"b", b"\x81", b"\x80"


@dataclasses.dataclass(frozen=True)
class Global:
  """A `module name` global (class or function) as named in the pickle."""
  module: str
  name: str


@dataclasses.dataclass(frozen=True)
class Reduce:
  """`func(*args)` (REDUCE), then BUILD with `state` unless it is None."""
  func: Global
  args: tuple
  state: object = None


@dataclasses.dataclass(frozen=True)
class Instance:
  """An instance of class `cls` restored from `state` (`object.__reduce_ex__`).

  Protocol 2: `cls` EMPTY_TUPLE NEWOBJ; protocol 0/1: `copy_reg._reconstructor(cls,
  object, None)`; then BUILD `state`. `base` replaces `__builtin__ object` (for
  crafted pickles).
  """
  cls: Global
  state: object
  base: Global = Global("__builtin__", "object")


@dataclasses.dataclass(frozen=True)
class Raw:
  """Opcodes written as they are (for crafted pickles)."""
  opcodes: bytes


def ndarray(array: np.ndarray, *, numpy_module: str = "numpy.core.multiarray",
            py2: bool = True) -> Reduce:
  """An ndarray as numpy pickles it: `_reconstruct(ndarray, (0,), 'b')` + BUILD state.

  State: (1, shape, dtype, fortran_order, raw bytes) or, for object arrays, a list
  of the elements instead of bytes.
  """
  array = np.asarray(array)
  fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
  if array.dtype == object:
    data = [x for x in array.ravel()]
  else:
    data = (array.T if fortran else array).tobytes(order="C")
  state = (1, tuple(array.shape), dtype(array.dtype, py2=py2), fortran, data)
  return Reduce(Global(numpy_module, "_reconstruct"),
                (Global("numpy", "ndarray"), (0,), b"b"), state)


def dtype(dt: np.dtype, *, py2: bool = True) -> Reduce:
  """A dtype as numpy pickles it: `dtype('f8', 0, 1)` + BUILD (3, '<', ...)."""
  dt = np.dtype(dt)
  code = "O8" if dt == object else f"{dt.kind}{dt.itemsize}"
  order = "|" if dt.itemsize == 1 or dt == object else "<"
  flags = 63 if dt == object else 0
  args = (code, 0, 1) if py2 else (code, False, True)
  return Reduce(Global("numpy", "dtype"), args, (3, order, None, None, None, -1, -1, flags))


def chumpy(x: np.ndarray) -> Instance:
  """A chumpy `Ch` holding `x`, with the instance dict chumpy pickles."""
  state = {"_dirty_vars": Reduce(Global("__builtin__", "set"), (["x"],)), "_itr": None,
           "_make_dense": False, "_make_sparse": False, "_depends_on_deps": {},
           "x": ndarray(np.asarray(x, np.float64))}
  return Instance(Global("chumpy.ch", "Ch"), state)


def csc(matrix: scipy.sparse.csc_matrix) -> Instance:
  """A scipy `csc_matrix` as Python 2 scipy pickled it (instance dict with format)."""
  matrix = scipy.sparse.csc_matrix(matrix)
  state = {"_shape": tuple(matrix.shape), "maxprint": 50, "format": "csc",
           "indices": ndarray(matrix.indices.astype(np.int32)),
           "indptr": ndarray(matrix.indptr.astype(np.int32)),
           "data": ndarray(matrix.data.astype(np.float64))}
  return Instance(Global("scipy.sparse.csc", "csc_matrix"), state)


def dumps(obj, protocol: int = 2, *, py2: bool = True) -> bytes:
  """Pickles `obj` opcode by opcode, as Python 2 or numpy 1.x under Python 3 would.

  Python 2 writes protocols 0-2; `py2=False` writes protocol 3 (numpy 1.x `np.save`).
  `obj` is built from None, bool, int, float, str, bytes, tuple, list, dict and the
  `Global`/`Reduce`/`Instance`/`Raw` nodes above (numpy arrays must be wrapped with
  `ndarray`). With `py2`, str and bytes are Python 2 byte strings (STRING/BINSTRING).
  """
  assert protocol in (0, 1, 2) if py2 else protocol == 3
  out = bytearray(PROTO + bytes([protocol]) if protocol >= 2 else b"")
  binary = protocol >= 1

  def tuple_(items):
    if not items and binary:
      out.extend(EMPTY_TUPLE)
    elif protocol >= 2 and len(items) <= 3:
      for item in items:
        save(item)
      out.extend((TUPLE1, TUPLE2, TUPLE3)[len(items) - 1])
    else:
      out.extend(MARK)
      for item in items:
        save(item)
      out.extend(TUPLE)

  def save(x):
    if x is None:
      out.extend(NONE)
    elif isinstance(x, bool):
      out.extend((NEWTRUE if x else NEWFALSE) if protocol >= 2 else INT + b"0%d\n" % x)
    elif isinstance(x, (int, np.integer)):
      x = int(x)
      if not binary:
        out.extend(INT + b"%d\n" % x)
      elif -2 ** 31 <= x < 2 ** 31:
        out.extend(BININT + struct.pack("<i", x))
      else:
        raw = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
        out.extend(LONG1 + bytes([len(raw)]) + raw)
    elif isinstance(x, float):
      out.extend(BINFLOAT + struct.pack(">d", x) if binary else FLOAT + b"%r\n" % x)
    elif isinstance(x, (str, bytes)):
      if isinstance(x, str) and not py2:
        raw = x.encode("utf-8")
        out.extend(BINUNICODE + struct.pack("<I", len(raw)) + raw)
        return
      raw = x.encode("latin1") if isinstance(x, str) else x
      if not py2 and len(raw) < 256:
        out.extend(SHORT_BINBYTES + bytes([len(raw)]) + raw)
      elif not py2:
        out.extend(BINBYTES + struct.pack("<I", len(raw)) + raw)
      elif not binary:
        out.extend(STRING + b"'" + codecs.escape_encode(raw)[0] + b"'\n")
      elif len(raw) < 256:
        out.extend(SHORT_BINSTRING + bytes([len(raw)]) + raw)
      else:
        out.extend(BINSTRING + struct.pack("<i", len(raw)) + raw)
    elif isinstance(x, tuple):
      tuple_(x)
    elif isinstance(x, list):
      out.extend(EMPTY_LIST if binary else MARK + LIST)
      if binary and x:
        out.extend(MARK)
      for item in x:
        save(item)
        if not binary:
          out.extend(APPEND)
      if binary and x:
        out.extend(APPENDS)
    elif isinstance(x, dict):
      out.extend(EMPTY_DICT if binary else MARK + DICT)
      if binary and x:
        out.extend(MARK)
      for key, value in x.items():
        save(key)
        save(value)
        if not binary:
          out.extend(SETITEM)
      if binary and x:
        out.extend(SETITEMS)
    elif isinstance(x, Global):
      out.extend(GLOBAL + f"{x.module}\n{x.name}\n".encode())
    elif isinstance(x, Reduce):
      save(x.func)
      tuple_(tuple(x.args))
      out.extend(REDUCE)
      if x.state is not None:
        save(x.state)
        out.extend(BUILD)
    elif isinstance(x, Instance):
      if protocol >= 2:
        save(x.cls)
        out.extend(EMPTY_TUPLE + NEWOBJ)
      else:
        save(Reduce(Global("copy_reg", "_reconstructor"), (x.cls, x.base, None)))
      save(x.state)
      out.extend(BUILD)
    elif isinstance(x, Raw):
      out.extend(x.opcodes)
    else:
      raise TypeError(f"cannot pickle {type(x).__name__} here; wrap arrays with ndarray()")

  save(obj)
  out.extend(STOP)
  return bytes(out)


# ---------------------------------------------------------------------------------- FLAME

FLAME_PARENTS = (-1, 0, 1, 1, 1)
UINT32_MAX = 4294967295


def flame_weights(mesh: Head) -> np.ndarray:
  """[V, 5] skinning weights: jaw below the upper lip, neck low down, no eyes.

  Rows sum to 1. The jaw's set (nonzero weight) is the front below y = -34 mm.
  """
  y, z = mesh.vertices[:, 1], mesh.vertices[:, 2]
  jaw = np.clip((-34.0 - y) / 10.0, 0.0, 1.0) * (z > 0)
  neck = (1.0 - jaw) * np.clip((-50.0 - y) / 40.0, 0.0, 1.0)
  weights = np.zeros((len(y), 5))
  weights[:, 0] = 1.0 - jaw - neck
  weights[:, 1] = neck
  weights[:, 2] = jaw
  return weights


def flame_regressor(mesh: Head) -> scipy.sparse.csc_matrix:
  """[5, V] joint regressor: each row averages a few vertices (rows sum to 1)."""
  x, y, z = mesh.vertices.T
  groups = [y < -90.0,  # global: the base of the head
            (y < -70.0) & (z < 0.0),  # neck: behind it
            (np.abs(x) > 60.0) & (y > -30.0) & (y < 10.0),  # jaw hinge, both sides
            np.isin(np.arange(len(x)), mesh.landmarks[42:48]),  # left eye
            np.isin(np.arange(len(x)), mesh.landmarks[36:42])]  # right eye
  rows = np.zeros((5, len(x)))
  for j, group in enumerate(groups):
    assert group.any(), f"no vertex for joint {j}"
    rows[j, group] = 1.0 / group.sum()
  return scipy.sparse.csc_matrix(rows)


def write_flame(path, mesh: Head | None = None, *, protocol: int = 2,
                num_directions: int = 310, offset_m=(0.003, -0.02, 0.01),
                seed: int = 4) -> dict:
  """FLAME `generic_model.pkl` as a Python 2 pickle: metres, chumpy `shapedirs`.

  Pose correctives (posedirs [V, 3, 36], metres per unit of the flattened R - I of
  joints 1-4) are nonzero for the neck on all vertices and for the jaw only on
  vertices the jaw skins, so jaw rotation moves exactly the jaw's vertices.
  Returns the stored arrays (J_regressor dense, weights, ...).
  """
  mesh = mesh or head()
  rng = np.random.default_rng(seed)
  n = len(mesh.vertices)
  template = mesh.vertices / 1000.0 + offset_m
  weights = flame_weights(mesh)
  regressor = flame_regressor(mesh)
  shapedirs = rng.normal(0.0, 1e-3, (n, 3, num_directions)) * np.linspace(1, 0.1, num_directions)
  posedirs = np.zeros((n, 3, 36))
  posedirs[:, :, 0:9] = rng.normal(0.0, 2e-3, (n, 3, 9))
  posedirs[:, :, 9:18] = rng.normal(0.0, 2e-3, (n, 3, 9)) * (weights[:, 2] > 0)[:, None, None]
  data = {
      "v_template": template, "f": mesh.triangles.astype(np.uint32),
      "shapedirs": shapedirs, "posedirs": posedirs, "J_regressor": regressor,
      "weights": weights,
      "kintree_table": np.array([[UINT32_MAX, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
      "J": regressor @ template, "bs_style": "lbs", "bs_type": "lrotmin",
  }
  tree = {k: ndarray(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}
  tree["shapedirs"] = chumpy(shapedirs)
  tree["J_regressor"] = csc(regressor)
  pathlib.Path(path).write_bytes(dumps(tree, protocol))
  data["J_regressor"] = regressor.toarray()
  return data


def flame_embedding(mesh: Head | None = None, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """(faces [68] int64, bary [68, 3] float32): each landmark in a triangle at its vertex.

  The barycentric weight of the landmark's own vertex is the largest (0.6-0.9), so
  the embedded points stay within a few mm of the landmark vertices.
  """
  mesh = mesh or head()
  rng = np.random.default_rng(seed)
  faces = np.array([np.flatnonzero((mesh.triangles == v).any(axis=1))[0]
                    for v in mesh.landmarks], np.int64)
  bary = np.zeros((68, 3))
  for i, (face, vertex) in enumerate(zip(faces, mesh.landmarks)):
    own = rng.uniform(0.6, 0.9)
    rest = rng.dirichlet([1.0, 1.0]) * (1.0 - own)
    corner = int(np.flatnonzero(mesh.triangles[face] == vertex)[0])
    bary[i] = np.insert(rest, corner, own)
  return faces, bary.astype(np.float32)


def _torch_tensor(shape) -> Reduce:
  """A torch tensor as plain pickle stores it (`_rebuild_tensor_v2` of a storage)."""
  storage = Reduce(Global("torch.storage", "_load_from_bytes"), (b"\x80\x02torch-bytes.",))
  strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
  return Reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                (storage, 0, tuple(shape), strides, False,
                 Reduce(Global("collections", "OrderedDict"), ())))


def write_deca_embedding(path, faces: np.ndarray, bary: np.ndarray, *,
                         numpy1: bool = True) -> pathlib.Path:
  """DECA `landmark_embedding.npy`: a 0-d object array holding the embedding dict.

  With `numpy1`, written as numpy 1.x's `np.save` did (header 1.0, pickle protocol 3,
  `numpy.core.multiarray` names) including the torch `dynamic_lmk_*` tensors of the
  real file; else with this numpy's `np.save` (no torch entries).
  """
  embedding = {
      "static_lmk_faces_idx": np.asarray(faces[17:], np.int64),
      "static_lmk_bary_coords": np.asarray(bary[17:], np.float64),
      "full_lmk_faces_idx": np.asarray(faces, np.int64).reshape(1, 68),
      "full_lmk_bary_coords": np.asarray(bary, np.float32).reshape(1, 68, 3),
  }
  path = pathlib.Path(path)
  if not numpy1:
    holder = np.empty((), object)
    holder[()] = embedding
    np.save(path, holder)
    return path
  tree = {k: ndarray(v, py2=False) for k, v in embedding.items()}
  tree["dynamic_lmk_faces_idx"] = _torch_tensor((79, 17))
  tree["dynamic_lmk_bary_coords"] = _torch_tensor((79, 17, 3))
  holder = np.empty((), object)
  holder[()] = tree
  with open(path, "wb") as f:
    np.lib.format.write_array_header_1_0(
        f, {"descr": "|O", "fortran_order": False, "shape": ()})
    f.write(dumps(ndarray(holder, py2=False), 3, py2=False))
  return path


def write_embedding_npz(path, faces: np.ndarray, bary: np.ndarray) -> pathlib.Path:
  """The `.npz` landmark embedding: `faces [68]` and `bary [68, 3]`."""
  path = pathlib.Path(path)
  np.savez(path, faces=np.asarray(faces, np.int64), bary=np.asarray(bary, np.float64))
  return path
