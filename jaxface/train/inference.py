"""A trained encoder at inference: `jaxface export` files -> fitting parameters.

`load_predictor(path)` reads an export (`jaxface.train.export_params`, written by
`jaxface export`) with the training config stored in its metadata;
`fit_init(predictor, model, images, landmarks, masks)` regresses the coefficients of
aligned crops and converts them to the parameter pytree of `jaxface.fit` (the fitter's
perspective camera), so `jaxface reconstruct --checkpoint` can write them directly or
refine them with the analysis-by-synthesis fit.

Camera conversion. GAN-3DMM regresses the fitter's own perspective camera, so its
rotation and translation carry over. MLFL-GA regresses a weak-perspective camera,
pixel = W/2 + (s·X + t)·W/2 (x; y likewise, flipped); the perspective camera with
focal f that matches it at the face's depth has d - t_z = 2f / (s·W) and
t_xy = t / s (mm), which is what `perspective_from_orthographic` returns.
"""

import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxface import morphable
from jaxface.errors import JaxfaceError
from jaxface.fit import fitting
from jaxface.train import checkpoints, methods


class Predictor(NamedTuple):
  """A trained network: its config, method, variables and the jitted
  `predict(variables, images, landmarks, masks) -> blocks` (`method.predict`)."""
  config: ml_collections.ConfigDict
  method: methods.Method
  variables: Any  # has .params / .batch_stats (what `method.predict` reads)
  predict: Any


class _Variables(NamedTuple):
  params: dict
  batch_stats: dict


def load_predictor(path) -> Predictor:
  """Reads an export; JaxfaceError naming the file if it holds no usable config."""
  tree = checkpoints.load_exported(path)
  try:
    config = ml_collections.ConfigDict(json.loads(tree["metadata"]["config"]))
    method = methods.get(config.method)
  except (KeyError, TypeError, ValueError) as e:
    raise JaxfaceError(f"{path}: the export holds no usable training config ({e}); "
                       "write it with `jaxface export`") from None
  params = jax.tree.map(jnp.asarray, tree["params"])
  stats = jax.tree.map(jnp.asarray, tree["batch_stats"])
  predict = jax.jit(lambda variables, images, landmarks, masks: method.predict(
      config, variables, images, landmarks, masks))
  return Predictor(config, method, _Variables(params, stats), predict)


def _resize(x: np.ndarray, size: int, method: str) -> jax.Array:
  """[T, H, W, C] -> [T, size, size, C] (antialiased when shrinking)."""
  return jax.image.resize(jnp.asarray(x, jnp.float32), (x.shape[0], size, size, x.shape[3]),
                          method=method, antialias=True)


def perspective_from_orthographic(scale: np.ndarray, translation: np.ndarray,
                                  width: int) -> np.ndarray:
  """[T, 3] fitter translation (10 mm units) matching a weak-perspective camera.

  Args:
    scale: [T] s, normalised image units per mm. translation: [T, 2] normalised units.
    width: W of the image both cameras project into (the focal scales with it).
  """
  focal = fitting.FOCAL_AT_224 * width / 224.0
  depth = 2.0 * focal / (np.asarray(scale) * width)
  xy = np.asarray(translation) / np.asarray(scale)[:, None]
  t = np.concatenate([xy, (fitting.CAMERA_DISTANCE_MM - depth)[:, None]], -1)
  return t / fitting.TRANSLATION_UNIT_MM


def fit_init(predictor: Predictor, model: morphable.MorphableModel, images: np.ndarray,
             landmarks: np.ndarray, masks: np.ndarray) -> dict:
  """The network's estimate of T aligned crops of one person as `jaxface.fit` params.

  Args:
    predictor: from `load_predictor`; its face model must have `model`'s sizes.
    model: the fitting's face model.
    images: [T, H, W, 3] crops in [0, 1]. landmarks: [T, 68, 2] crop pixels.
    masks: [T, H, W] face masks.
  Returns:
    {shape [Ks], albedo [Ka] (means over the T frames), expression [T, Ke], rotation
     [T, 3], translation [T, 3] (10 mm units, the fitter's camera at W), light [T, 9, 3]}.
  Raises:
    JaxfaceError: the network was trained with another face model.
  """
  config = predictor.config
  size = int(config.input.image_size)
  width = images.shape[2]
  factor = size / width
  blocks = predictor.predict(
      predictor.variables, _resize(images, size, "linear"),
      jnp.asarray(landmarks, jnp.float32) * factor,
      _resize(np.asarray(masks)[..., None], size, "linear")[..., 0])
  blocks = {k: np.asarray(v) for k, v in blocks.items()}
  for name, count in (("shape", model.num_shape), ("expression", model.num_expression),
                      ("albedo", model.num_albedo)):
    if blocks[name].shape[-1] != count:
      raise JaxfaceError(f"the network regresses {blocks[name].shape[-1]} {name} "
                         f"coefficients, the face model has {count}: trained with "
                         f"{config.morphable.model!r}, use --model accordingly")
  if "scale" in blocks:  # weak perspective -> the fitter's perspective camera
    translation = perspective_from_orthographic(blocks["scale"][:, 0], blocks["translation"],
                                                width)
  else:
    translation = blocks["translation"]
  return {
      "shape": jnp.asarray(blocks["shape"].mean(0)),
      "albedo": jnp.asarray(blocks["albedo"].mean(0)),
      "expression": jnp.asarray(blocks["expression"]),
      "rotation": jnp.asarray(blocks["rotation"]),
      "translation": jnp.asarray(translation, jnp.float32),
      "light": jnp.asarray(blocks["light"]),
  }
