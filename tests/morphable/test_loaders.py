"""Tests of `jaxface.morphable.loaders` on small synthetic files in the real formats.

`fake_models` writes BFM2009 (+ Guo expressions), Deng, BFM2017 and FLAME files laid
out like the licensed originals on a ~430-vertex head; each test derives the expected
conversion (units, recentring, basis scaling, 0-based indices) from the stored arrays.
Also: FLAME skinning against a numpy reference, the safe unpickler against crafted
pickles, one-line errors for bad files (API and CLI), the `.npz` round trip and the
conversion cache.
"""

import dataclasses
import json
import os
import pathlib
import pickle
import shutil

import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import scipy.io
import scipy.sparse

from jaxface import cli
from jaxface import safe_pickle
from jaxface.errors import ModelFormatError
from jaxface.morphable import bfm_sim
from jaxface.morphable import flame
from jaxface.morphable import loaders
from jaxface.morphable import model as model_lib
from tests.morphable import fake_models

HEAD = fake_models.head()
N = len(HEAD.vertices)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  """Every test converts into its own cache directory."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))


@dataclasses.dataclass
class Source:
  """A synthetic model file, the loader arguments it needs and the stored arrays."""
  path: pathlib.Path
  kwargs: dict
  stored: dict


def _guo_keep() -> np.ndarray:
  """The Guo trim of the test head: everything but the back (z > -60 mm)."""
  keep = np.flatnonzero(HEAD.vertices[:, 2] > -60.0)
  assert np.isin(HEAD.landmarks, keep).all() and keep.size < N
  return keep


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Source]:
  """One synthetic file per format (FLAME in pickle protocols 0, 1 and 2)."""
  root = tmp_path_factory.mktemp("sources")
  landmarks = fake_models.write_landmark_indices(root / "landmarks.txt", HEAD.landmarks)
  out = {}
  stored = fake_models.write_bfm2009(root / "01_MorphableModel.mat")
  out["bfm2009"] = Source(root / "01_MorphableModel.mat", {"landmarks": landmarks}, stored)
  guo = fake_models.write_guo_expressions(root / "guo", _guo_keep())
  out["bfm2009_guo"] = Source(root / "01_MorphableModel.mat",
                              {"landmarks": landmarks, "exp_pca": guo["path"]},
                              {**stored, "guo": guo})
  out["deng"] = Source(root / "BFM_model_front.mat", {},
                       fake_models.write_deng(root / "BFM_model_front.mat"))
  out["bfm2017"] = Source(root / "model2017-1_bfm_nomouth.h5", {"landmarks": landmarks},
                          fake_models.write_bfm2017(root / "model2017-1_bfm_nomouth.h5"))
  faces, bary = fake_models.flame_embedding()
  embedding = fake_models.write_deca_embedding(root / "landmark_embedding.npy", faces, bary)
  for protocol in (0, 1, 2):
    path = root / f"p{protocol}" / "generic_model.pkl"
    path.parent.mkdir()
    stored = fake_models.write_flame(path, protocol=protocol)
    out[f"flame_p{protocol}"] = Source(path, {"landmarks": embedding},
                                       {**stored, "faces": faces, "bary": bary})
  out["flame"] = out["flame_p2"]
  return out


MODEL_NAMES = ("bfm2009", "bfm2009_guo", "deng", "bfm2017", "flame")


@pytest.fixture(scope="module")
def models(sources) -> dict[str, model_lib.MorphableModel]:
  """Each source converted once (no cache)."""
  out = {name: loaders.load_model(str(s.path), use_cache=False, **s.kwargs)
         for name, s in sources.items() if name != "flame"}
  out["flame"] = out["flame_p2"]
  return out


def _rows(num_vertices: int) -> np.ndarray:
  """[V, 3] row of each (vertex, axis) in an xyz-interleaved [3V, ...] array."""
  return 3 * np.arange(num_vertices)[:, None] + np.arange(3)[None, :]


def _close(actual, expected, atol=1e-5, rtol=1e-6):
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


def _centred(points: np.ndarray) -> np.ndarray:
  return points - points.mean(axis=0)


def _check_vertex_landmarks(model, indices):
  np.testing.assert_array_equal(model.landmark_vertices, np.repeat(indices[:, None], 3, 1))
  np.testing.assert_array_equal(model.landmark_bary, np.tile([1.0, 0.0, 0.0], (68, 1)))
  np.testing.assert_array_equal(model.landmarks, indices)


# ------------------------------------------------------------------------------ BFM2009


def test_bfm2009_conversion(sources, models):
  """µm -> mm, recentred; bases PC * EV (std); albedo / 255; tl - 1."""
  s, m = sources["bfm2009"].stored, models["bfm2009"]
  rows = _rows(N)
  mean_mm = s["shapeMU"][:, 0].astype(np.float64)[rows] / 1000.0
  _close(m.mean, _centred(mean_mm), atol=1e-4)
  _close(m.shape_basis, s["shapePC"].astype(np.float64)[rows] * s["shapeEV"][:, 0] / 1000.0)
  _close(m.albedo_mean, s["texMU"][:, 0].astype(np.float64)[rows] / 255.0)
  _close(m.albedo_basis, s["texPC"].astype(np.float64)[rows] * s["texEV"][:, 0] / 255.0)
  assert m.expression_basis.shape == (N, 3, 0)
  np.testing.assert_array_equal(m.triangles, s["tl"].astype(np.int64) - 1)
  _check_vertex_landmarks(m, HEAD.landmarks)
  assert (m.name, m.licence) == ("bfm2009", loaders.BFM2009_LICENCE)
  # The geometry is the head's, in mm: eye corners 90 mm apart.
  lm = np.asarray(m.mean)[HEAD.landmarks]
  assert abs(np.linalg.norm(lm[36] - lm[45]) - 90.0) < 1e-2


def test_bfm2009_inward_winding_is_flipped(tmp_path):
  """Clockwise `tl` comes out counter-clockwise seen from outside."""
  fake_models.write_bfm2009(tmp_path / "01_MorphableModel.mat", reverse_winding=True,
                            num_shape=5, num_albedo=5)
  landmarks = fake_models.write_landmark_indices(tmp_path / "lm.txt", HEAD.landmarks)
  m = loaders.load_bfm2009(tmp_path / "01_MorphableModel.mat", landmarks=landmarks)
  np.testing.assert_array_equal(m.triangles, HEAD.triangles)


def test_bfm2009_guo_expressions(sources, models):
  """Trimmed to `trimIndex` (1-based); expression = component-major PC * std / 1000."""
  s, m = sources["bfm2009_guo"].stored, models["bfm2009_guo"]
  keep = s["guo"]["trimIndex"][:, 0].astype(np.int64) - 1
  n = keep.size
  assert m.num_vertices == n
  full = s["shapeMU"][:, 0].astype(np.float64)[_rows(N)] / 1000.0
  _close(m.mean, _centred(full[keep]), atol=1e-4)
  shape = s["shapePC"].astype(np.float64)[_rows(N)] * s["shapeEV"][:, 0] / 1000.0
  _close(m.shape_basis, shape[keep])
  _close(m.albedo_mean, (s["texMU"][:, 0].astype(np.float64)[_rows(N)] / 255.0)[keep])
  # Exp_Pca.bin stores the basis [K, 3N'] after a [3N'] mean the loader skips.
  basis = s["guo"]["basis"].astype(np.float64)  # [K, 3N']
  expected = basis.T[_rows(n)] * s["guo"]["std"] / 1000.0
  _close(m.expression_basis, expected)
  assert m.num_expression == 79
  remap = np.full(N, -1)
  remap[keep] = np.arange(n)
  kept = HEAD.triangles[np.isin(HEAD.triangles, keep).all(axis=1)]
  np.testing.assert_array_equal(m.triangles, remap[kept])
  _check_vertex_landmarks(m, remap[HEAD.landmarks])


def _guo_copy(sources, tmp_path) -> dict:
  """Copies of the BFM2009 + Guo files in `tmp_path` (to modify), as loader kwargs."""
  src = sources["bfm2009_guo"]
  shutil.copytree(src.kwargs["exp_pca"].parent, tmp_path / "guo")
  shutil.copy(src.path, tmp_path / "01_MorphableModel.mat")
  return {"spec": str(tmp_path / "01_MorphableModel.mat"),
          "landmarks": src.kwargs["landmarks"], "exp_pca": tmp_path / "guo" / "Exp_Pca.bin"}


def test_bfm2009_guo_landmark_outside_trim(sources, tmp_path):
  """A landmark vertex the trim drops is an error naming Exp_Pca.bin."""
  args = _guo_copy(sources, tmp_path)
  keep = _guo_keep()
  keep = keep[keep != HEAD.landmarks[30]]
  fake_models.write_guo_expressions(tmp_path / "guo", keep)
  with pytest.raises(ModelFormatError, match="Exp_Pca.bin.*outside the expression"):
    loaders.load_model(use_cache=False, **args)


# ----------------------------------------------------------------------------- Deng


def test_deng_conversion(sources, models):
  """dm -> mm (x100), recentred; bases x100; texture / 255; tri, keypoints - 1."""
  s, m = sources["deng"].stored, models["deng"]
  rows = _rows(N)
  _close(m.mean, _centred(s["meanshape"][0].astype(np.float64)[rows] * 100.0), atol=1e-4)
  _close(m.shape_basis, s["idBase"].astype(np.float64)[rows] * 100.0)
  _close(m.expression_basis, s["exBase"][rows] * 100.0)
  _close(m.albedo_mean, s["meantex"][0].astype(np.float64)[rows] / 255.0)
  _close(m.albedo_basis, s["texBase"].astype(np.float64)[rows] / 255.0)
  assert (m.num_shape, m.num_expression, m.num_albedo) == (80, 64, 80)
  np.testing.assert_array_equal(m.triangles, s["tri"].astype(np.int64) - 1)
  _check_vertex_landmarks(m, s["keypoints"][0].astype(np.int64) - 1)
  assert (m.name, m.licence) == ("deng_bfm_front", loaders.DENG_LICENCE)


# ---------------------------------------------------------------------------- BFM2017


def test_bfm2017_conversion(sources, models):
  """Orthonormal pcaBasis x sqrt(pcaVariance); mm, recentred; triangles = cells.T."""
  s, m = sources["bfm2017"].stored, models["bfm2017"]
  rows = _rows(N)

  def part(name):
    std = np.sqrt(s[name]["pcaVariance"].astype(np.float64))
    return (s[name]["mean"].astype(np.float64)[rows],
            s[name]["pcaBasis"].astype(np.float64)[rows] * std)

  mean, shape = part("shape")
  _close(m.mean, _centred(mean), atol=1e-4)
  _close(m.shape_basis, shape)
  _close(m.expression_basis, part("expression")[1])
  _close(m.albedo_mean, part("color")[0])
  _close(m.albedo_basis, part("color")[1])
  assert (m.num_shape, m.num_expression, m.num_albedo) == (199, 100, 199)
  np.testing.assert_array_equal(m.triangles, s["cells"].T)
  _check_vertex_landmarks(m, HEAD.landmarks)
  assert (m.name, m.licence) == ("bfm2017", loaders.BFM2017_LICENCE)


@pytest.mark.parametrize("unit_scale", [1e-3, 1e3], ids=["metres", "micrometres"])
def test_bfm2017_units_are_detected(sources, models, tmp_path, unit_scale):
  """The same model written in metres or µm loads to the same mm model."""
  fake_models.write_bfm2017(tmp_path / "scaled.h5", unit_scale=unit_scale)
  m = loaders.load_bfm2017(tmp_path / "scaled.h5",
                           landmarks=sources["bfm2017"].kwargs["landmarks"])
  ref = models["bfm2017"]
  for key in ("mean", "shape_basis", "expression_basis"):
    _close(getattr(m, key), getattr(ref, key), atol=1e-3, rtol=1e-5)
  for key in ("albedo_mean", "albedo_basis", "triangles", "landmark_vertices", "region"):
    np.testing.assert_array_equal(getattr(m, key), getattr(ref, key))


def test_bfm2017_without_expression(sources, tmp_path):
  """A statismo file without /expression gives an empty expression basis."""
  fake_models.write_bfm2017(tmp_path / "noexp.h5", with_expression=False, num_shape=4,
                            num_color=4)
  m = loaders.load_bfm2017(tmp_path / "noexp.h5",
                           landmarks=sources["bfm2017"].kwargs["landmarks"])
  assert m.expression_basis.shape == (N, 3, 0)
  assert m.num_shape == 4


def test_bfm2017_needs_landmarks(sources):
  with pytest.raises(ModelFormatError, match="68 vertex indices"):
    loaders.load_model(str(sources["bfm2017"].path), use_cache=False)


# ------------------------------------------------------------------------------ FLAME


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_flame_conversion(sources, models, protocol):
  """Python 2 pickle (any protocol): m -> mm, recentred; 300 shape + rest expression."""
  s, m = sources[f"flame_p{protocol}"].stored, models[f"flame_p{protocol}"]
  _close(m.mean, _centred(s["v_template"] * 1000.0), atol=1e-4)
  _close(m.shape_basis, s["shapedirs"][..., :300] * 1000.0)
  _close(m.expression_basis, s["shapedirs"][..., 300:] * 1000.0)
  assert (m.num_shape, m.num_expression) == (300, 10)
  np.testing.assert_array_equal(m.triangles, s["f"].astype(np.int64))
  np.testing.assert_array_equal(m.landmark_vertices, s["f"][s["faces"]].astype(np.int64))
  np.testing.assert_array_equal(m.landmark_bary, s["bary"])
  np.testing.assert_array_equal(m.landmarks, HEAD.landmarks)  # largest weight: own vertex
  sk = m.skinning
  _close(sk.joint_regressor, s["J_regressor"], atol=1e-7)
  _close(sk.weights, s["weights"], atol=1e-7)
  _close(sk.pose_basis, s["posedirs"] * 1000.0)
  assert sk.parents == fake_models.FLAME_PARENTS
  assert sk.joint_names == loaders.FLAME_JOINTS
  assert (m.name, m.licence) == ("flame", loaders.FLAME_LICENCE)
  assert m.albedo_mean.shape == (N, 3) and m.num_albedo > 0  # derived smooth space


def test_flame_fewer_than_300_directions(sources, tmp_path):
  """With at most 300 shapedirs, all are identity and none expression."""
  fake_models.write_flame(tmp_path / "generic_model.pkl", num_directions=8)
  m = loaders.load_flame(tmp_path / "generic_model.pkl",
                         landmarks=sources["flame"].kwargs["landmarks"])
  assert (m.num_shape, m.num_expression) == (8, 0)


@pytest.mark.parametrize("kind", ["npz", "numpy2_npy"])
def test_flame_other_embeddings(sources, models, tmp_path, kind):
  """The `.npz` embedding and a numpy-2 `np.save` of DECA's dict load the same."""
  s = sources["flame"].stored
  if kind == "npz":
    path = fake_models.write_embedding_npz(tmp_path / "emb.npz", s["faces"], s["bary"])
  else:
    path = fake_models.write_deca_embedding(tmp_path / "emb.npy", s["faces"], s["bary"],
                                            numpy1=False)
  m = loaders.load_flame(sources["flame"].path, landmarks=path)
  np.testing.assert_array_equal(m.landmark_vertices, models["flame"].landmark_vertices)
  _close(m.landmark_bary, models["flame"].landmark_bary, atol=0)


def test_flame_needs_embedding(sources):
  with pytest.raises(ModelFormatError, match="landmark embedding|landmark_embedding"):
    loaders.load_model(str(sources["flame"].path), use_cache=False)


def _rodrigues(r: np.ndarray) -> np.ndarray:
  angle = np.linalg.norm(r)
  if angle < 1e-12:
    return np.eye(3)
  k = r / angle
  skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def _reference_flame(s: dict, betas: np.ndarray, pose: np.ndarray) -> np.ndarray:
  """FLAME's chumpy `verts_decorated` (lbs, lrotmin) in numpy float64, metres."""
  shaped = s["v_template"] + s["shapedirs"] @ betas
  joints = s["J_regressor"] @ shaped
  rotations = [_rodrigues(p) for p in pose]
  lrotmin = np.concatenate([(r - np.eye(3)).ravel() for r in rotations[1:]])
  posed = shaped + s["posedirs"] @ lrotmin
  world = []
  for j, parent in enumerate(fake_models.FLAME_PARENTS):
    local = np.eye(4)
    local[:3, :3] = rotations[j]
    local[:3, 3] = joints[j] - (joints[parent] if parent >= 0 else 0.0)
    world.append(local if parent < 0 else world[parent] @ local)
  world = np.stack(world)
  world[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
  blend = np.einsum("vj,jab->vab", s["weights"], world)
  return np.einsum("vab,vb->va", blend[:, :3, :3], posed) + blend[:, :3, 3]


def _flame_coefficients(seed: int = 0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=300), rng.normal(size=10), rng.normal(0, 0.3, (5, 3))


def test_flame_zero_pose_is_blendshapes(sources, models):
  """Zero pose: recentred template + identity and expression blendshapes."""
  s, m = sources["flame"].stored, models["flame"]
  shape, expression, _ = _flame_coefficients()
  posed = flame.decode_posed(m, jnp.asarray(shape), jnp.asarray(expression), jnp.zeros((5, 3)))
  expected = (_centred(s["v_template"])
              + s["shapedirs"] @ np.concatenate([shape, expression])) * 1000.0
  _close(posed, expected, atol=2e-4)
  _close(posed, model_lib.decode(m, shape, expression), atol=1e-4)


def test_flame_matches_reference_skinning(sources, models):
  """Random pose of all five joints: same vertices as a numpy FLAME, in mm."""
  s, m = sources["flame"].stored, models["flame"]
  shape, expression, pose = _flame_coefficients(1)
  posed = flame.decode_posed(m, jnp.asarray(shape), jnp.asarray(expression), jnp.asarray(pose))
  expected = _reference_flame(s, np.concatenate([shape, expression]), pose) * 1000.0
  expected -= s["v_template"].mean(axis=0) * 1000.0
  unposed = flame.decode_posed(m, jnp.asarray(shape), jnp.asarray(expression), jnp.zeros((5, 3)))
  assert np.abs(expected - unposed).max() > 5.0  # the pose matters (mm)
  _close(posed, expected, atol=2e-3)


def test_flame_jaw_moves_only_jaw_vertices(sources, models):
  """Opening the jaw (joint 2) moves exactly the vertices the jaw skins."""
  s, m = sources["flame"].stored, models["flame"]
  shape, expression, _ = _flame_coefficients(2)
  pose = np.zeros((5, 3))
  rest = np.asarray(flame.decode_posed(m, shape, expression, jnp.asarray(pose)))
  pose[2] = (0.3, 0.0, 0.0)
  open_ = np.asarray(flame.decode_posed(m, shape, expression, jnp.asarray(pose)))
  moved = np.linalg.norm(open_ - rest, axis=1)
  jaw = s["weights"][:, 2] > 0
  assert moved[~jaw].max() < 1e-5
  assert moved[s["weights"][:, 2] == 1.0].min() > 1.0  # fully jaw-skinned: mm-scale motion
  assert loaders.FLAME_JOINTS[2] == "jaw"


# ---------------------------------------------------------------- every model, every format


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_invariants(models, name):
  """decode(0, 0) = mean, decode is affine, indices in range, labels 0..3, uv in [0, 1]."""
  m = models[name]
  v = m.num_vertices
  zero_s, zero_e = jnp.zeros(m.num_shape), jnp.zeros(m.num_expression)
  np.testing.assert_array_equal(model_lib.decode(m, zero_s, zero_e), m.mean)
  rng = np.random.default_rng(0)
  s1, s2 = rng.normal(size=(2, m.num_shape))
  e1, e2 = rng.normal(size=(2, m.num_expression))

  def offset(s, e):
    return np.asarray(model_lib.decode(m, s, e) - m.mean, np.float64)

  _close(offset(2 * s1 - 3 * s2, 2 * e1 - 3 * e2), 2 * offset(s1, e1) - 3 * offset(s2, e2),
         atol=1e-3, rtol=1e-4)
  batch = model_lib.decode(m, jnp.stack([s1, s2]), jnp.stack([e1, e2]))
  _close(batch[1], model_lib.decode(m, s2, e2), atol=1e-4)
  assert m.mean.dtype == jnp.float32 and m.mean.shape == (v, 3)
  assert m.shape_basis.shape[:2] == m.expression_basis.shape[:2] == (v, 3)
  assert m.albedo_mean.shape == (v, 3) and m.albedo_basis.shape[:2] == (v, 3)
  assert m.triangles.dtype == jnp.int32 and m.triangles.shape[1] == 3
  assert 0 <= int(m.triangles.min()) and int(m.triangles.max()) < v
  assert m.landmark_vertices.shape == (68, 3) and m.landmark_bary.shape == (68, 3)
  assert 0 <= int(m.landmark_vertices.min()) and int(m.landmark_vertices.max()) < v
  _close(m.landmark_bary.sum(axis=1), np.ones(68), atol=1e-6)
  assert m.region.shape == (v,) and m.region.dtype == jnp.int32
  assert set(np.unique(m.region)) <= {0, 1, 2, 3}
  assert (np.asarray(m.region)[np.asarray(m.landmarks)] == model_lib.REGION_LANDMARK).all()
  assert m.uv.shape == (v, 2) and float(m.uv.min()) >= 0 and float(m.uv.max()) <= 1
  _close(np.asarray(m.mean).mean(axis=0), np.zeros(3), atol=1e-3)  # recentred
  lm = np.asarray(model_lib.landmarks_3d(m, m.mean))
  assert 80.0 < np.linalg.norm(lm[36] - lm[45]) < 100.0  # mm, about 90
  assert lm[45, 0] > lm[36, 0]  # +x is the subject's left
  # Counter-clockwise from outside: normals point away from the head's centre.
  normals = np.asarray(model_lib.vertex_normals(m.mean, m.triangles))
  assert np.mean(np.sum(normals * np.asarray(m.mean), axis=1) > 0) > 0.9


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_npz_round_trip(models, tmp_path, name):
  """save_npz then load_model(path.npz) gives identical arrays and metadata."""
  m = models[name]
  path = tmp_path / f"{name}.npz"
  bfm_sim.save_npz(m, path)
  again = loaders.load_model(str(path))
  a, b = model_lib.to_numpy(m), model_lib.to_numpy(again)
  assert a.keys() == b.keys()
  for key in a:
    assert a[key].dtype == b[key].dtype, key
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert (again.name, again.licence) == (m.name, m.licence)
  if m.skinning is not None:
    assert again.skinning.parents == m.skinning.parents
    assert again.skinning.joint_names == m.skinning.joint_names


def _equal_models(a, b):
  a, b = model_lib.to_numpy(a), model_lib.to_numpy(b)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cache_is_written_and_reused(sources, models, tmp_path, monkeypatch, name):
  """use_cache=True writes $JAXFACE_CACHE/models/<kind>_<digest>.npz, then reads it."""
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "my_cache"))
  src = sources[name]
  first = loaders.load_model(str(src.path), use_cache=True, **src.kwargs)
  cached = list((tmp_path / "my_cache" / "models").glob("*.npz"))
  kind = loaders.detect_format(src.path)
  assert len(cached) == 1 and cached[0].name.startswith(f"{kind}_")
  _equal_models(first, models[name])

  def no_conversion(*args, **kwargs):
    raise AssertionError("converted again instead of reading the cache")

  for loader in ("load_bfm2009", "load_deng", "load_bfm2017", "load_flame"):
    monkeypatch.setattr(loaders, loader, no_conversion)
  second = loaders.load_model(str(src.path), use_cache=True, **src.kwargs)
  _equal_models(second, first)


def test_cache_key_follows_landmarks_file(sources, tmp_path):
  """Other landmark indices are another cache entry, not the stale model."""
  src = sources["bfm2017"]
  first = loaders.load_model(str(src.path), **src.kwargs)
  swapped = HEAD.landmarks.copy()
  swapped[30] = HEAD.landmarks[33]
  other = fake_models.write_landmark_indices(tmp_path / "landmarks.txt", swapped)
  second = loaders.load_model(str(src.path), landmarks=other)
  assert len(list((tmp_path / "cache" / "models").glob("*.npz"))) == 2
  np.testing.assert_array_equal(np.asarray(second.landmarks)[30], HEAD.landmarks[33])
  np.testing.assert_array_equal(np.asarray(first.landmarks)[30], HEAD.landmarks[30])


def test_cache_key_follows_guo_sibling_files(sources, tmp_path):
  """Changing std_exp.txt beside Exp_Pca.bin changes the cached expression basis."""
  args = _guo_copy(sources, tmp_path)
  first = loaders.load_model(**args)
  std_path = tmp_path / "guo" / "std_exp.txt"
  std_path.write_text(" ".join(f"{2 * x:.6f}" for x in np.loadtxt(std_path)) + "\n")
  second = loaders.load_model(**args)
  _close(second.expression_basis, 2 * np.asarray(first.expression_basis, np.float64),
         atol=1e-4)


@pytest.mark.parametrize("name, kind", [("bfm2009", "bfm2009"), ("deng", "deng"),
                                        ("bfm2017", "bfm2017"), ("flame", "flame")])
def test_detect_format(sources, name, kind):
  assert loaders.detect_format(sources[name].path) == kind


def test_cli_info_on_a_converted_model(sources, capsys):
  """`jaxface info --model FLAME --landmarks EMB --json` summarises the model."""
  src = sources["flame"]
  argv = ["info", "--model", str(src.path), "--landmarks", str(src.kwargs["landmarks"]),
          "--json"]
  assert cli.main(argv) == 0
  (summary,) = json.loads(capsys.readouterr().out)
  assert summary["vertices"] == N and summary["landmarks"] == 68
  assert (summary["shape_components"], summary["expression_components"]) == (300, 10)
  assert summary["joints"] == list(loaders.FLAME_JOINTS)


# ---------------------------------------------------------------------------- security


class _Exploit:
  """Unpickles to `func(arg)`: what a malicious model file would run."""

  def __init__(self, func, arg):
    self.func, self.arg = func, arg

  def __reduce__(self):
    return self.func, (self.arg,)


def _touch(marker: pathlib.Path) -> str:
  return f"touch {marker}"


PAYLOADS = {
    "os_system_p0": lambda m: pickle.dumps(_Exploit(os.system, _touch(m)), protocol=0),
    "os_system_p2": lambda m: pickle.dumps(_Exploit(os.system, _touch(m)), protocol=2),
    "os_system_p4": lambda m: pickle.dumps(_Exploit(os.system, _touch(m)), protocol=4),
    "eval_p2": lambda m: pickle.dumps(
        _Exploit(eval, f"__import__('os').system({_touch(m)!r})"), protocol=2),
    "inside_flame_dict": lambda m: pickle.dumps(
        {"v_template": np.zeros((3, 3)), "weights": _Exploit(os.system, _touch(m))}, 2),
    "chumpy_state": lambda m: fake_models.dumps(fake_models.Instance(
        fake_models.Global("chumpy.ch", "Ch"),
        {"x": fake_models.Raw(pickle.dumps(_Exploit(os.system, _touch(m)), 2)[2:-1])})),
}


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_code_in_a_pickle_is_never_run(sources, tmp_path, payload):
  """A crafted FLAME .pkl is refused with ModelFormatError; its command never runs."""
  marker = tmp_path / "pwned"
  path = tmp_path / "generic_model.pkl"
  path.write_bytes(PAYLOADS[payload](marker))
  with pytest.raises(ModelFormatError, match="generic_model.pkl.*not a safe"):
    loaders.load_model(str(path), use_cache=False, **sources["flame"].kwargs)
  assert not marker.exists()


def test_code_in_a_deca_embedding_is_never_run(sources, tmp_path):
  """The same for a crafted `landmark_embedding.npy` (a pickled object array)."""
  marker = tmp_path / "pwned"
  path = tmp_path / "landmark_embedding.npy"
  holder = np.empty((), object)
  holder[()] = _Exploit(os.system, _touch(marker))
  np.save(path, holder)
  with pytest.raises(ModelFormatError, match="landmark_embedding.npy"):
    loaders.load_flame(sources["flame"].path, landmarks=path)
  assert not marker.exists()


def test_exploit_payload_is_live(tmp_path):
  """Control: the payload above does run under a plain `pickle.loads`."""
  marker = tmp_path / "pwned"
  pickle.loads(PAYLOADS["os_system_p2"](marker))  # nosec: the point of the control
  assert marker.exists()


_G = fake_models.Global
_CH = _G("chumpy.ch", "Ch")
RECONSTRUCT = {
    # copy_reg._reconstructor(cls, base, state) must build only the inert holders.
    "system_as_class": fake_models.Instance(_G("posix", "system"), {"x": 1}),
    "system_as_base": fake_models.Instance(_CH, {"x": 1}, base=_G("posix", "system")),
    "ndarray_as_class": fake_models.Instance(_G("numpy", "ndarray"), {"x": 1}),
    "set_as_base": fake_models.Instance(_CH, {"x": 1}, base=_G("__builtin__", "set")),
    "newobj_dtype": fake_models.Reduce(_G("copyreg", "__newobj__"), (_G("numpy", "dtype"), "f8")),
    "chumpy_without_array": fake_models.Instance(_CH, {"x": "rm -rf /"}),
}


@pytest.mark.parametrize("case, protocol", [
    (case, protocol) for case in sorted(RECONSTRUCT) for protocol in (0, 2)
    if protocol == 0 or not case.endswith("as_base")])  # protocol 2 has no base
def test_reconstructor_builds_only_holders(tmp_path, case, protocol):
  """`copy_reg _reconstructor` / `__newobj__` with any other class or base is refused."""
  path = tmp_path / "generic_model.pkl"
  tree = {"v_template": fake_models.ndarray(np.zeros((3, 3))), "shapedirs": RECONSTRUCT[case]}
  path.write_bytes(fake_models.dumps(tree, protocol))
  # Refused while unpickling (not later for lacking FLAME keys).
  with pytest.raises(ModelFormatError, match="generic_model.pkl.*(not a safe|corrupt)"):
    loaders.load_flame(path, landmarks=None)


def test_safe_pickle_reads_python3_scipy_sparse():
  """A csc_matrix pickled by this scipy (state without 'format') loads unchanged."""
  rng = np.random.default_rng(0)
  dense = rng.normal(size=(4, 6)) * (rng.uniform(size=(4, 6)) > 0.5)
  loaded = safe_pickle.loads(pickle.dumps({"csc": scipy.sparse.csc_matrix(dense)}, 2))
  np.testing.assert_array_equal(loaded["csc"].toarray(), dense)


def test_safe_pickle_reads_python3_csr_matrix():
  """A csr_matrix pickled by this scipy loads as the same matrix."""
  rng = np.random.default_rng(0)
  dense = rng.normal(size=(4, 6)) * (rng.uniform(size=(4, 6)) > 0.5)
  loaded = safe_pickle.loads(pickle.dumps(scipy.sparse.csr_matrix(dense), 2))
  assert loaded.shape == dense.shape
  np.testing.assert_array_equal(loaded.toarray(), dense)


# ---------------------------------------------------------------------------- bad input


def _truncate(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
  data = src.read_bytes()
  dst.write_bytes(data[: len(data) // 2])
  return dst


def _png(path: pathlib.Path) -> pathlib.Path:
  PIL.Image.new("RGB", (8, 8), (200, 100, 50)).save(path, format="PNG")
  return path


def _bad_missing_mat(sources, tmp):
  return tmp / "missing_model.mat", {}, "missing_model.mat"


def _bad_missing_h5(sources, tmp):
  return tmp / "missing_model.h5", dict(sources["bfm2017"].kwargs), "missing_model.h5"


def _bad_missing_pkl(sources, tmp):
  return tmp / "missing_model.pkl", dict(sources["flame"].kwargs), "missing_model.pkl"


def _bad_missing_npz(sources, tmp):
  return tmp / "missing_model.npz", {}, "missing_model.npz"


def _bad_missing_landmarks(sources, tmp):
  return sources["bfm2017"].path, {"landmarks": tmp / "missing_lm.txt"}, "missing_lm.txt"


def _bad_missing_embedding(sources, tmp):
  return sources["flame"].path, {"landmarks": tmp / "missing_emb.npy"}, "missing_emb.npy"


def _bad_missing_exp_pca(sources, tmp):
  kwargs = dict(sources["bfm2009_guo"].kwargs, exp_pca=tmp / "missing_Exp_Pca.bin")
  return sources["bfm2009"].path, kwargs, "missing_Exp_Pca.bin"


def _bad_missing_trim_index(sources, tmp):
  args = _guo_copy(sources, tmp)
  (tmp / "guo" / "BFM_exp_idx.mat").unlink()
  return pathlib.Path(args.pop("spec")), args, "BFM_exp_idx.mat"


def _bad_truncated_bfm2009(sources, tmp):
  return _truncate(sources["bfm2009"].path, tmp / "cut_bfm.mat"), dict(
      sources["bfm2009"].kwargs), "cut_bfm.mat"


def _bad_truncated_deng(sources, tmp):
  return _truncate(sources["deng"].path, tmp / "cut_deng.mat"), {}, "cut_deng.mat"


def _bad_truncated_h5(sources, tmp):
  return _truncate(sources["bfm2017"].path, tmp / "cut.h5"), dict(
      sources["bfm2017"].kwargs), "cut.h5"


def _bad_truncated_pkl_p0(sources, tmp):
  return _truncate(sources["flame_p0"].path, tmp / "cut0.pkl"), dict(
      sources["flame"].kwargs), "cut0.pkl"


def _bad_truncated_pkl_p2(sources, tmp):
  return _truncate(sources["flame_p2"].path, tmp / "cut2.pkl"), dict(
      sources["flame"].kwargs), "cut2.pkl"


def _bad_truncated_embedding(sources, tmp):
  emb = _truncate(sources["flame"].kwargs["landmarks"], tmp / "cut_emb.npy")
  return sources["flame"].path, {"landmarks": emb}, "cut_emb.npy"


def _bad_truncated_exp_pca(sources, tmp):
  args = _guo_copy(sources, tmp)
  exp_pca = args["exp_pca"]
  exp_pca.write_bytes(exp_pca.read_bytes()[: exp_pca.stat().st_size // 2])
  return pathlib.Path(args.pop("spec")), args, "Exp_Pca.bin"


def _bad_truncated_npz(sources, tmp):
  bfm_sim.save_npz(loaders.load_model(str(sources["deng"].path), use_cache=False),
                   tmp / "whole.npz")
  return _truncate(tmp / "whole.npz", tmp / "cut_model.npz"), {}, "cut_model.npz"


def _bad_png_as_mat(sources, tmp):
  return _png(tmp / "photo.mat"), {}, "photo.mat"


def _bad_png_as_h5(sources, tmp):
  return _png(tmp / "photo.h5"), dict(sources["bfm2017"].kwargs), "photo.h5"


def _bad_png_as_npz(sources, tmp):
  return _png(tmp / "photo.npz"), {}, "photo.npz"


def _bad_bfm2009_without_tl(sources, tmp):
  data = {k: v for k, v in sources["bfm2009"].stored.items() if k != "tl"}
  scipy.io.savemat(str(tmp / "no_tl.mat"), data)
  return tmp / "no_tl.mat", dict(sources["bfm2009"].kwargs), "no_tl.mat"


def _bad_deng_without_keypoints(sources, tmp):
  data = {k: v for k, v in sources["deng"].stored.items() if k != "keypoints"}
  scipy.io.savemat(str(tmp / "no_kp.mat"), data)
  return tmp / "no_kp.mat", {}, "no_kp.mat"


def _bad_unrelated_mat(sources, tmp):
  scipy.io.savemat(str(tmp / "other.mat"), {"vertices": np.zeros((4, 3))})
  return tmp / "other.mat", {}, "other.mat"


def _bad_h5_not_statismo(sources, tmp):
  import h5py  # pylint: disable=import-outside-toplevel
  with h5py.File(tmp / "other.h5", "w") as h5:
    h5["data"] = np.zeros(4)
  return tmp / "other.h5", dict(sources["bfm2017"].kwargs), "other.h5"


def _bad_pickle_not_flame(sources, tmp):
  tree = {"v_template": fake_models.ndarray(np.zeros((3, 3))), "f": fake_models.ndarray(
      np.zeros((1, 3), np.uint32))}
  (tmp / "smpl.pkl").write_bytes(fake_models.dumps(tree, 2))
  return tmp / "smpl.pkl", dict(sources["flame"].kwargs), "smpl.pkl"


def _bad_pickle_list(sources, tmp):
  (tmp / "list.pkl").write_bytes(fake_models.dumps([1, 2, 3], 2))
  return tmp / "list.pkl", dict(sources["flame"].kwargs), "list.pkl"


def _bad_pickle_garbage(sources, tmp):
  (tmp / "noise.pkl").write_bytes(np.random.default_rng(0).bytes(4096))
  return tmp / "noise.pkl", dict(sources["flame"].kwargs), "noise.pkl"


def _bad_npz_not_a_model(sources, tmp):
  np.savez(tmp / "arrays.npz", a=np.zeros(3))
  return tmp / "arrays.npz", {}, "arrays.npz"


def _bad_unknown_suffix(sources, tmp):
  (tmp / "head.obj").write_text("v 0 0 0\n")
  return tmp / "head.obj", {}, "head.obj"


def _bad_landmarks_67(sources, tmp):
  lm = fake_models.write_landmark_indices(tmp / "lm67.txt", HEAD.landmarks[:67])
  return sources["bfm2017"].path, {"landmarks": lm}, "lm67.txt"


def _bad_landmarks_out_of_range(sources, tmp):
  lm = fake_models.write_landmark_indices(tmp / "lm_range.txt", HEAD.landmarks + N)
  return sources["bfm2009"].path, {"landmarks": lm}, "lm_range.txt"


def _bad_landmarks_not_integers(sources, tmp):
  (tmp / "lm_float.txt").write_text(" ".join(["1.5"] * 68))
  return sources["bfm2017"].path, {"landmarks": tmp / "lm_float.txt"}, "lm_float.txt"


def _bad_landmarks_wrong_units(sources, tmp):
  # Indices of another topology: "outer eye corners" 8 mm apart fail the scale check.
  swapped = HEAD.landmarks.copy()
  swapped[45] = HEAD.landmarks[37]
  lm = fake_models.write_landmark_indices(tmp / "lm_eyes.txt", swapped)
  return sources["bfm2017"].path, {"landmarks": lm}, sources["bfm2017"].path.name


def _bad_std_count(sources, tmp):
  args = _guo_copy(sources, tmp)
  (tmp / "guo" / "std_exp.txt").write_text("1.0 2.0 3.0\n")
  return pathlib.Path(args.pop("spec")), args, "std_exp.txt"


def _bad_embedding_wrong_dict(sources, tmp):
  holder = np.empty((), object)
  holder[()] = {"lmk_faces_idx": np.zeros(51, np.int64)}
  np.save(tmp / "wrong_emb.npy", holder)
  return sources["flame"].path, {"landmarks": tmp / "wrong_emb.npy"}, "wrong_emb.npy"


def _bad_embedding_plain_array(sources, tmp):
  np.save(tmp / "plain_emb.npy", np.arange(68 * 4, dtype=np.int64))
  return sources["flame"].path, {"landmarks": tmp / "plain_emb.npy"}, "plain_emb.npy"


def _bad_embedding_npz_missing_key(sources, tmp):
  np.savez(tmp / "emb_nobary.npz", faces=sources["flame"].stored["faces"])
  return sources["flame"].path, {"landmarks": tmp / "emb_nobary.npz"}, "emb_nobary.npz"


def _bad_embedding_npz_truncated(sources, tmp):
  s = sources["flame"].stored
  whole = fake_models.write_embedding_npz(tmp / "emb.npz", s["faces"], s["bary"])
  cut = _truncate(whole, tmp / "emb_cut.npz")
  return sources["flame"].path, {"landmarks": cut}, "emb_cut.npz"


def _bad_embedding_npz_67(sources, tmp):
  s = sources["flame"].stored
  emb = fake_models.write_embedding_npz(tmp / "emb67.npz", s["faces"][:67], s["bary"][:67])
  return sources["flame"].path, {"landmarks": emb}, "emb67.npz"


BAD_INPUTS = [
    _bad_missing_mat, _bad_missing_h5, _bad_missing_pkl, _bad_missing_npz,
    _bad_missing_landmarks, _bad_missing_embedding, _bad_missing_exp_pca,
    _bad_missing_trim_index, _bad_truncated_bfm2009, _bad_truncated_deng, _bad_truncated_h5,
    _bad_truncated_pkl_p0, _bad_truncated_pkl_p2, _bad_truncated_embedding,
    _bad_truncated_exp_pca, _bad_truncated_npz, _bad_png_as_mat, _bad_png_as_h5,
    _bad_png_as_npz, _bad_bfm2009_without_tl, _bad_deng_without_keypoints, _bad_unrelated_mat,
    _bad_h5_not_statismo, _bad_pickle_not_flame, _bad_pickle_list, _bad_pickle_garbage,
    _bad_npz_not_a_model, _bad_unknown_suffix, _bad_landmarks_67, _bad_landmarks_out_of_range,
    _bad_landmarks_not_integers, _bad_landmarks_wrong_units, _bad_std_count,
    _bad_embedding_wrong_dict, _bad_embedding_plain_array, _bad_embedding_npz_missing_key,
    _bad_embedding_npz_truncated, _bad_embedding_npz_67,
]


def _bad_params():
  for maker in BAD_INPUTS:
    name = maker.__name__[len("_bad_"):]
    yield pytest.param(maker, id=name)


@pytest.mark.parametrize("maker", _bad_params())
def test_bad_input_raises_model_format_error(sources, tmp_path, maker):
  """Missing, truncated or foreign files: ModelFormatError naming the culprit."""
  path, kwargs, culprit = maker(sources, tmp_path)
  with pytest.raises(ModelFormatError) as info:
    loaders.load_model(str(path), use_cache=False, **kwargs)
  assert culprit in str(info.value)
  assert "\n" not in str(info.value)


@pytest.mark.parametrize("maker", _bad_params())
def test_bad_input_cli_one_line(sources, tmp_path, capsys, maker):
  """`jaxface info --model BAD` exits 2 with one line on stderr, no traceback."""
  path, kwargs, culprit = maker(sources, tmp_path)
  argv = ["info", "--model", str(path)]
  if "landmarks" in kwargs:
    argv += ["--landmarks", str(kwargs["landmarks"])]
  if "exp_pca" in kwargs:
    argv += ["--exp-pca", str(kwargs["exp_pca"])]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxface: error: ") and err.endswith("\n")
  assert err.count("\n") == 1 and "Traceback" not in err
  assert culprit in err
