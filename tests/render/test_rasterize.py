"""Rasterizer: exact visibility against a numpy z-buffer and Embree rays, overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import render
from tests.render import reference

# Jitted once per static configuration: eager op-by-op dispatch is slow on CPU.
_rasterize = jax.jit(render.rasterize, static_argnames=(
    "image_size", "capacity", "cull_backfaces", "perspective", "on_overflow"))


def _sphere_views(batch=3, size=32, perspective=True):
  vertices, triangles = reference.uv_sphere()
  angles = jnp.array([[0.3 * i, 0.7 * i - 0.5, 0.2 * i] for i in range(batch)], jnp.float32)
  rotation = render.euler_to_matrix(angles)
  translation = jnp.array([[3.0 * i, -2.0 * i, 0.0] for i in range(batch)], jnp.float32)
  if perspective:
    camera = render.perspective_camera(rotation, translation, focal=60.0, distance=200.0,
                                       image_size=(size, size))
  else:
    camera = render.orthographic_camera(rotation, translation[:, :2] * 0.01, 0.012,
                                        image_size=(size, size))
  points = jnp.broadcast_to(jnp.asarray(vertices, jnp.float32), (batch,) + vertices.shape)
  xy, depth = render.project(camera, points)
  return xy, depth, triangles


@pytest.mark.parametrize("perspective", [True, False])
@pytest.mark.parametrize("cull", [True, False])
def test_matches_numpy_zbuffer(perspective, cull):
  xy, depth, triangles = _sphere_views(perspective=perspective)
  fragments = _rasterize(xy, depth, triangles, image_size=(32, 32), cull_backfaces=cull,
                               perspective=perspective)
  assert int(fragments.overflow.sum()) == 0
  for b in range(xy.shape[0]):
    ids, z = reference.rasterize_numpy(xy[b], depth[b], triangles, 32, 32,
                                       perspective=perspective, cull=cull)
    ours = np.asarray(fragments.triangle_id[b])
    assert np.mean(ours == ids) > 0.998  # float32 vs float64 may flip exact-edge pixels
    same = (ours == ids) & (ids >= 0)
    np.testing.assert_allclose(np.asarray(fragments.depth[b])[same], z[same], rtol=1e-5, atol=1e-4)
    bary = np.asarray(fragments.bary[b])
    np.testing.assert_allclose(bary[ours >= 0].sum(-1), 1.0, atol=1e-5)
    assert np.all(bary[ours >= 0] > -1e-5)
    assert np.all(bary[ours < 0] == 0) and np.all(np.asarray(fragments.mask[b])[ours < 0] == 0)


def test_background_is_minus_one_and_backfaces_cull():
  # One triangle facing the camera and the same triangle wound the other way.
  vertices = jnp.array([[[-40.0, -40.0, 0.0], [40.0, -40.0, 0.0], [0.0, 40.0, 0.0]]])
  camera = render.perspective_camera(jnp.eye(3)[None], jnp.zeros((1, 3)), focal=20.0,
                                     distance=100.0, image_size=(16, 16))
  xy, depth = render.project(camera, vertices)
  front = _rasterize(xy, depth, jnp.array([[0, 1, 2]]), image_size=(16, 16))
  back = _rasterize(xy, depth, jnp.array([[0, 2, 1]]), image_size=(16, 16))
  both = _rasterize(xy, depth, jnp.array([[0, 2, 1]]), image_size=(16, 16), cull_backfaces=False)
  assert set(np.unique(front.triangle_id)) == {-1, 0}
  assert np.all(np.asarray(back.triangle_id) == -1)
  np.testing.assert_array_equal(np.asarray(both.triangle_id), np.asarray(front.triangle_id))
  np.testing.assert_allclose(np.asarray(front.depth)[np.asarray(front.triangle_id) == 0], 100.0,
                             rtol=1e-6)


def test_overflow_is_counted_and_reported():
  xy, depth, triangles = _sphere_views(batch=2, size=64)
  tiny = render.Capacity(tiers=((1, None), (2, 4)))
  with pytest.warns(RuntimeWarning, match="overflow"):  # reported from inside jit
    fragments = _rasterize(xy, depth, triangles, image_size=(64, 64), capacity=tiny)
    jax.effects_barrier()
  assert np.all(np.asarray(fragments.overflow) > 0)
  with pytest.raises(Exception, match="overflow"):
    jax.block_until_ready(_rasterize(xy, depth, triangles, image_size=(64, 64), capacity=tiny,
                                     on_overflow="raise"))
    jax.effects_barrier()
  with pytest.warns(RuntimeWarning, match="overflow"):
    render.check_overflow(fragments, "warn")
  with pytest.raises(RuntimeError, match="overflow"):
    render.check_overflow(fragments, "raise")
  roomy = _rasterize(xy, depth, triangles, image_size=(64, 64))
  assert render.check_overflow(roomy, "raise") == 0
  # Undrawn triangles leave holes; with room the sphere is closed.
  assert (np.asarray(fragments.mask) > 0).sum() < (np.asarray(roomy.mask) > 0).sum()


POSES = [(0.0, 0.0, 0.0), (0.2, 0.6, -0.1), (-0.25, -1.1, 0.15)]


@pytest.mark.parametrize("variant", ["full", "front"])
def test_default_face_matches_embree_ray_casting(variant, full_model, front_model):
  model = full_model if variant == "full" else front_model
  size, focal, distance = 224, 1015.0, 1000.0
  rotation = render.euler_to_matrix(jnp.asarray(POSES, jnp.float32))
  translation = jnp.array([[0.0, 0.0, 0.0], [5.0, -3.0, 20.0], [-4.0, 2.0, -30.0]])
  camera = render.perspective_camera(rotation, translation, focal=focal, distance=distance,
                                     image_size=(size, size))
  points = jnp.broadcast_to(model.mean, (len(POSES),) + model.mean.shape)
  xy, depth = render.project(camera, points)
  # The ray caster sees back faces through the mesh's holes: compare without culling.
  fragments = _rasterize(xy, depth, model.triangles, image_size=(size, size),
                         cull_backfaces=False)
  assert int(fragments.overflow.sum()) == 0
  for b in range(len(POSES)):
    posed = render.rigid_transform(model.mean[None], rotation[b:b + 1], translation[b:b + 1])[0]
    ids, ref_depth = reference.raycast_perspective(posed, model.triangles, size, size, focal,
                                                   distance)
    ours = np.asarray(fragments.triangle_id[b])
    foreground = (ids >= 0) | (ours >= 0)
    assert foreground.sum() > 10_000
    assert np.mean(ids[foreground] == ours[foreground]) >= 0.999
    assert np.mean((ids >= 0) != (ours >= 0)) <= 0.001
    same = (ids == ours) & (ids >= 0)
    relative = np.abs(np.asarray(fragments.depth[b])[same] - ref_depth[same]) / ref_depth[same]
    assert relative.max() <= 1e-4
