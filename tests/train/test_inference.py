"""A trained encoder at inference: the camera conversion and the fit's starting point."""

import jax.numpy as jnp
import numpy as np

from jaxface import render
from jaxface.fit import fitting
from jaxface.train import inference


def test_orthographic_to_perspective_agrees_on_the_face_plane():
  rng = np.random.default_rng(0)
  width = 96
  scale = np.array([0.008, 0.012])  # normalised units per mm (face ~ 70-110 px wide)
  translation = np.array([[0.05, -0.1], [-0.2, 0.15]])
  rotation = np.zeros((2, 3), np.float32)
  points = np.concatenate([rng.uniform(-80, 80, (2, 50, 2)), np.zeros((2, 50, 1))], -1)
  ortho = render.orthographic_camera(render.euler_to_matrix(jnp.asarray(rotation)),
                                     jnp.asarray(translation, jnp.float32),
                                     jnp.asarray(scale, jnp.float32), image_size=(width, width))
  t = inference.perspective_from_orthographic(scale, translation, width)
  persp = fitting.camera_for({"rotation": jnp.asarray(rotation),
                              "translation": jnp.asarray(t, jnp.float32)}, (width, width))
  a = np.asarray(render.project(ortho, jnp.asarray(points, jnp.float32))[0])
  b = np.asarray(render.project(persp, jnp.asarray(points, jnp.float32))[0])
  np.testing.assert_allclose(a, b, atol=1e-3)  # exact for points at the face's depth
