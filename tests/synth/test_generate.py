"""The synthetic generator: determinism, ground-truth consistency, detail, shadows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import morphable, render, synth
from jaxface.geometry import vertex_normals
from jaxface.synth import generate, scene

SIZE = 96


@pytest.fixture(scope="module")
def generator(front_model):
  config = synth.SynthConfig(image_size=SIZE, frames=3, occlusion_probability=0.5,
                             key_light_probability=0.5)
  return synth.make_generator(front_model, config)


@pytest.fixture(scope="module")
def records(generator):
  return list(synth.generate_identities(generator, 7, range(3)))  # pipelined, as jaxface synth


_render = jax.jit(render.render, static_argnames=("edge_antialias", "on_overflow"))


def rerender(model, record):
  """Renders a record's stored coefficients with the public renderer: (mask, landmarks)."""
  vertices = (morphable.decode(model, jnp.asarray(record["shape"]), jnp.asarray(record["expression"]))
              + jnp.asarray(record["detail"], jnp.float32))
  camera = render.perspective_camera(
      render.euler_to_matrix(jnp.asarray(record["rotation"])), jnp.asarray(record["translation"]),
      focal=jnp.asarray(record["focal"]), distance=synth.CAMERA_DISTANCE_MM,
      image_size=record["image"].shape[1:3])
  out = _render(vertices, render.make_topology(model.triangles), camera,
                albedo=jnp.full(vertices.shape, 0.5), edge_antialias=False, on_overflow="ignore")
  landmarks, _ = render.project(camera, morphable.landmarks_3d(model, vertices))
  return np.asarray(out.fragments.mask) > 0.5, np.asarray(landmarks)


def test_shapes_and_types(records, front_model):
  r = records[0]
  assert r["image"].shape == (3, SIZE, SIZE, 3) and r["image"].dtype == np.uint8
  assert r["mask"].shape == (3, SIZE, SIZE) and set(np.unique(r["mask"])) <= {0, 255}
  assert r["landmarks"].shape == (3, 68, 2)
  assert r["position_map"].shape == (3, 256, 256, 3)
  assert r["shape"].shape == (front_model.num_shape,)
  assert r["expression"].shape == (3, front_model.num_expression)
  assert r["detail"].shape == (front_model.num_vertices, 3) and r["detail"].dtype == np.float16
  assert len(r["tags"]) == 3


def test_deterministic_per_identity(generator, records):
  again = synth.generate_identity(generator, 7, 1)  # alone: the same as in the pipeline
  for key in ("image", "mask", "occlusion", "landmarks", "position_map", "shape", "expression",
              "albedo", "rotation", "translation", "focal", "light", "key_light", "detail"):
    np.testing.assert_array_equal(again[key], records[1][key])
  assert again["tags"] == records[1]["tags"]
  assert not np.array_equal(records[0]["shape"], records[1]["shape"])
  other_seed = synth.generate_identity(generator, 8, 1)
  assert not np.array_equal(other_seed["shape"], records[1]["shape"])


def test_sparse_antialiasing_gives_the_dense_image(generator):
  started = synth.start_identity(generator, 7, 2)
  sparse, _, _, _, overflow = started["rendered"]
  dense = synth.render_frames(started["vertices"], generator.topology, *started["scene_arrays"],
                              image_size=SIZE, capacity=generator.capacity,
                              shadow_capacity=generator.shadow_capacity)[0]
  assert np.all(np.asarray(overflow) == 0)
  np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-5)


def test_ground_truth_rerenders(front_model, records):
  for r in records:
    mask, landmarks = rerender(front_model, r)
    stored = r["mask"] > 0
    iou = np.sum(mask & stored, axis=(1, 2)) / np.sum(mask | stored, axis=(1, 2))
    assert np.all(iou >= 0.99), iou
    assert np.max(np.abs(landmarks - r["landmarks"])) < 0.5


def test_face_is_on_the_image_and_differs_from_background(records):
  for r in records:
    inside = r["landmarks"]
    assert np.all((inside > 0) & (inside < SIZE))
    assert np.all(r["mask"].mean(axis=(1, 2)) > 0.1 * 255)


def test_detail_is_out_of_span_with_the_requested_rms(front_model, records):
  detail = records[0]["detail"].astype(np.float64).reshape(-1)
  basis = np.asarray(front_model.shape_basis, np.float64).reshape(detail.size, -1)
  coefficients, *_ = np.linalg.lstsq(basis, detail, rcond=None)
  # The detail cannot be represented: its best in-span approximation is ~zero.
  assert np.linalg.norm(basis @ coefficients) < 0.01 * np.linalg.norm(detail)
  rms = np.sqrt(np.mean(np.sum(records[0]["detail"].astype(np.float64) ** 2, axis=1)))
  assert rms == pytest.approx(1.0, rel=0.01)


def test_tags_match_the_frames(records):
  for r in records:
    for t, tags in enumerate(r["tags"]):
      tags = tags.split(",")
      assert ("occluded" in tags) == bool(r["occlusion"][t].any())
      yaw = abs(np.rad2deg(r["rotation"][t, 1]))
      assert ("large_pose" in tags) == (yaw > scene.LARGE_POSE_DEG)
      assert ("key_light" in tags) == bool(np.any(r["key_light"][t] != 0))


def test_occluder_covers_part_of_the_face(records):
  occluded = [(r, t) for r in records for t in range(3) if r["occlusion"][t].any()]
  assert occluded, "the fixture should contain occluded frames"
  for r, t in occluded:
    assert np.any((r["occlusion"][t] > 0) & (r["mask"][t] > 0))


def test_position_map_holds_projected_vertices(front_model, records):
  r = records[0]
  uv = np.asarray(front_model.uv)
  vertices = (morphable.decode(front_model, jnp.asarray(r["shape"]), jnp.asarray(r["expression"]))
              + jnp.asarray(r["detail"], jnp.float32))
  camera = render.perspective_camera(
      render.euler_to_matrix(jnp.asarray(r["rotation"])), jnp.asarray(r["translation"]),
      focal=jnp.asarray(r["focal"]), distance=synth.CAMERA_DISTANCE_MM, image_size=(SIZE, SIZE))
  xy, _ = render.project(camera, vertices)
  xy = np.asarray(xy)
  # Sample the map at landmark vertices' UVs (nearest texel centre): the stored x, y
  # equal the projected vertex within the texel's footprint on the image.
  index = np.asarray(front_model.landmarks)
  col = np.clip((uv[index, 0] * 256).astype(int), 0, 255)
  row = np.clip(((1 - uv[index, 1]) * 256).astype(int), 0, 255)
  sampled = r["position_map"][:, row, col, :2]
  # Texels outside the UV footprint are 0 (landmarks on the mouth/eye hole borders).
  covered = np.all(sampled != 0, axis=(0, 2))
  assert covered.sum() >= 60
  error = np.abs(sampled - xy[:, index])[:, covered]
  texel_px = 3.0  # a texel spans < 3 px of a 96 px image for this model
  assert np.median(error) < texel_px / 2 and np.max(error) < texel_px
  # z: larger is nearer the camera: the nose tip (30) is nearer than the outer eye corners.
  z = r["position_map"][0, row, col, 2]
  frontal = abs(r["rotation"][0, 1]) < np.deg2rad(30)
  if frontal:
    assert z[30] > z[36] and z[30] > z[45]


def test_eyes_are_drawn_dark_inside_the_eye_outlines(front_model, records):
  """The pupils (darker than the skin around) sit at the eye-outline centres, frames
  without occluders show them dark in the image."""
  from jaxface.synth import appearance  # pylint: disable=import-outside-toplevel
  mean = np.asarray(front_model.mean)
  landmarks = np.asarray(morphable.landmarks_3d(front_model, front_model.mean))
  eyes = appearance.eye_regions(mean, landmarks)
  for outline in appearance.EYE_OUTLINES:
    centre = landmarks[list(outline), :2].mean(0)
    pupil = eyes[:, 2] > 0
    near = np.linalg.norm(mean[:, :2] - centre, axis=1) < appearance.PUPIL_RADIUS_MM
    assert np.sum(pupil & near) >= 5
  assert np.all(eyes[:, 1][eyes[:, 2] > 0] > 0)  # the pupil lies in the iris
  for r in records:
    for t, tags in enumerate(r["tags"]):
      if "occluded" in tags or "large_pose" in tags:
        continue
      image = r["image"][t].astype(float).mean(-1)
      pupils = [image[int(y), int(x)] for x, y in
                (r["landmarks"][t][list(o)].mean(0) for o in appearance.EYE_OUTLINES)]
      bridge = image[int(r["landmarks"][t][29, 1]), int(r["landmarks"][t][29, 0])]  # of the nose
      assert max(pupils) < bridge, (pupils, bridge)


def test_shadow_of_a_plate_over_a_plane():
  """A small plate 50 mm in front of a wall shadows the wall along the light direction."""
  # Wall: 200 x 200 mm at z = 0; plate: 40 x 40 mm at z = 50, centred at the origin.
  def quad(cx, cy, z, half):
    return np.array([[cx - half, cy - half, z], [cx + half, cy - half, z],
                     [cx + half, cy + half, z], [cx - half, cy + half, z]])
  vertices = np.concatenate([quad(0, 0, 0, 100), quad(0, 0, 50, 20)])
  triangles = jnp.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], jnp.int32)
  direction = np.array([0.6, 0.0, 0.8])  # light up and to the right: shadow shifts left
  # Query points on the wall: the shadow centre is at x = -50 * 0.6 / 0.8 = -37.5 mm.
  points = np.array([[-37.5, 0, 0], [-37.5, 15, 0], [40.0, 0, 0], [-37.5, 40, 0], [0.0, 0, 50]])
  normals = np.tile([0.0, 0.0, 1.0], (1, 1, len(points), 1))
  lit, _ = generate._shadow(jnp.asarray(vertices[None], jnp.float32),
                            jnp.asarray(points[None, None], jnp.float32),
                            jnp.asarray(normals, jnp.float32),
                            jnp.asarray(direction[None], jnp.float32), triangles)
  np.testing.assert_allclose(np.asarray(lit)[0, 0], [0, 0, 1, 1, 1])


def test_grazing_key_light_does_not_shadow_a_curved_surface_itself():
  """A convex cap (face-sized) lit at 70-80 degrees from its axis: every point facing the
  light is lit (no "shadow acne" stripes from the map's texels)."""
  u, v = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41))
  x, y = 90 * u, 110 * v
  z = 60 * np.sqrt(np.maximum(1 - u ** 2 / 2.1 - v ** 2 / 2.1, 0.0))
  vertices = np.stack([x, y, z], -1).reshape(-1, 3)
  k = np.arange(41 * 41).reshape(41, 41)[:-1, :-1].ravel()
  triangles = np.concatenate([np.stack([k, k + 1, k + 42], -1), np.stack([k, k + 42, k + 41], -1)])
  normals = np.asarray(vertex_normals(jnp.asarray(vertices, jnp.float32), jnp.asarray(triangles)))
  for degrees in (70.0, 80.0):
    direction = np.array([np.sin(np.deg2rad(degrees)), 0.0, np.cos(np.deg2rad(degrees))])
    facing = normals @ direction > 0.2  # clearly lit by a convex surface
    lit, _ = generate._shadow(jnp.asarray(vertices[None], jnp.float32),
                              jnp.asarray(vertices[None, None], jnp.float32),
                              jnp.asarray(normals[None, None], jnp.float32),
                              jnp.asarray(direction[None], jnp.float32),
                              jnp.asarray(triangles, jnp.int32))
    assert np.asarray(lit)[0, 0][facing].min() == 1.0, degrees


def test_sh_directional_matches_clamped_cosine():
  """The SH light of a distant source approximates max(n·d, 0) (order-2 error < 0.1)."""
  d = np.array([0.3, 0.4, np.sqrt(1 - 0.25)])
  light = jnp.asarray(np.repeat(scene.sh_directional(d, np.ones(3))[None], 1, 0), jnp.float32)
  normals = np.random.default_rng(0).normal(size=(200, 3))
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  shaded = render.shade_sh(jnp.ones((1, 200, 3)), jnp.asarray(normals[None], jnp.float32), light)
  expected = np.maximum(normals @ d, 0)
  assert np.max(np.abs(np.asarray(shaded)[0, :, 0] - expected)) < 0.1
  ambient = render.shade_sh(jnp.ones((1, 200, 3)), jnp.asarray(normals[None], jnp.float32),
                            jnp.asarray(scene.sh_ambient(np.array([0.2, 0.5, 0.7]))[None], jnp.float32))
  np.testing.assert_allclose(np.asarray(ambient)[0], np.tile([0.2, 0.5, 0.7], (200, 1)), atol=1e-5)
