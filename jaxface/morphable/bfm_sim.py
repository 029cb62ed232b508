"""The default face model: 3DDFA's BFM-sim basis, completed and cached.

Source arrays (DESIGN.md §3): mean = (u_shp + u_exp) / 1000 in mm over 53215
vertices (xyz interleaved), 40 orthonormal shape and 10 expression columns. The
whitening std of 3DDFA's 62 parameters (12 pose | 40 shape | 10 expression) scales
the bases so coefficients are ~N(0, 1). Note: 3DDFA's training-set coefficient mean
is not zero (e.g. -0.5 std on the first shape component); jaxface keeps the model
mean as the zero point, as the morphable-model literature does.

The mesh is recentred on the centroid of the mean shape. Two variants share that
frame and the coefficient meaning: "full" (all 53215 vertices, ~99k triangles from a
spherical-unwrap Delaunay) and "front" (ears, neck and back cut; ~40k vertices).
"""

import pathlib

import numpy as np

from jaxface import assets
from jaxface import files
from jaxface import safe_pickle
from jaxface.errors import ModelFormatError
from jaxface.morphable import build
from jaxface.morphable import model as model_lib

VARIANTS = ("full", "front")
# Bump when the build changes so stale caches are rebuilt, never reused.
BUILD_VERSION = 2


def _cache_path(variant: str) -> pathlib.Path:
  return assets.cache_dir() / "models" / f"bfm_sim_{variant}_v{BUILD_VERSION}.npz"


def _load_npy(name: str) -> np.ndarray:
  path = assets.bfm_sim_path(name)
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError) as e:
    raise ModelFormatError(f"{path}: corrupt BFM-sim array ({e}); run "
                           "`jaxface assets fetch --force`") from None


def build_full() -> model_lib.MorphableModel:
  """Builds the full BFM-sim model from the extracted arrays (a few seconds)."""
  std = safe_pickle.load(assets.bfm_sim_path("param_whitening.pkl"),
                         "3DDFA param_whitening dict")["param_std"]
  mean = (_load_npy("u_shp.npy") + _load_npy("u_exp.npy")).reshape(-1, 3) / 1000.0
  num_vertices = mean.shape[0]
  shape_basis = _load_npy("w_shp_sim.npy").reshape(num_vertices, 3, -1) * std[12:52] / 1000.0
  expression_basis = _load_npy("w_exp_sim.npy").reshape(num_vertices, 3, -1) * std[52:62] / 1000.0
  landmarks = _load_npy("keypoints_sim.npy")[::3] // 3
  mean = mean - mean.mean(axis=0)
  triangles = build.triangulate(mean, build.unwrap_centre(mean[landmarks]))
  return build.complete_model(
      mean=mean, shape_basis=shape_basis, expression_basis=expression_basis,
      triangles=triangles, landmark_vertices=landmarks, name="bfm_sim_full",
      licence=assets.BFM_SIM_LICENCE)


def crop_front(full: model_lib.MorphableModel, name: str) -> model_lib.MorphableModel:
  """The front variant of a model: `build.front_mask`, largest component, same frame."""
  arrays = model_lib.to_numpy(full)
  landmark_points = np.asarray(model_lib.landmarks_3d(full, full.mean))
  keep = build.front_mask(arrays["mean"], landmark_points)
  keep = build.largest_component(len(keep), arrays["triangles"][keep[arrays["triangles"]].all(1)])
  if not keep[arrays["landmark_vertices"]].all():
    raise ValueError(f"{name}: the front crop lost landmark vertices")
  index, triangles = build.submesh(keep, arrays["triangles"])
  remap = np.full(len(keep), -1, np.int64)
  remap[index] = np.arange(len(index))
  per_vertex = ("mean", "shape_basis", "expression_basis", "albedo_mean", "albedo_basis",
                "uv", "region")
  cropped = {k: arrays[k][index] for k in per_vertex}
  cropped.update(triangles=triangles, landmark_vertices=remap[arrays["landmark_vertices"]],
                 landmark_bary=arrays["landmark_bary"], name=np.asarray(name),
                 licence=arrays["licence"])
  return model_lib.from_numpy(cropped)


def save_npz(model: model_lib.MorphableModel, path: pathlib.Path) -> None:
  """Writes a model as `.npz` atomically (temp file, then rename)."""
  files.save_npz(path, **model_lib.to_numpy(model))


def default_model(variant: str = "full") -> model_lib.MorphableModel:
  """The default model ("full" or "front"), built on first use and cached as `.npz`."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown BFM-sim variant {variant!r}; choose one of {VARIANTS}")
  path = _cache_path(variant)
  if not path.is_file():
    assets.bfm_sim_path("u_shp.npy")  # fetch first, outside the build lock
    with assets.cache_lock():
      if not path.is_file():
        assets.log(f"building the default face model ({variant}) into {path}")
        full = build_full()
        save_npz(full, _cache_path("full"))
        save_npz(crop_front(full, "bfm_sim_front"), _cache_path("front"))
  with np.load(path, allow_pickle=False) as arrays:
    return model_lib.from_numpy(arrays)
