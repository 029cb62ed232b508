"""The coefficient-vector contract: layouts, flatten/unflatten, the discriminator's part."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import morphable
from jaxface.morphable import coefficients as coef
from jaxface.morphable.model import MorphableModel, Skinning

KS, KE, KA = 4, 3, 2


def tiny_model(jaw: bool = False) -> MorphableModel:
  v = 6
  skinning = None
  if jaw:
    skinning = Skinning(joint_regressor=jnp.zeros((5, v)), weights=jnp.ones((v, 5)) / 5,
                        pose_basis=jnp.zeros((v, 3, 36)), parents=(-1, 0, 1, 1, 1),
                        joint_names=("global", "neck", "jaw", "left_eye", "right_eye"))
  return MorphableModel(
      mean=jnp.zeros((v, 3)), shape_basis=jnp.zeros((v, 3, KS)),
      expression_basis=jnp.zeros((v, 3, KE)), albedo_mean=jnp.zeros((v, 3)),
      albedo_basis=jnp.zeros((v, 3, KA)), triangles=jnp.zeros((1, 3), jnp.int32),
      uv=jnp.zeros((v, 2)), landmark_vertices=jnp.zeros((68, 3), jnp.int32),
      landmark_bary=jnp.ones((68, 3)) / 3, region=jnp.zeros(v, jnp.int32), skinning=skinning)


def random_params(layout, leading=(), seed=0):
  rng = np.random.default_rng(seed)
  return {name: jnp.asarray(rng.normal(size=leading + shape), jnp.float32)
          for name, shape in layout.blocks}


def test_layout_for_models_and_cameras():
  persp = coef.layout_for(tiny_model(), "perspective")
  assert persp.names == ("shape", "expression", "albedo", "rotation", "translation", "light")
  assert persp.size == KS + KE + KA + 3 + 3 + 27
  assert persp.shapes["light"] == (9, 3) and persp.sizes["light"] == 27
  assert persp.slice("rotation") == slice(KS + KE + KA, KS + KE + KA + 3)
  ortho = coef.layout_for(tiny_model(), camera="orthographic")
  assert ortho.names == ("shape", "expression", "albedo", "rotation", "translation", "scale",
                         "light")
  assert ortho.shapes["translation"] == (2,) and ortho.shapes["scale"] == (1,)
  assert ortho.size == KS + KE + KA + 3 + 2 + 1 + 27
  flame = coef.layout_for(tiny_model(jaw=True))
  assert flame.names == ("shape", "expression", "albedo", "rotation", "jaw", "translation",
                         "light")
  # Deng et al.'s BFM_model_front sizes: 80 + 64 + 80 + 3 + 3 + 27 = 257 entries.
  assert coef.make_layout(num_shape=80, num_expression=64, num_albedo=80).size == 257
  with pytest.raises(ValueError):
    coef.layout_for(tiny_model(), camera="fisheye")
  with pytest.raises(ValueError):
    coef.CoefficientLayout(blocks=(("a", (2,)), ("a", (3,))))
  with pytest.raises(ValueError):
    coef.CoefficientLayout(blocks=(("a", (0,)),))


def test_flatten_by_hand_and_unflatten():
  layout = coef.make_layout(num_shape=2, num_expression=1, num_albedo=1)
  light = np.arange(27, dtype=np.float32).reshape(9, 3)
  params = {"shape": jnp.array([1.0, 2.0]), "expression": jnp.array([3.0]),
            "albedo": jnp.array([4.0]), "rotation": jnp.array([5.0, 6.0, 7.0]),
            "translation": jnp.array([8.0, 9.0, 10.0]), "light": jnp.asarray(light)}
  expected = np.concatenate([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], light.ravel()])  # row-major
  vector = coef.flatten(layout, params)
  np.testing.assert_array_equal(vector, expected)
  back = coef.unflatten(layout, vector)
  assert set(back) == set(params)
  for name, value in params.items():
    np.testing.assert_array_equal(back[name], value)


@pytest.mark.parametrize("camera", ["perspective", "orthographic"])
def test_round_trip_batched(camera):
  layout = coef.layout_for(tiny_model(jaw=True), camera)
  params = random_params(layout, leading=(2, 5))
  vector = coef.flatten(layout, params)
  assert vector.shape == (2, 5, layout.size)
  back = coef.unflatten(layout, vector)
  for name, shape in layout.blocks:
    assert back[name].shape == (2, 5) + shape
    np.testing.assert_array_equal(back[name], params[name])
  np.testing.assert_array_equal(coef.flatten(layout, back), vector)


def test_flatten_broadcasts_a_shared_identity_over_frames():
  # jaxface.fit's parameters: shared shape/albedo [K], per-frame pose, light [T, ...].
  layout = coef.layout_for(tiny_model())
  params = random_params(layout, leading=(3,))
  params["shape"] = params["shape"][0]
  params["albedo"] = params["albedo"][0]
  vector = coef.flatten(layout, params)
  assert vector.shape == (3, layout.size)
  for t in range(3):
    np.testing.assert_array_equal(vector[t, layout.slice("shape")], params["shape"])


def test_flatten_and_unflatten_reject_mismatches():
  layout = coef.layout_for(tiny_model())
  params = random_params(layout)
  with pytest.raises(ValueError, match="missing"):
    coef.flatten(layout, {k: v for k, v in params.items() if k != "light"})
  with pytest.raises(ValueError, match="unexpected"):
    coef.flatten(layout, {**params, "scale": jnp.ones(1)})
  with pytest.raises(ValueError, match="trailing shape"):
    coef.flatten(layout, {**params, "light": jnp.zeros(27)})
  with pytest.raises(ValueError, match="broadcast"):
    coef.flatten(layout, {**params, "shape": jnp.zeros((2, KS)), "light": jnp.zeros((3, 9, 3))})
  with pytest.raises(ValueError):
    coef.unflatten(layout, jnp.zeros(layout.size + 1))


def test_layout_is_a_static_jit_argument():
  a = coef.layout_for(tiny_model())
  b = coef.make_layout(num_shape=KS, num_expression=KE, num_albedo=KA)
  assert a == b and hash(a) == hash(b)
  params = random_params(a, leading=(2,))
  jitted = jax.jit(coef.flatten, static_argnums=0)
  np.testing.assert_array_equal(jitted(a, params), coef.flatten(a, params))
  unjit = jax.jit(coef.unflatten, static_argnums=0)
  np.testing.assert_array_equal(unjit(a, jitted(a, params))["light"], params["light"])


def test_normalised_is_the_prior_prefix():
  layout = coef.layout_for(tiny_model(), "orthographic")
  params = random_params(layout, leading=(4,))
  expected = np.concatenate([params["shape"], params["expression"], params["albedo"]], -1)
  np.testing.assert_array_equal(coef.normalised(layout, params), expected)
  vector = coef.flatten(layout, params)
  np.testing.assert_array_equal(coef.normalised(layout, vector), expected)
  np.testing.assert_array_equal(vector[:, :KS + KE + KA], expected)
  assert layout.size_of() == KS + KE + KA
  only_shape = coef.normalised(layout, params, names=("shape",))
  np.testing.assert_array_equal(only_shape, params["shape"])
  with pytest.raises(KeyError):
    coef.normalised(layout, params, names=("jaw",))


def test_sample_prior_is_standard_normal_in_the_normalised_layout():
  layout = coef.layout_for(tiny_model())
  samples = coef.sample_prior(layout, jax.random.key(0), (4000,))
  assert samples.shape == (4000, KS + KE + KA)
  np.testing.assert_allclose(np.mean(samples, 0), 0.0, atol=0.06)
  np.testing.assert_allclose(np.std(samples, 0), 1.0, atol=0.05)


def test_translation_unit_matches_the_fitter():
  from jaxface.fit import fitting  # pylint: disable=import-outside-toplevel
  assert coef.PERSPECTIVE_TRANSLATION_UNIT_MM == fitting.TRANSLATION_UNIT_MM


def test_reexports():
  assert morphable.CoefficientLayout is coef.CoefficientLayout
  assert morphable.layout_for is coef.layout_for
  assert morphable.coefficients.flatten is coef.flatten
