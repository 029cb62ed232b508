"""Sliding jaw contour: at large yaw the far-side landmarks land on the silhouette."""

import jax.numpy as jnp
import numpy as np

from jaxface import fit, morphable, render
from jaxface.fit import contour

SIZE = (160, 160)


def _pose(model, yaw):
  params = {"shape": jnp.zeros(model.num_shape), "expression": jnp.zeros((1, model.num_expression)),
            "rotation": jnp.array([[0.0, yaw, 0.0]]), "translation": jnp.zeros((1, 3))}
  vertices = fit.posed_vertices(model, params)
  camera = fit.camera_for(params, SIZE)
  candidates, sides = contour.contour_candidates(model)
  band = render.project(camera, vertices[:, candidates.reshape(-1)])[0]
  marched = np.asarray(contour.march(band.reshape(1, *candidates.shape, 2), jnp.asarray(sides)))[0]
  fixed = np.asarray(fit.projected_landmarks(model, params, SIZE))[0, :17]
  mask = np.asarray(render.render(vertices, render.make_topology(model.triangles), camera,
                                  albedo=jnp.ones((1, model.num_vertices, 3)),
                                  light=render.ambient_sh(1.0)[None]).mask[0]) > 0.5
  return marched, fixed, sides, mask


def test_bands_start_at_the_landmark_vertex_and_chin_points_are_fixed(front_model):
  candidates, sides = contour.contour_candidates(front_model)
  vertices = np.asarray(front_model.landmark_vertices)[:17, 0]
  np.testing.assert_array_equal(candidates[:, 0], vertices)
  assert list(np.nonzero(sides == 0)[0]) == list(contour.FIXED)
  x = np.asarray(front_model.mean)[vertices, 0]
  np.testing.assert_array_equal(np.sign(x[sides != 0]), sides[sides != 0])
  assert candidates.shape[1] > 50  # a band, not a single vertex


def test_frontal_keeps_the_vertices_and_yawed_far_side_follows_the_silhouette(front_model):
  # Frontal: the pinned vertices are nearly the outermost of their bands (the jaw's
  # silhouette lies up to ~1 px outside them; a band is +-1 mm high, ~0.7 px here).
  marched, fixed, _, _ = _pose(front_model, 0.0)
  assert np.linalg.norm(marched - fixed, axis=-1).max() < 1.5
  for yaw in (0.9, -0.9):
    marched, fixed, sides, mask = _pose(front_model, yaw)
    moved = np.linalg.norm(marched - fixed, axis=-1) > 3.0
    # Only one side slides (the far one), and its points move out towards the
    # silhouette (the outermost face pixel of their row, on their side): most of the
    # way from the pinned vertex, which lies inside the face, and never past it.
    far = sides[moved]
    assert len(far) >= 4 and np.all(far == far[0])
    assert not np.any(moved[sides == -far[0]])  # the near side stays
    for j in np.nonzero(moved)[0]:
      columns = np.nonzero(mask[int(marched[j, 1])])[0]
      edge = columns.max() + 1 if sides[j] > 0 else columns.min()
      gained, available = (marched[j, 0] - fixed[j, 0]) * sides[j], (edge - fixed[j, 0]) * sides[j]
      assert 0.6 * available < gained < available + 1.0, (j, gained, available)
