"""Fitting on synthetic renders with known parameters: landmarks, determinism, multi-frame."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import fit
from jaxface import morphable
from jaxface import render

SIZE = (112, 112)


def _truth(rng, frames):
  return {
      "shape": jnp.asarray(rng.normal(size=40), jnp.float32),
      "albedo": jnp.asarray(rng.normal(size=60) * 0.5, jnp.float32),
      "expression": jnp.asarray(rng.normal(size=(frames, 10)) * 0.5, jnp.float32),
      "rotation": jnp.asarray(np.stack([rng.uniform(-0.15, 0.15, frames),
                                        np.linspace(-0.5, 0.5, frames) if frames > 1
                                        else rng.uniform(-0.4, 0.4, 1),
                                        rng.uniform(-0.1, 0.1, frames)], -1), jnp.float32),
      "translation": jnp.asarray(np.stack([rng.uniform(-1, 1, frames), rng.uniform(-1, 1, frames),
                                           rng.uniform(-5, 5, frames)], -1), jnp.float32),
      "light": jnp.broadcast_to(render.ambient_sh(0.9).at[2].set(0.3), (frames, 9, 3)),
  }


@jax.jit
def _render(model, topology, truth):
  vertices = fit.posed_vertices(model, truth)
  albedo = morphable.albedo(model, truth["albedo"])
  return render.render(vertices, topology, fit.camera_for(truth, SIZE),
                       albedo=jnp.broadcast_to(albedo, (vertices.shape[0],) + albedo.shape),
                       light=truth["light"])


def _targets(model, topology, truth):
  """The render, its mask and the landmarks a detector would mark on it."""
  out = _render(model, topology, truth)
  return fit.FitTargets(images=out.image, landmarks=fit.detector_landmarks(model, truth, SIZE),
                        masks=(out.mask > 0.5).astype(jnp.float32),
                        identity=jnp.zeros((out.image.shape[0], 128)))


@pytest.fixture(scope="module")
def scene(front_model):
  return front_model, render.make_topology(front_model.triangles)


def test_single_image_fit_matches_landmarks_and_is_deterministic(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(0), 1)
  targets = _targets(model, topology, truth)
  config = fit.FitConfig(steps=80)
  result = fit.fit(model, targets, config=config, topology=topology)
  error = np.linalg.norm(np.asarray(fit.detector_landmarks(model, result.params, SIZE)
                                    - targets.landmarks), axis=-1).mean()
  assert error < 1.0  # pixels at 112 px
  history = result.history
  first = int(config.stages[0] * config.steps)  # the photometric term starts here
  assert 0 < history["photometric"][-1] < history["photometric"][first]
  again = fit.fit(model, targets, config=config, topology=topology)
  for k in result.params:
    np.testing.assert_array_equal(np.asarray(result.params[k]), np.asarray(again.params[k]))


def test_multi_frame_shares_identity_and_beats_single_frames(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(1), 3)
  targets = _targets(model, topology, truth)
  config = fit.FitConfig(steps=80)
  joint = fit.fit(model, targets, config=config, topology=topology)
  assert joint.params["shape"].shape == (40,) and joint.params["expression"].shape == (3, 10)
  neutral = lambda shape: morphable.decode(model, shape, jnp.zeros(10))
  rmse = lambda shape: float(jnp.sqrt(jnp.mean(jnp.sum(
      (neutral(shape) - neutral(truth["shape"])) ** 2, -1))))
  singles = []
  for t in range(3):
    one = jax_tree_frame(targets, t)
    singles.append(rmse(fit.fit(model, one, config=config, topology=topology).params["shape"]))
  assert rmse(joint.params["shape"]) < np.mean(singles)


def jax_tree_frame(targets, t):
  return fit.FitTargets(images=targets.images[t:t + 1], landmarks=targets.landmarks[t:t + 1],
                        masks=targets.masks[t:t + 1], identity=targets.identity[t:t + 1])


def test_landmark_weight_drops_once_the_photometric_term_is_on(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(2), 1)
  targets = _targets(model, topology, truth)
  start = fit.init_params(model, np.asarray(targets.landmarks), np.asarray(targets.images),
                          np.asarray(targets.masks))
  config = fit.FitConfig(late_landmark_scale=0.1, identity=0.0)
  terms = [fit.fitting.fit_loss(start, targets, jnp.array(stage), model, topology, None,
                                config=config)[1]
           for stage in ([0.0, 0.0], [1.0, 0.0])]
  assert float(terms[0]["landmark"]) > 0
  np.testing.assert_allclose(terms[1]["landmark"], 0.1 * terms[0]["landmark"], rtol=1e-5)
  np.testing.assert_allclose(terms[1]["eye_closure"], terms[0]["eye_closure"], rtol=1e-5)


def test_photometric_trim_drops_pixels_the_model_cannot_explain(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(3), 1)
  targets = _targets(model, topology, truth)
  # A green "occluder" over the middle of the face: colour error ~0.9 there.
  occluded = targets.replace(images=targets.images.at[:, 40:70, 40:70].set(
      jnp.array([0.0, 1.0, 0.0])))

  def photometric(t, trim):
    config = fit.FitConfig(identity=0.0, photometric_trim=trim)
    return float(fit.fitting.fit_loss(truth, t, jnp.array([1.0, 0.0]), model, topology, None,
                                      config=config)[1]["photometric"])

  clean, hidden = photometric(targets, 0.3), photometric(occluded, 0.3)
  untrimmed = photometric(occluded, 0.0)
  assert untrimmed > 10 * photometric(targets, 0.0)
  assert hidden < 0.2 * untrimmed
  assert hidden < 1.5 * clean  # what is left is the clean image's own (edge) error


def test_profile_and_scale_priors_restrain_what_a_photo_cannot_tell(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(4), 2)
  targets = _targets(model, topology, truth)
  params = dict(truth, rotation=truth["rotation"].at[:, 1].set(jnp.array([np.pi / 3, -np.pi / 6])))
  config = fit.FitConfig(identity=0.0, photometric=0.0, shape_prior=0.05,
                         shape_prior_profile=2.0, scale_prior=10.0, multi_frame_evidence=0.0)
  terms = fit.fitting.fit_loss(params, targets, jnp.zeros(2), model, topology, None,
                               config=config)[1]
  squared = float(jnp.mean(truth["shape"] ** 2))
  # Frames at yaw 60 and -30 degrees: the most frontal one sets the prior, 0.05 + 2 sin^4 30.
  np.testing.assert_allclose(terms["shape_prior"], (0.05 + 2.0 * 0.5 ** 4) * squared,
                             rtol=1e-5)
  eighth = fit.fitting.fit_loss(params, targets, jnp.zeros(2), model, topology, None,
                                config=dataclasses.replace(config, shape_prior_profile_power=8))[1]
  np.testing.assert_allclose(eighth["shape_prior"], (0.05 + 2.0 * 0.5 ** 8) * squared, rtol=1e-5)
  along = float(jnp.dot(truth["shape"], morphable.scale_direction(model)))
  np.testing.assert_allclose(terms["scale_prior"], 10.0 * along ** 2, rtol=1e-4)
  # The scale prior's gradient moves the shape only along the scaling direction.
  gradient = jax.grad(lambda s: fit.fitting.fit_loss(
      dict(params, shape=s), targets, jnp.zeros(2), model, topology, None,
      config=fit.FitConfig(identity=0.0, photometric=0.0, landmark=0.0, eye_closure=0.0,
                           shape_prior=0.0, shape_prior_profile=0.0, scale_prior=1.0,
                           multi_frame_evidence=0.0))[0])(
      truth["shape"])
  direction = np.asarray(morphable.scale_direction(model))
  np.testing.assert_allclose(np.asarray(gradient), 2 * along * direction, rtol=1e-4, atol=1e-6)


def test_multi_frame_evidence_divides_only_the_shared_identity_priors(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(5), 4)
  targets = _targets(model, topology, truth)
  terms = lambda evidence: fit.fitting.fit_loss(
      truth, targets, jnp.zeros(2), model, topology, None,
      config=fit.FitConfig(identity=0.0, photometric=0.0,
                           multi_frame_evidence=evidence))[1]
  one, joint = terms(0.0), terms(0.5)
  for name in ("shape_prior", "scale_prior", "albedo_prior"):  # 4 frames: 4 ** -0.5
    np.testing.assert_allclose(joint[name], one[name] / 2, rtol=1e-5)
  for name in ("expression_prior", "landmark", "light_prior"):
    np.testing.assert_allclose(joint[name], one[name], rtol=1e-6, atol=1e-9)


def test_landmark_noise_raises_the_priors_once_the_photometric_stage_is_on(scene):
  model, topology = scene
  truth = _truth(np.random.default_rng(6), 2)
  targets = _targets(model, topology, truth)
  # Detected landmarks 5 and 10 px (at 112 px: 10 and 20 px at 224) right of the model's.
  targets = targets.replace(landmarks=targets.landmarks.at[:, :, 0].add(jnp.array([[5.0], [10.0]])))
  contour = tuple(jnp.asarray(a) for a in fit.contour.contour_candidates(model))
  terms = lambda noise, stage: fit.fitting.fit_loss(
      truth, targets, jnp.array(stage), model, topology, None, contour,
      config=fit.FitConfig(identity=0.0, photometric=0.0, landmark_noise_px=noise))[1]
  plain, noisy = terms(0.0, [1.0, 0.0]), terms(5.0, [1.0, 0.0])
  per_frame = np.mean(np.asarray(truth["expression"]) ** 2, axis=-1)
  # Factors max(1, (10 / 5)^2) = 4 and (20 / 5)^2 = 16; the shape prior takes the smaller.
  np.testing.assert_allclose(noisy["expression_prior"],
                             fit.FitConfig().expression_prior * np.mean([4.0, 16.0] * per_frame),
                             rtol=1e-3)
  np.testing.assert_allclose(noisy["shape_prior"], 4.0 * plain["shape_prior"], rtol=1e-3)
  # Not during the landmark stage.
  before = terms(5.0, [0.0, 0.0])
  np.testing.assert_allclose(before["shape_prior"], plain["shape_prior"], rtol=1e-6)
  np.testing.assert_allclose(before["expression_prior"], plain["expression_prior"], rtol=1e-6)
