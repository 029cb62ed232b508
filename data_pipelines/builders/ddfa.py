"""3DDFA conventions of 300W-LP and AFLW2000-3D labels, and the shape model behind them.

Label files (`<name>.mat`, MATLAB v5) hold `Pose_Para` [1, 7] = (pitch, yaw, roll in
radians, tx, ty, tz, s), `Shape_Para` [199, 1], `Exp_Para` [29, 1] (plus colour and
illumination parameters not used here). They describe the BFM2009 face of Zhu et al.
(3DDFA), in BFM's native frame and units (µm):

  V = shapeMU + expMU + shapePC @ Shape_Para + expPC @ Exp_Para       [3N] -> [N, 3]
  X = s R V + (tx, ty, tz)       R = Rx(pitch)^T Ry(yaw)^T Rz(roll)^T   (3DDFA's matrix)

with shapePC BFM's unit-norm principal components on 3DDFA's 53215-vertex trim and
expPC/expMU the 29-component expression model of 3DDFA (`Model_Expression.mat`; NOT
Guo et al.'s 79-component `Exp_Pca.bin`, which is another basis). R equals
`jaxface.render.euler_to_matrix((pitch, yaw, roll)).T`. X is in 1-based MATLAB pixels
with y up: image column = X_x, image row = H + 1 - X_y (cleardusk/3DDFA flips y as
`std_size + 1 - y`), so in jaxface pixels (centres at +0.5) x = X_x - 0.5 and
y = H + 0.5 - X_y; landmark files (`pts_3d`, `pt3d_68`) take the same -0.5.

Two sources of the basis (`load_basis`):
  - "bfm_sim" / "bfm_sim_front" (default, ships with jaxface): 3DDFA's own truncation,
    whose columns are BFM's first 40 shape components restricted to the trim (norms
    0.995-1.0, measured) and the first 10 expression components. Parameters beyond
    those are dropped, so meshes are approximate; the builders measure the error
    against the dataset's own landmarks (`landmark_error`).
  - BFM2009 `01_MorphableModel.mat` + 3DDFA's `model_info.mat` (trimIndex, tri,
    keypoints) and `Model_Expression.mat` (mu_exp, w_exp): the exact model.
"""

import dataclasses
import pathlib

import numpy as np
import scipy.io
import scipy.spatial

from data_pipelines.builders import common
from jaxface import assets
from jaxface import morphable
from jaxface.morphable import build

BFM_SIM_SPECS = ("bfm_sim", "bfm_sim_full", "bfm_sim_front")


@dataclasses.dataclass(frozen=True)
class Pose:
  """3DDFA `Pose_Para`: rotation angles (radians), translation and scale.

  Attributes:
    angles: [3] (pitch, yaw, roll), radians.
    translation: [3] (tx, ty, tz) in 1-based image pixels (y up).
    scale: pixels per µm.
  """
  angles: np.ndarray
  translation: np.ndarray
  scale: float

  @classmethod
  def from_params(cls, params) -> "Pose":
    p = np.asarray(params, np.float64).reshape(-1)
    if p.size != 7:
      raise ValueError(f"Pose_Para has {p.size} values, expected 7")
    return cls(angles=p[:3], translation=p[3:6], scale=float(p[6]))


def rotation(angles: np.ndarray) -> np.ndarray:
  """3DDFA's rotation matrix R = (Rz(roll) Ry(yaw) Rx(pitch))^T.

  Args:
    angles: [3] (pitch, yaw, roll), radians.
  Returns:
    [3, 3] float64, acting on column vectors of BFM coordinates.
  """
  x, y, z = np.asarray(angles, np.float64)
  rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
  return (rz @ ry @ rx).T


def project(vertices: np.ndarray, pose: Pose, image_height: int) -> np.ndarray:
  """3DDFA's orthographic projection of native-frame vertices into jaxface pixels.

  Args:
    vertices: [N, 3] BFM-frame vertices, µm.
    pose: the example's `Pose`.
    image_height: H of the labelled image, pixels.
  Returns:
    [N, 3] float64: x, y in jaxface pixels (centres at +0.5, y down) and z, the
    depth towards the camera in the same pixel units (3DDFA's X_z).
  """
  points = pose.scale * vertices @ rotation(pose.angles).T + pose.translation
  return np.stack([points[:, 0] - 0.5, image_height + 0.5 - points[:, 1], points[:, 2]], 1)


def to_pixels(points: np.ndarray) -> np.ndarray:
  """3DDFA/MATLAB 1-based pixel coordinates -> jaxface pixels (centres at +0.5)."""
  return np.asarray(points, np.float64) - 0.5


def read_mat(path: pathlib.Path, keys: tuple[str, ...]) -> dict | None:
  """The `keys` of a MATLAB file as float64 arrays, or None if any is unreadable."""
  try:
    data = scipy.io.loadmat(str(path), variable_names=list(keys))
    return {k: np.asarray(data[k], np.float64) for k in keys}
  except Exception:  # noqa: BLE001  scipy raises many types for broken files
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Basis:
  """A 3DDFA-parametrised face model with the topology needed for UV position maps.

  Attributes:
    mean: [V, 3] float64 mean shape incl. the expression mean, BFM frame, µm.
    shape: [3V, Ks] float32 µm per unit of `Shape_Para` (rows xyz-interleaved).
    expression: [3V, Ke] float32 µm per unit of `Exp_Para`.
    triangles: [F, 3] int64 vertex indices.
    uv: [V, 2] float64 texture coordinates in [0, 1], v up.
    landmarks: [68] int64 iBUG-68 vertex indices.
    name: what the basis was built from.
    exact: True when the basis has every component of the 300W-LP labels.
  """
  mean: np.ndarray
  shape: np.ndarray
  expression: np.ndarray
  triangles: np.ndarray
  uv: np.ndarray
  landmarks: np.ndarray
  name: str
  exact: bool

  def vertices(self, shape_params: np.ndarray, expression_params: np.ndarray) -> np.ndarray:
    """[V, 3] µm vertices of label parameters (extra components dropped, missing ones 0)."""
    offset = (self.shape @ _fit(shape_params, self.shape.shape[1])
              + self.expression @ _fit(expression_params, self.expression.shape[1]))
    return self.mean + offset.reshape(-1, 3)


def _fit(params: np.ndarray, count: int) -> np.ndarray:
  params = np.asarray(params, np.float32).reshape(-1)[:count]
  return np.pad(params, (0, count - params.size))


def load_basis(model: str, ddfa_dir: str = "") -> Basis:
  """The label basis of a builder config: BFM-sim (approximate) or BFM2009 (exact).

  Args:
    model: "bfm_sim" / "bfm_sim_front", or a path to BFM2009's 01_MorphableModel.mat.
    ddfa_dir: with a BFM2009 path, the folder holding 3DDFA's model_info.mat and
      Model_Expression.mat (3DDFA_Release/Matlab of the 3DDFA download).
  Raises:
    DatasetLayoutError: one line naming the missing or unreadable file.
  """
  if model in BFM_SIM_SPECS:
    return _bfm_sim_basis(model)
  path = pathlib.Path(model).expanduser()
  if path.suffix != ".mat" or not ddfa_dir:
    raise common.DatasetLayoutError(
        f"{model}: 300W-LP meshes need model='bfm_sim' or BFM2009's 01_MorphableModel.mat "
        "together with ddfa_dir (the folder of 3DDFA's model_info.mat and "
        "Model_Expression.mat)")
  return _bfm2009_basis(path, pathlib.Path(ddfa_dir).expanduser())


def _load_required(path: pathlib.Path, keys: tuple[str, ...], what: str) -> dict:
  if not path.is_file():
    raise common.DatasetLayoutError(f"{path}: no such file (expected {what})")
  data = read_mat(path, keys)
  if data is None:
    raise common.DatasetLayoutError(f"{path}: not a readable {what} with {', '.join(keys)}")
  return data


def _bfm2009_basis(path: pathlib.Path, ddfa_dir: pathlib.Path) -> Basis:
  bfm = _load_required(path, ("shapeMU", "shapePC"), "BFM2009 01_MorphableModel.mat")
  info = _load_required(ddfa_dir / "model_info.mat", ("trimIndex", "tri", "keypoints"),
                        "3DDFA model_info.mat")
  expression = _load_required(ddfa_dir / "Model_Expression.mat", ("mu_exp", "w_exp"),
                              "3DDFA Model_Expression.mat")
  trim = info["trimIndex"].astype(np.int64).reshape(-1) - 1
  rows = (3 * trim[:, None] + np.arange(3)).reshape(-1)
  num_vertices = trim.size
  mean = (bfm["shapeMU"].reshape(-1)[rows] + expression["mu_exp"].reshape(-1)).reshape(-1, 3)
  triangles = info["tri"].astype(np.int64)
  triangles = (triangles.T if triangles.shape[0] == 3 else triangles) - 1
  landmarks = info["keypoints"].astype(np.int64).reshape(-1) - 1
  if (expression["w_exp"].shape[0] != 3 * num_vertices or landmarks.size != 68
      or triangles.max() >= num_vertices or landmarks.max() >= num_vertices):
    raise common.DatasetLayoutError(
        f"{ddfa_dir}: model_info.mat and Model_Expression.mat do not describe the same "
        f"{num_vertices}-vertex trim of {path}")
  mean_mm = mean / 1000.0
  uv = build.spherical_uv(mean_mm, build.unwrap_centre(mean_mm[landmarks]))
  return Basis(mean=mean, shape=bfm["shapePC"][rows].astype(np.float32),
               expression=expression["w_exp"].astype(np.float32), triangles=triangles,
               uv=uv.astype(np.float64), landmarks=landmarks, name=f"bfm2009:{path.name}",
               exact=True)


def _bfm_sim_basis(spec: str) -> Basis:
  """BFM-sim's raw arrays (µm, native frame) on the vertices of the cached model."""
  raw_mean = (np.load(assets.bfm_sim_path("u_shp.npy")).astype(np.float64)
              + np.load(assets.bfm_sim_path("u_exp.npy"))).reshape(-1, 3)
  shape = np.load(assets.bfm_sim_path("w_shp_sim.npy"))
  expression = np.load(assets.bfm_sim_path("w_exp_sim.npy"))
  model = morphable.load_model(spec)
  # The model is BFM-sim's mean in mm, recentred on its centroid: find each model
  # vertex among the raw vertices (the front variant is a subset).
  centred = raw_mean / 1000.0 - (raw_mean / 1000.0).mean(axis=0)
  distance, index = scipy.spatial.cKDTree(centred).query(np.asarray(model.mean, np.float64))
  if distance.max() > 0.01:
    raise common.DatasetLayoutError(
        f"{spec}: model vertices are not BFM-sim's ({distance.max():.3g} mm away); "
        "rebuild the cache with `jaxface assets fetch --force`")
  rows = (3 * index[:, None] + np.arange(3)).reshape(-1)
  return Basis(mean=raw_mean[index], shape=shape[rows], expression=expression[rows],
               triangles=np.asarray(model.triangles, np.int64),
               uv=np.asarray(model.uv, np.float64),
               landmarks=np.asarray(model.landmarks, np.int64), name=spec, exact=False)
