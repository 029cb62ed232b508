"""Loaders for the licensed face models users bring, converted to `MorphableModel`.

Supported native formats (DESIGN.md §3), each converted once and cached as `.npz`
keyed by the sha256 of its source files:

- BFM2009 `01_MorphableModel.mat` (shapeMU/PC/EV, texMU/PC/EV, tl; µm, 1-based
  triangles, EV = standard deviations), optionally with Guo et al.'s `Exp_Pca.bin`
  plus `std_exp.txt` and `BFM_exp_idx.mat` beside it (the expression basis lives on
  the 53215-vertex trim of BFM, so the model is trimmed to it).
- Deng et al. `BFM_model_front.mat` (35709 vertices, dm, 1-based tri/keypoints).
- BFM2017 `.h5` (statismo: orthonormal pcaBasis with pcaVariance, mm, 0-based cells).
- FLAME `generic_model.pkl` (metres, chumpy arrays; loaded by `safe_pickle`) with a
  landmark embedding: DECA's `landmark_embedding.npy` (68 points) or a `.npz` with
  `faces [68]` and `bary [68, 3]`.

Models without iBUG-68 landmarks (BFM2009, BFM2017) take them from `landmarks`, a
text file of 68 0-based vertex indices; by default BFM2009's are transferred from the
default BFM-sim model, whose vertices are a subset of BFM2009's in the same frame.
All models are recentred on their mean shape's centroid and converted to mm.
"""

import hashlib
import pathlib
import struct
import zipfile

import numpy as np
import scipy.io
import scipy.spatial

from jaxface import assets
from jaxface import safe_pickle
from jaxface.errors import ModelFormatError
from jaxface.morphable import bfm_sim
from jaxface.morphable import build
from jaxface.morphable import model as model_lib

BFM2009_LICENCE = "Basel Face Model 2009 (University of Basel): licensed, non-commercial."
DENG_LICENCE = "BFM2009 front crop of Deng et al. 2019 (with Guo et al. expressions): non-commercial."
BFM2017_LICENCE = "Basel Face Model 2017 (University of Basel): licensed, non-commercial."
FLAME_LICENCE = "FLAME 2020 (MPI for Intelligent Systems): licensed, non-commercial research."
FLAME_JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")


def _fail(path, what: str) -> ModelFormatError:
  return ModelFormatError(f"{path}: {what}")


def _require_file(path: pathlib.Path, expected: str) -> None:
  if not path.is_file():
    raise _fail(path, f"no such file (expected {expected})")


def _loadmat(path: pathlib.Path, expected: str, keys: tuple[str, ...]) -> dict:
  _require_file(path, expected)
  try:
    data = scipy.io.loadmat(str(path))
  except NotImplementedError:
    raise _fail(path, f"MATLAB v7.3 files are not supported; re-save as v7 ({expected})") from None
  except Exception as e:  # scipy raises many types for truncated or foreign files.
    raise _fail(path, f"not a readable MATLAB file, expected {expected} ({e})") from None
  missing = [k for k in keys if k not in data]
  if missing:
    raise _fail(path, f"missing variables {missing}; expected {expected}")
  return data


def _as_vertices(flat: np.ndarray) -> np.ndarray:
  """(3N,) or (3N, 1) or (1, 3N) interleaved xyz -> [N, 3] float64."""
  return np.asarray(flat, np.float64).reshape(-1, 3)


def _as_basis(flat: np.ndarray, std=None) -> np.ndarray:
  """(3N, K) interleaved rows -> [N, 3, K], scaled by per-column std if given."""
  basis = np.asarray(flat, np.float64)
  if std is not None:
    basis = basis * np.asarray(std, np.float64).reshape(1, -1)
  return basis.reshape(-1, 3, basis.shape[-1])


def _read_landmark_file(path) -> np.ndarray:
  path = pathlib.Path(path)
  _require_file(path, "68 0-based vertex indices, whitespace separated")
  try:
    indices = np.loadtxt(path, dtype=np.int64).ravel()
  except ValueError as e:
    raise _fail(path, f"not a list of integer vertex indices ({e})") from None
  if indices.shape != (68,):
    raise _fail(path, f"expected 68 vertex indices, found {indices.size}")
  return indices


def _check_landmarks(indices: np.ndarray, num_vertices: int, source) -> np.ndarray:
  if indices.min() < 0 or indices.max() >= num_vertices:
    raise _fail(source, f"landmark indices out of range for {num_vertices} vertices")
  return indices


def transfer_bfm_sim_landmarks(mean_mm: np.ndarray, source) -> np.ndarray:
  """68 vertex indices of a BFM-frame mesh: nearest vertices to BFM-sim's landmarks.

  Args:
    mean_mm: [V, 3] neutral mean in BFM's original frame (not recentred), mm.
  """
  raw = np.load(assets.bfm_sim_path("u_shp.npy")).reshape(-1, 3) / 1000.0
  targets = raw[np.load(assets.bfm_sim_path("keypoints_sim.npy"))[::3] // 3]
  distance, index = scipy.spatial.cKDTree(mean_mm).query(targets)
  if np.median(distance) > 5.0:
    raise _fail(source, f"cannot transfer landmarks from BFM-sim (median distance "
                f"{np.median(distance):.1f} mm); pass a file of 68 vertex indices")
  return index


def load_bfm2009(path, *, exp_pca=None, landmarks=None) -> model_lib.MorphableModel:
  """BFM2009 `01_MorphableModel.mat` (+ optional `Exp_Pca.bin`) -> model."""
  path = pathlib.Path(path)
  expected = "BFM2009 01_MorphableModel.mat"
  data = _loadmat(path, expected, ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC",
                                   "texEV", "tl"))
  mean = _as_vertices(data["shapeMU"]) / 1000.0
  num_vertices = mean.shape[0]
  shape = _as_basis(data["shapePC"], data["shapeEV"]) / 1000.0
  albedo_mean = _as_vertices(data["texMU"]) / 255.0
  albedo_basis = _as_basis(data["texPC"], data["texEV"]) / 255.0
  triangles = np.asarray(data["tl"], np.int64) - 1
  if shape.shape[0] != num_vertices or triangles.max() >= num_vertices or triangles.min() < 0:
    raise _fail(path, f"inconsistent sizes in {expected}")
  if landmarks is None:
    indices = transfer_bfm_sim_landmarks(mean, path)
  else:
    indices = _check_landmarks(_read_landmark_file(landmarks), num_vertices, landmarks)
  expression = np.zeros((num_vertices, 3, 0))
  if exp_pca is not None:
    keep, expression = _read_guo_expressions(pathlib.Path(exp_pca))
    remap = np.full(num_vertices, -1, np.int64)
    remap[keep] = np.arange(keep.size)
    if (remap[indices] < 0).any():
      raise _fail(exp_pca, "a landmark vertex is outside the expression basis' trim")
    mean, shape, albedo_mean, albedo_basis = (a[keep] for a in (mean, shape, albedo_mean,
                                                                  albedo_basis))
    triangles = remap[triangles[np.all(remap[triangles] >= 0, axis=1)]]
    indices = remap[indices]
  return build.complete_model(
      mean=mean - mean.mean(axis=0), shape_basis=shape, expression_basis=expression,
      albedo_mean=albedo_mean, albedo_basis=albedo_basis, triangles=triangles,
      landmark_vertices=indices, name="bfm2009", source=path, licence=BFM2009_LICENCE)


def _read_guo_expressions(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Guo et al. `Exp_Pca.bin` + `std_exp.txt` + `BFM_exp_idx.mat` (same folder).

  Layout: int32 K, float32 mean [3N] (unused), float32 basis [K, 3N] component-major,
  N = 53215; `std_exp.txt` holds K standard deviations (µm); `trimIndex` the 1-based
  BFM2009 vertex of each of the N vertices.
  Returns:
    (kept BFM2009 vertex indices [N], basis [N, 3, K] in mm per unit coefficient).
  """
  _require_file(path, "Guo et al. Exp_Pca.bin")
  trim = _loadmat(path.parent / "BFM_exp_idx.mat", "BFM_exp_idx.mat with trimIndex",
                  ("trimIndex",))["trimIndex"]
  keep = np.asarray(trim, np.int64).ravel() - 1
  std_path = path.parent / "std_exp.txt"
  _require_file(std_path, "std_exp.txt with the expression standard deviations")
  raw = path.read_bytes()
  if len(raw) < 4:
    raise _fail(path, "truncated Exp_Pca.bin (no header)")
  (count,) = struct.unpack("<i", raw[:4])
  size = 3 * keep.size
  needed = 4 + 4 * size * (1 + count)
  if count <= 0 or len(raw) < needed:
    raise _fail(path, f"truncated Exp_Pca.bin: {len(raw)} bytes, expected {needed} for "
                f"{count} components on {keep.size} vertices")
  basis = np.frombuffer(raw, "<f4", count=size * count, offset=4 + 4 * size)
  try:
    std = np.loadtxt(std_path, dtype=np.float64).ravel()
  except ValueError as e:
    raise _fail(std_path, f"not a list of numbers ({e})") from None
  if std.size != count:
    raise _fail(std_path, f"{std.size} values for {count} expression components")
  return keep, _as_basis(basis.reshape(count, size).T, std) / 1000.0


def load_deng(path) -> model_lib.MorphableModel:
  """Deng et al. `BFM_model_front.mat` -> model (80 id, 64 expression, 80 albedo)."""
  path = pathlib.Path(path)
  data = _loadmat(path, "Deng et al. BFM_model_front.mat",
                  ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "keypoints"))
  mean = _as_vertices(data["meanshape"]) * 100.0  # decimetres -> mm
  triangles = np.asarray(data["tri"], np.int64) - 1
  indices = np.asarray(data["keypoints"], np.int64).ravel() - 1
  if indices.size != 68 or triangles.max() >= mean.shape[0]:
    raise _fail(path, "inconsistent keypoints or triangles in BFM_model_front.mat")
  return build.complete_model(
      mean=mean - mean.mean(axis=0), shape_basis=_as_basis(data["idBase"]) * 100.0,
      expression_basis=_as_basis(data["exBase"]) * 100.0,
      albedo_mean=_as_vertices(data["meantex"]) / 255.0,
      albedo_basis=_as_basis(data["texBase"]) / 255.0, triangles=triangles,
      landmark_vertices=indices, name="deng_bfm_front", source=path, licence=DENG_LICENCE)


def _h5_part(h5, group: str, path):
  """(mean [N, 3], basis [N, 3, K] scaled by sqrt(variance)) of a statismo model."""
  model = h5[group]["model"]
  mean = _as_vertices(model["mean"][()])
  basis = _as_basis(model["pcaBasis"][()], np.sqrt(np.maximum(model["pcaVariance"][()], 0)))
  if basis.shape[0] != mean.shape[0]:
    raise _fail(path, f"{group}: basis rows do not match the mean")
  return mean, basis


def load_bfm2017(path, *, landmarks) -> model_lib.MorphableModel:
  """BFM2017 statismo `.h5` -> model; `landmarks` is a file of 68 vertex indices."""
  import h5py  # pylint: disable=import-outside-toplevel
  path = pathlib.Path(path)
  _require_file(path, "BFM2017 .h5")
  if landmarks is None:
    raise _fail(path, "BFM2017 has no iBUG-68 landmarks: pass a file of 68 vertex indices")
  try:
    with h5py.File(path, "r") as h5:
      mean, shape = _h5_part(h5, "shape", path)
      albedo_mean, albedo_basis = _h5_part(h5, "color", path)
      if "expression" in h5:
        _, expression = _h5_part(h5, "expression", path)
      else:
        expression = np.zeros(mean.shape + (0,))
      triangles = np.asarray(h5["shape/representer/cells"][()], np.int64).T
  except (OSError, KeyError) as e:
    raise _fail(path, f"not a BFM2017 statismo .h5 ({e})") from None
  indices = _check_landmarks(_read_landmark_file(landmarks), mean.shape[0], landmarks)
  # statismo files do not record units: take the power of ten that makes the head
  # 100-300 mm wide (BFM2017 ships in mm; scalismo exports may use other units).
  width = np.ptp(mean[:, 0])
  scale = 10.0 ** np.round(np.log10(200.0 / width)) if width > 0 else 1.0
  mean, shape, expression = mean * scale, shape * scale, expression * scale
  return build.complete_model(
      mean=mean - mean.mean(axis=0), shape_basis=shape, expression_basis=expression,
      albedo_mean=albedo_mean, albedo_basis=albedo_basis, triangles=triangles,
      landmark_vertices=indices, name="bfm2017", source=path, licence=BFM2017_LICENCE)


def _flame_embedding(path, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """68-point barycentric embedding -> (triangle corners [68, 3], bary [68, 3])."""
  if path is None:
    raise ModelFormatError("FLAME needs a 68-landmark embedding: pass DECA's "
                           "landmark_embedding.npy (or an .npz with faces and bary)")
  path = pathlib.Path(path)
  _require_file(path, "FLAME landmark embedding (.npy from DECA or .npz)")
  if path.suffix == ".npz":
    try:
      with np.load(path, allow_pickle=False) as data:
        faces, bary = data["faces"], data["bary"]
    except _NPZ_ERRORS as e:
      raise _fail(path, f"not an .npz embedding with faces [68] and bary [68, 3] "
                  f"({type(e).__name__}: {e})") from None
  else:
    data = safe_pickle.load(path, "DECA landmark_embedding.npy", npy=True)
    if not isinstance(data, dict) or "full_lmk_faces_idx" not in data:
      raise _fail(path, "no full_lmk_faces_idx; expected DECA's landmark_embedding.npy")
    faces, bary = data["full_lmk_faces_idx"], data["full_lmk_bary_coords"]
  faces = np.asarray(faces, np.int64).reshape(-1)
  bary = np.asarray(bary, np.float64).reshape(-1, 3)
  if faces.shape != (68,) or bary.shape != (68, 3) or faces.max() >= len(triangles):
    raise _fail(path, "expected 68 landmark faces and [68, 3] barycentric coordinates")
  return triangles[faces], bary


def load_flame(path, *, landmarks) -> model_lib.MorphableModel:
  """FLAME `generic_model.pkl` (+ landmark embedding) -> articulated model.

  Shape uses the first 300 `shapedirs` columns, expression the remaining 100.
  """
  path = pathlib.Path(path)
  data = safe_pickle.load(path, "FLAME generic_model.pkl")
  keys = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
  if not isinstance(data, dict) or any(k not in data for k in keys):
    raise _fail(path, f"expected a FLAME dict with keys {keys}")
  metres_to_mm = 1000.0
  template = np.asarray(data["v_template"], np.float64) * metres_to_mm
  directions = np.asarray(data["shapedirs"], np.float64) * metres_to_mm
  regressor = data["J_regressor"]
  regressor = np.asarray(regressor.todense() if hasattr(regressor, "todense") else regressor)
  parents = np.asarray(data["kintree_table"], np.int64)[0].copy()
  parents[0] = -1  # stored as uint32 max
  num_shape = min(300, directions.shape[-1])
  triangles = np.asarray(data["f"], np.int64)
  corners, bary = _flame_embedding(landmarks, triangles)
  # Recentring moves the template; joints follow because regressor rows sum to 1.
  template = template - template.mean(axis=0)
  skinning = dict(skin_joint_regressor=regressor,
                  skin_weights=np.asarray(data["weights"]),
                  skin_pose_basis=np.asarray(data["posedirs"], np.float64) * metres_to_mm,
                  skin_parents=parents, skin_joint_names=np.asarray(FLAME_JOINTS[:len(parents)]))
  return build.complete_model(
      mean=template, shape_basis=directions[..., :num_shape],
      expression_basis=directions[..., num_shape:], triangles=triangles,
      landmark_vertices=corners, landmark_bary=bary, skinning=skinning, name="flame", source=path,
      licence=FLAME_LICENCE)


def _digest(paths) -> str:
  digest = hashlib.sha256()
  for p in paths:
    digest.update(pathlib.Path(p).name.encode())
    with open(p, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()[:16]


_NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _read_npz(path: pathlib.Path) -> model_lib.MorphableModel:
  try:
    with np.load(path, allow_pickle=False) as arrays:
      return model_lib.from_numpy(arrays)
  except _NPZ_ERRORS as e:
    raise _fail(path, f"not a jaxface model .npz ({type(e).__name__}: {e})") from None


def detect_format(path) -> str:
  """'bfm2009' | 'deng' | 'bfm2017' | 'flame' | 'npz' from extension and contents."""
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix == ".npz":
    return "npz"
  if suffix in (".h5", ".hdf5"):
    return "bfm2017"
  if suffix == ".pkl":
    return "flame"
  if suffix == ".mat":
    _require_file(path, "a BFM2009 or Deng et al. .mat")
    try:
      names = {name for name, _, _ in scipy.io.whosmat(str(path))}
    except Exception as e:  # foreign or truncated file
      raise _fail(path, f"not a readable MATLAB file ({e})") from None
    if {"shapeMU", "shapePC"} <= names:
      return "bfm2009"
    if {"meanshape", "idBase"} <= names:
      return "deng"
    raise _fail(path, "neither BFM2009 (shapeMU, shapePC) nor Deng et al. (meanshape, idBase)")
  raise _fail(path, "unknown model format; expected .mat (BFM2009, Deng), .h5 (BFM2017), "
              ".pkl (FLAME) or a jaxface .npz")


def load_model(spec="bfm_sim", *, landmarks=None, exp_pca=None,
               use_cache: bool = True) -> model_lib.MorphableModel:
  """Any supported model: "bfm_sim" / "bfm_sim_front" or a path to a model file.

  Args:
    spec: default model name or path (.mat, .h5, .pkl, .npz).
    landmarks: landmark indices file (BFM2009/2017) or embedding (FLAME).
    exp_pca: Guo et al. `Exp_Pca.bin` for BFM2009.
    use_cache: read/write the converted `.npz` in the cache directory.
  """
  if spec in ("bfm_sim", "bfm_sim_full", "bfm_sim_front"):
    return bfm_sim.default_model("front" if spec.endswith("front") else "full")
  path = pathlib.Path(spec).expanduser()
  kind = detect_format(path)
  if kind == "npz":
    _require_file(path, "a jaxface model .npz")
    return _read_npz(path)
  _require_file(path, f"a {kind} model file")
  sources = [pathlib.Path(p) for p in (path, landmarks, exp_pca) if p is not None]
  if exp_pca is not None:  # Guo's basis is read with its two companion files
    sources += [sources[-1].parent / "std_exp.txt", sources[-1].parent / "BFM_exp_idx.mat"]
  for source in sources:
    _require_file(source, f"an input of the {kind} model")
  cached = assets.cache_dir() / "models" / f"{kind}_{_digest(sources)}.npz"
  if use_cache and cached.is_file():
    try:
      return _read_npz(cached)
    except ModelFormatError as e:  # a damaged cache entry is rebuilt, not fatal
      assets.log(f"rebuilding the cached model ({e})")
  if kind == "bfm2009":
    result = load_bfm2009(path, exp_pca=exp_pca, landmarks=landmarks)
  elif kind == "deng":
    result = load_deng(path)
  elif kind == "bfm2017":
    result = load_bfm2017(path, landmarks=landmarks)
  else:
    result = load_flame(path, landmarks=landmarks)
  if use_cache:
    bfm_sim.save_npz(result, cached)
  return result
