"""300W-LP builder: fake BFM2009 + 3DDFA model files, labels in the real .mat layout.

The labels' `pts_3d` are computed here by 3DDFA's own recipe (face3d's rotation
matrices written out, 1-based pixels, y = H + 1 - Y), independently of the builder, so
the landmark and position-map checks test the conventions, not a copy of them.
"""

import pathlib

import numpy as np
import pytest
import scipy.io

from data_pipelines.builders import common
from data_pipelines.builders import ddfa
from jaxface.render import uv_raster
from data_pipelines.builders import w300lp
from jaxface import assets
from jaxface import render
from tests.data_pipelines.builders import fakes
from tests.morphable import fake_models

SIZE = 96
UV_SIZE = 256
HEIGHT = WIDTH = 450
NUM_EXPRESSION = 29


def rotation_3ddfa(pitch, yaw, roll):
  """face3d's `angle2matrix_3ddfa`: R = Rx Ry Rz with 3DDFA's sign conventions."""
  cx, sx, cy, sy, cz, sz = (np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw),
                            np.cos(roll), np.sin(roll))
  rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
  ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
  rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
  return rx @ ry @ rz


def project_3ddfa(vertices_um, pose, depth=False):
  """3DDFA: X = s R V + t, in 1-based image pixels with y flipped: (X, H + 1 - Y[, Z])."""
  points = pose[6] * vertices_um @ rotation_3ddfa(*pose[:3]).T + pose[3:6]
  return np.stack([points[:, 0], HEIGHT + 1 - points[:, 1]] + [points[:, 2]] * depth, axis=1)


def _front_head() -> fake_models.Head:
  """The fake head cut to its front (z > -20 mm), like BFM's open face mesh."""
  full = fake_models.head()
  keep = full.vertices[:, 2] > -20.0
  remap = np.cumsum(keep) - 1
  triangles = full.triangles[keep[full.triangles].all(axis=1)]
  return fake_models.Head(vertices=full.vertices[keep], triangles=remap[triangles],
                          landmarks=remap[full.landmarks])


class FakeDdfaModel:
  """01_MorphableModel.mat + 3DDFA's model_info.mat and Model_Expression.mat, in tmp."""

  def __init__(self, folder):
    rng = np.random.default_rng(7)
    mesh = _front_head()
    self.bfm_path = folder / "01_MorphableModel.mat"
    self.ddfa_dir = folder / "3DDFA_Release" / "Matlab"
    self.ddfa_dir.mkdir(parents=True)
    bfm = fake_models.write_bfm2009(self.bfm_path, mesh)
    n = len(mesh.vertices)
    # Trim: drop the 7 rearmost vertices (3DDFA trims BFM's 53490 to 53215 at the rim).
    dropped = np.argsort(mesh.vertices[:, 2])[:7]
    self.trim = np.setdiff1d(np.arange(n), dropped)
    remap = np.full(n, -1)
    remap[self.trim] = np.arange(self.trim.size)
    triangles = remap[mesh.triangles[(remap[mesh.triangles] >= 0).all(axis=1)]]
    self.keypoints = remap[mesh.landmarks]
    scipy.io.savemat(str(self.ddfa_dir / "model_info.mat"), {
        "trimIndex": (self.trim + 1).reshape(-1, 1).astype(np.float64),
        "tri": (triangles.T + 1).astype(np.float64),
        "keypoints": (self.keypoints + 1).reshape(1, -1).astype(np.float64),
        "symlist": np.zeros((2, 3))})
    rows = (3 * self.trim[:, None] + np.arange(3)).reshape(-1)
    # Smooth expression fields (mm-scale affine deformations of the head), as real
    # blendshapes are smooth: white noise per vertex would crumple the mesh.
    centred = (mesh.vertices[self.trim] - mesh.vertices[self.trim].mean(0)) * 1000.0  # µm
    fields = rng.normal(0.0, 0.03, (NUM_EXPRESSION + 1, 3, 3))
    basis = np.einsum("vi,kji->vjk", centred, fields).reshape(rows.size, -1)
    self.mu_exp, self.w_exp = basis[:, :1], basis[:, 1:]
    scipy.io.savemat(str(self.ddfa_dir / "Model_Expression.mat"), {
        "mu_exp": self.mu_exp, "w_exp": self.w_exp,
        "sigma_exp": np.ones((NUM_EXPRESSION, 1))})
    self.shape_mu = bfm["shapeMU"].astype(np.float64)[rows]
    self.shape_pc = bfm["shapePC"].astype(np.float64)[rows]
    self.shape_ev = bfm["shapeEV"].astype(np.float64).ravel()

  def vertices(self, shape_para, exp_para):
    flat = (self.shape_mu + self.mu_exp + self.shape_pc @ shape_para
            + self.w_exp @ exp_para)
    return flat.reshape(-1, 3)


def _labels(rng, ev):
  pose = np.concatenate([rng.uniform(-0.3, 0.3, 3) * [1.0, 2.0, 1.0],
                         [225 + rng.uniform(-20, 20), 230 + rng.uniform(-20, 20), 10.0],
                         [1.3e-3 * rng.uniform(0.9, 1.1)]])
  shape = (rng.normal(0, 0.1, ev.size) * ev).reshape(-1, 1)  # fake PCs are not smooth
  exp = rng.normal(0, 0.7, (NUM_EXPRESSION, 1))
  return pose, shape, exp


def _write_example(root, subset, name, pose, shape, exp, pts_3d, corrupt=False,
                   with_mat=True):
  folder = root / "300W_LP" / subset
  if corrupt:
    fakes.write_corrupt_jpeg(folder / f"{name}.jpg", (WIDTH, HEIGHT))
  else:
    fakes.write_jpeg(folder / f"{name}.jpg", (WIDTH, HEIGHT), seed=len(name))
  if with_mat:
    scipy.io.savemat(str(folder / f"{name}.mat"), {
        "Pose_Para": pose.reshape(1, 7), "Shape_Para": shape, "Exp_Para": exp,
        "Color_Para": np.ones((1, 7)), "Illum_Para": np.zeros((1, 10)),
        "Tex_Para": np.zeros((199, 1)), "pt2d": pts_3d.T + 1.0,
        "roi": np.array([[100.0, 100.0, 350.0, 350.0]])})
  if pts_3d is not None and not subset.endswith("_Flip"):
    landmarks = root / "300W_LP" / "landmarks" / subset
    landmarks.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(landmarks / f"{name}_pts.mat"),
                     {"pts_2d": pts_3d + 0.3, "pts_3d": pts_3d})


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
  """(builder, model, truth) with AFW (2 good, 1 corrupt), IBUG (1 good, 1 without .mat),
  AFW_Flip (1, skipped by default). truth: subset/name -> (Pose_Para, pts_3d, vertices)."""
  tmp_path = tmp_path_factory.mktemp("w300lp")
  model = FakeDdfaModel(tmp_path / "models")
  rng = np.random.default_rng(3)
  truth = {}
  for subset, name, kind in [("AFW", "AFW_134212_1_0", "good"), ("AFW", "AFW_134212_1_3", "good"),
                             ("AFW", "AFW_261068_1_0", "corrupt"),
                             ("IBUG", "IBUG_image_003_1_0", "good"),
                             ("IBUG", "IBUG_image_004_1_0", "no_mat"),
                             ("AFW_Flip", "AFW_134212_1_0", "good")]:
    pose, shape, exp = _labels(rng, model.shape_ev)
    pts = project_3ddfa(model.vertices(shape, exp), pose)[model.keypoints]
    truth[f"{subset}/{name}"] = (pose, pts, model.vertices(shape, exp))
    _write_example(tmp_path / "download", subset, name, pose, shape, exp, pts,
                   corrupt=kind == "corrupt", with_mat=kind != "no_mat")
  config = w300lp.W300LPConfig(name="fake_bfm2009", size=SIZE, uv_size=UV_SIZE,
                               model=str(model.bfm_path), ddfa_dir=str(model.ddfa_dir))
  builder = fakes.build(w300lp.W300LP, tmp_path, tmp_path / "download", config)
  return builder, config, truth


def test_examples_shapes_and_skips(exact):
  builder, _, _ = exact
  examples = fakes.examples(builder, "train")
  assert sorted(e["name"].decode() for e in examples) == [
      "AFW_134212_1_0.jpg", "AFW_134212_1_3.jpg", "IBUG_image_003_1_0.jpg"]
  assert {e["subset"].decode() for e in examples} == {"AFW", "IBUG"}  # no _Flip by default
  for e in examples:
    assert e["image"].shape == (SIZE, SIZE, 3) and e["image"].dtype == np.uint8
    assert e["landmarks"].shape == (68, 2) and e["landmarks"].dtype == np.float32
    assert e["position_map"].shape == (UV_SIZE, UV_SIZE, 3)
    assert e["position_map"].dtype == np.float32
  assert builder.info.metadata["skipped"]["train"] == {"bad_label": 1, "corrupt_image": 1}
  assert builder.info.metadata["model"]["exact"] is True


def test_landmarks_match_pts_3d_in_crop_pixels(exact):
  builder, _, truth = exact
  for e in fakes.examples(builder, "train"):
    pose, pts, _ = truth[f'{e["subset"].decode()}/{e["name"].decode()[:-4]}']
    reference = pts - 0.5  # 1-based MATLAB pixels -> pixel centres at +0.5
    transform = w300lp.crop_transform(reference, SIZE)
    expected = reference @ transform[:, :2].T + transform[:, 2]
    np.testing.assert_allclose(e["landmarks"], expected, atol=2e-3)
    assert 0 <= e["landmark_error"] < 1e-3
    np.testing.assert_allclose(e["pose"], np.rad2deg(pose[:3]), rtol=1e-5)
  assert builder.info.metadata["landmark_error_px"]["max"] < 1e-3


def test_position_map_at_landmark_uvs_equals_landmarks(exact):
  builder, config, _ = exact
  basis = w300lp.position_map_basis(config)
  at = uv_raster.uv_to_pixels(basis.uv[basis.landmarks], UV_SIZE) - 0.5  # array coordinates
  for e in fakes.examples(builder, "train"):
    pm = e["position_map"]
    x0, y0 = np.floor(at).astype(int).T
    fx, fy = (at - np.floor(at)).T
    sampled = (pm[y0, x0] * ((1 - fx) * (1 - fy))[:, None] + pm[y0, x0 + 1] * (fx * (1 - fy))[:, None]
               + pm[y0 + 1, x0] * ((1 - fx) * fy)[:, None] + pm[y0 + 1, x0 + 1] * (fx * fy)[:, None])
    assert np.abs(sampled[:, :2] - e["landmarks"]).max() < 0.5
    covered = np.any(pm != 0, axis=-1)
    assert covered.mean() > 0.2 and pm[..., 2][covered].min() > -1e-3


def test_position_map_equals_direct_projection(exact):
  """Every covered UV pixel: the barycentric mix of the independently projected mesh."""
  builder, config, truth = exact
  basis = w300lp.position_map_basis(config)
  raster = uv_raster.rasterize_uv(basis.uv, basis.triangles, UV_SIZE)
  for e in fakes.examples(builder, "train"):
    pose, pts, vertices = truth[f'{e["subset"].decode()}/{e["name"].decode()[:-4]}']
    points = project_3ddfa(vertices, pose, depth=True)
    points[:, :2] -= 0.5
    transform = w300lp.crop_transform(pts - 0.5, SIZE)
    scale = transform[0, 0]
    expected = np.concatenate([points[:, :2] @ transform[:, :2].T + transform[:, 2],
                               scale * (points[:, 2:] - points[:, 2].min())], axis=1)
    np.testing.assert_allclose(e["position_map"], uv_raster.interpolate(raster, expected),
                               atol=2e-3)


def test_flips_are_read_when_asked(exact, tmp_path):
  _, config, _ = exact
  flipped = w300lp.W300LPConfig(name="flips", size=SIZE, uv_size=32, model=config.model,
                                ddfa_dir=config.ddfa_dir, include_flips=True)
  manual_dir = pathlib.Path(config.ddfa_dir).parents[2] / "download"
  examples = fakes.examples(fakes.build(w300lp.W300LP, tmp_path, manual_dir, flipped), "train")
  flips = [e for e in examples if e["subset"].decode() == "AFW_Flip"]
  assert len(examples) == 4 and len(flips) == 1 and flips[0]["landmark_error"] == -1.0


def test_rotation_matches_3ddfa_and_jaxface():
  angles = np.array([0.3, -0.7, 0.2])
  np.testing.assert_allclose(ddfa.rotation(angles), rotation_3ddfa(*angles), atol=1e-12)
  np.testing.assert_allclose(ddfa.rotation(angles),
                             np.asarray(render.euler_to_matrix(angles)).T, atol=1e-6)


def test_bfm_sim_basis_is_exact_on_its_components(tmp_path):
  """With the default model, labels inside BFM-sim's 40 + 10 components map exactly."""
  raw = (np.load(assets.bfm_sim_path("u_shp.npy")).astype(np.float64)
         + np.load(assets.bfm_sim_path("u_exp.npy")))
  w_shp = np.load(assets.bfm_sim_path("w_shp_sim.npy")).astype(np.float64)
  w_exp = np.load(assets.bfm_sim_path("w_exp_sim.npy")).astype(np.float64)
  keypoints = np.load(assets.bfm_sim_path("keypoints_sim.npy"))[::3] // 3
  rng = np.random.default_rng(11)
  shape = np.zeros((199, 1))
  shape[:40, 0] = rng.normal(0, 2e5, 40)
  exp = np.zeros((29, 1))
  exp[:10, 0] = rng.normal(0, 0.5, 10)
  pose = np.array([0.1, 0.4, -0.1, 225.0, 230.0, 0.0, 1.3e-3])
  vertices = (raw + w_shp @ shape[:40] + w_exp @ exp[:10]).reshape(-1, 3)
  pts = project_3ddfa(vertices, pose)[keypoints]
  _write_example(tmp_path / "download", "HELEN", "HELEN_232194_1_0", pose, shape, exp, pts)
  config = w300lp.W300LPConfig(name="bfm_sim_small", size=64, uv_size=64)
  built = fakes.build(w300lp.W300LP, tmp_path, tmp_path / "download", config)
  (example,) = fakes.examples(built, "train")
  assert example["landmark_error"] < 0.01
  assert built.info.metadata["model"] == {"name": "bfm_sim", "exact": False,
                                          "vertices": len(vertices)}


def test_model_without_3ddfa_files_is_refused():
  with pytest.raises(common.DatasetLayoutError, match="ddfa_dir"):
    ddfa.load_basis("/data/01_MorphableModel.mat")
