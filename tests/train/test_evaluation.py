"""Held-out evaluation and image summaries during training, on a fake method.

The fake method "predicts" whatever its state holds, so the expected scores are known:
the ground-truth shape scores (near) zero NoW error and a full reduction against the
mean face; the zero shape scores exactly the mean face.
"""

import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxface import morphable, render
from jaxface.fit import fitting
from jaxface.train import evaluation, gan3dmm

SIZE = 64


@pytest.fixture(scope="module")
def model():
  return morphable.default_model("front")


def _config():
  return ml_collections.ConfigDict({"morphable": {"model": "bfm_sim_front"},
                                    "render": {"on_overflow": "ignore"}})


def _fake_method(model):
  def predict(config, state, images, landmarks, mask):
    del config, landmarks, mask
    n = images.shape[0]
    return {"shape": state["shape"], "expression": jnp.zeros((n, model.num_expression)),
            "albedo": jnp.zeros((n, model.num_albedo)), "rotation": state["rotation"],
            "translation": jnp.zeros((n, 3)), "light": jnp.broadcast_to(
                render.ambient_sh(1.0), (n, 9, 3))}
  return types.SimpleNamespace(predict=predict, camera=gan3dmm.camera)


def _batch(model, rng, *, samples=2, frames=2):
  """Held-out batch: random identities, zero detail, landmarks of a yawed pose."""
  shape = rng.normal(size=(samples, model.num_shape)).astype(np.float32) * 2.0
  rotation = np.zeros((samples * frames, 3), np.float32)
  rotation[:, 1] = 0.4
  vertices = morphable.decode(model, jnp.asarray(np.repeat(shape, frames, 0)),
                              jnp.zeros((samples * frames, model.num_expression)))
  camera = fitting.camera_for({"rotation": jnp.asarray(rotation),
                               "translation": jnp.zeros((samples * frames, 3))}, (SIZE, SIZE))
  lmk = np.asarray(render.project(camera, morphable.landmarks_3d(model, vertices))[0])
  return {"image": rng.uniform(0, 1, (samples, frames, SIZE, SIZE, 3)).astype(np.float32),
          "landmarks": lmk.reshape(samples, frames, 68, 2),
          "mask": np.ones((samples, frames, SIZE, SIZE), np.float32),
          "shape": shape, "detail": np.zeros((samples, model.num_vertices, 3), np.float32)}, rotation


def test_truth_scores_zero_and_the_mean_face_scores_the_baseline(model):
  batch, rotation = _batch(model, np.random.default_rng(0))
  lines = []
  eval_fn = evaluation.make_eval_fn(_config(), _fake_method(model), [batch], model=model,
                                    log=lines.append)
  assert len(lines) == 1 and "mean face" in lines[0]
  truth = {"shape": jnp.asarray(np.repeat(batch["shape"], 2, 0)), "rotation": jnp.asarray(rotation)}
  scores = eval_fn(truth)
  assert scores["now_median_mm"] < 0.01
  assert scores["landmark_nme_percent"] < 0.01
  assert scores["mean_face_now_median_mm"] > 0.3
  assert scores["mean_face_landmark_nme_percent"] > 2.0  # yawed faces vs a frontal mean
  assert scores["now_reduction"] > 0.97 and scores["landmark_reduction"] > 0.99
  mean = {"shape": jnp.zeros_like(truth["shape"]), "rotation": jnp.zeros_like(truth["rotation"])}
  scores = eval_fn(mean)
  assert scores["now_median_mm"] == pytest.approx(scores["mean_face_now_median_mm"], abs=1e-6)
  assert scores["landmark_nme_percent"] == pytest.approx(
      scores["mean_face_landmark_nme_percent"], rel=1e-4)
  assert abs(scores["now_reduction"]) < 1e-5


def test_eval_needs_ground_truth_of_this_model(model):
  batch, _ = _batch(model, np.random.default_rng(1), samples=1, frames=1)
  with pytest.raises(ValueError, match="input.detail=True"):
    evaluation.make_eval_fn(_config(), _fake_method(model),
                            [{k: v for k, v in batch.items() if k != "detail"}], model=model)
  batch["detail"] = batch["detail"][:, :10]
  with pytest.raises(ValueError, match="another face model"):
    evaluation.make_eval_fn(_config(), _fake_method(model), [batch], model=model)


def test_image_strips(model):
  batch, rotation = _batch(model, np.random.default_rng(2))
  state = {"shape": jnp.asarray(np.repeat(batch["shape"], 2, 0)[:3]),
           "rotation": jnp.asarray(rotation[:3])}  # the fake predicts one row per image
  image_fn = evaluation.make_image_fn(_config(), _fake_method(model), model=model, count=3)
  strips = image_fn(state, batch)["input_render_overlay"]
  assert strips.shape == (3, SIZE, 3 * SIZE, 3)
  assert strips.min() >= 0.0 and strips.max() <= 1.0
  np.testing.assert_array_equal(strips[:, :, :SIZE], batch["image"].reshape(-1, SIZE, SIZE, 3)[:3])
  rendered = strips[:, :, SIZE:2 * SIZE]
  assert (rendered.sum(-1) > 0).mean() > 0.1  # the face covers part of the render
  overlay = strips[:, :, 2 * SIZE:]
  green = (overlay[..., 1] == 1.0) & (overlay[..., 0] == 0.0) & (overlay[..., 2] == 0.0)
  assert green.sum() >= 3 * 20  # predicted landmarks drawn (some share pixels)
