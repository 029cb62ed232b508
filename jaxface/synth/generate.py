"""Synthetic faces with exact ground truth: one identity, F frames -> numpy arrays.

`generate_identity` returns the record that `data_pipelines.features.encode_example`
writes (and `jaxface synth` stores): images, face masks, occluder masks, 68 landmarks,
UV position maps and every parameter needed to re-render the frame. Rendering uses
`jaxface.render` (one jitted program per image size and frame count, with rasterizer
windows sized for the scenes by `sampled_capacities`): SH light plus, on some frames, a
directional key light with shadow-mapped cast shadows and Phong highlights.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from jaxface import morphable
from jaxface import render
from jaxface.geometry import vertex_normals
from jaxface.render.rasterize import edge_function
from jaxface.synth import appearance
from jaxface.synth import scene

POSITION_MAP_SIZE = 256
SHADOW_MAP_SIZE = 128
SHADOW_BIAS_MM = 2.0
# Shadow lookups start this far out along the surface normal ("normal offset", ~2 map
# texels of a face): without it the map's own texels shadow the surface in stripes
# ("shadow acne") wherever the key light grazes it.
SHADOW_NORMAL_OFFSET_MM = 3.0
# Rasterizer windows (`render.Capacity`) are sized from this many sampled frames,
# with this margin; a frame that still overflows is re-rendered with the defaults.
CAPACITY_SAMPLES = 32
CAPACITY_MARGIN = 1.5
CAPACITY_WINDOWS = (1, 2, 4, 8, 16, 32)
CAPACITY_MINIMUM = (256, 256, 256, 64, 32, 16)  # per window: rare classes still fit
# Silhouette pixel pairs antialiased per direction, per image side (pixels): the
# synthetic frames have at most ~4 per side pixel (1789 at 224 px in 164 frames).
SILHOUETTE_PAIRS_PER_SIDE = 8


@dataclasses.dataclass(frozen=True)
class Generator:
  """What `generate_identity` needs besides the seed: the model and cached topology.

  Attributes:
    model: the face model (`bfm_sim_front` by default in `jaxface synth`).
    topology: `render.make_topology(model.triangles)`.
    uv_operator: [256 * 256, V] sparse matrix (`uv_operator`): per-vertex values ->
      the model's 256 x 256 UV map (PRNet position maps); identical for every face.
    shape_span: [3V, Ks] orthonormal basis of span(shape_basis) (`appearance.span_basis`).
    mean_normals: [V, 3] unit vertex normals of the mean shape (detail directions).
    eyes: [V, 4] sclera / iris / pupil / lash weights (`appearance.eye_regions`).
    capacity: rasterizer windows of the frames (`sampled_capacities`).
    shadow_capacity: rasterizer windows of the shadow maps.
    config: `scene.SynthConfig`.
  """
  model: morphable.MorphableModel
  topology: render.Topology
  uv_operator: scipy.sparse.csr_matrix
  shape_span: np.ndarray
  mean_normals: np.ndarray
  eyes: np.ndarray
  capacity: render.Capacity
  shadow_capacity: render.Capacity
  config: scene.SynthConfig


def make_generator(model: morphable.MorphableModel, config: scene.SynthConfig) -> Generator:
  """Everything `generate_identity` reuses across identities (model-sized arrays, windows)."""
  triangles = np.asarray(model.triangles)
  raster = render.rasterize_uv(np.asarray(model.uv), triangles, POSITION_MAP_SIZE)
  capacity, shadow_capacity = sampled_capacities(model, config)
  return Generator(model=model, topology=render.make_topology(triangles),
                   uv_operator=uv_operator(raster, model.num_vertices),
                   shape_span=appearance.span_basis(np.asarray(model.shape_basis)),
                   mean_normals=np.asarray(vertex_normals(model.mean, triangles)),
                   eyes=appearance.eye_regions(np.asarray(model.mean), np.asarray(
                       morphable.landmarks_3d(model, model.mean))),
                   capacity=capacity, shadow_capacity=shadow_capacity, config=config)


def uv_operator(raster: render.UVRaster, num_vertices: int) -> scipy.sparse.csr_matrix:
  """[N * N, V] sparse M with M @ values = `uv_raster.interpolate(raster, values)` (flat).

  Row p holds pixel p's barycentric weights on its triangle's three vertices (an
  empty row where no triangle covers it), so one sparse product maps all frames.
  """
  covered = (raster.triangle_id >= 0).reshape(-1)
  pixels = np.repeat(np.flatnonzero(covered), 3)
  columns = raster.triangles[raster.triangle_id.reshape(-1)[covered]].reshape(-1)
  weights = raster.bary.reshape(-1, 3)[covered].reshape(-1)
  return scipy.sparse.csr_matrix((weights, (pixels, columns)),
                                 shape=(covered.size, num_vertices))


def _light_frame(direction: jax.Array) -> jax.Array:
  """[B, 3, 3] rotations Q with Q d = +z for unit directions d [B, 3]."""
  helper = jnp.where(jnp.abs(direction[:, 1:2]) < 0.9, jnp.array([[0.0, 1.0, 0.0]]),
                     jnp.array([[1.0, 0.0, 0.0]]))
  e1 = jnp.cross(helper, direction)
  e1 = e1 / jnp.linalg.norm(e1, axis=-1, keepdims=True)
  e2 = jnp.cross(direction, e1)
  return jnp.stack([e1, e2, direction], axis=-2)


def _shadow_map_projection(posed: jax.Array, direction: jax.Array):
  """The shadow map's orthographic view along the light: fits the mesh in the map.

  Args:
    posed: [B, V, 3] vertices in the camera-aligned frame, mm.
    direction: [B, 3] unit direction towards the light.
  Returns:
    (to_map, xy [B, V, 2], depth [B, V]): to_map maps [B, N, 3] camera-aligned points
    to ([B, N, 2] map pixels, y down; [B, N] depth along the light, mm); xy, depth
    are the vertices' (what the shadow map rasterizes).
  """
  q_frame = _light_frame(direction)
  q = jnp.einsum("bij,bvj->bvi", q_frame, posed)
  centre = jnp.mean(q[..., :2], axis=1, keepdims=True)
  extent = jnp.max(jnp.abs(q[..., :2] - centre), axis=(1, 2))[:, None, None] * 1.05
  half = SHADOW_MAP_SIZE / 2

  def to_map(points):
    p = jnp.einsum("bij,bnj->bni", q_frame, points)
    rel = (p[..., :2] - centre) / extent * half
    return jnp.stack([half + rel[..., 0], half - rel[..., 1]], -1), -p[..., 2]

  return (to_map, *to_map(posed))


def _shadow(posed: jax.Array, pixel_positions: jax.Array, pixel_normals: jax.Array,
            direction: jax.Array, triangles: jax.Array, capacity: render.Capacity | None = None
            ) -> tuple[jax.Array, jax.Array]:
  """Fraction of the key light reaching each pixel (1 = lit), by shadow mapping.

  Args:
    posed: [B, V, 3] vertices in the camera-aligned frame, mm.
    pixel_positions: [B, H, W, 3] surface points seen at each pixel, same frame.
    pixel_normals: [B, H, W, 3] their (interpolated) normals.
    direction: [B, 3] unit direction towards the light.
    capacity: the shadow map's rasterizer windows (default: `render.default_capacity`).
  Returns:
    (lit [B, H, W], overflow [B] triangles missing from the shadow map).
  """
  to_map, map_xy, map_depth = _shadow_map_projection(posed, direction)
  fragments = render.rasterize(map_xy, map_depth, triangles,
                               image_size=(SHADOW_MAP_SIZE, SHADOW_MAP_SIZE), capacity=capacity,
                               perspective=False, on_overflow="ignore")
  b, h, w = pixel_positions.shape[:3]
  lookup = pixel_positions + SHADOW_NORMAL_OFFSET_MM * pixel_normals / jnp.maximum(
      jnp.linalg.norm(pixel_normals, axis=-1, keepdims=True), 1e-6)
  xy, pixel_depth = to_map(lookup.reshape(b, -1, 3))
  lit = 0.0
  # 2x2 percentage-closer filtering: soft shadow edges instead of map-pixel stairs.
  for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)):
    col = jnp.clip(jnp.floor(xy[..., 0] + dx), 0, SHADOW_MAP_SIZE - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(xy[..., 1] + dy), 0, SHADOW_MAP_SIZE - 1).astype(jnp.int32)
    occluder_depth = jax.vmap(lambda d, r, c: d[r, c])(fragments.depth, row, col)
    covered = jax.vmap(lambda m, r, c: m[r, c])(fragments.mask, row, col) > 0
    lit = lit + jnp.where(covered & (pixel_depth > occluder_depth + SHADOW_BIAS_MM), 0.0, 0.25)
  return lit.reshape(b, h, w), fragments.overflow


def _camera(rotation, translation, focal, image_size: int) -> render.Camera:
  """The synthetic frames' perspective camera (`scene` convention), S x S pixels."""
  return render.perspective_camera(render.euler_to_matrix(rotation), translation, focal=focal,
                                   distance=scene.CAMERA_DISTANCE_MM,
                                   image_size=(image_size, image_size))


def _unit_key_direction(key_light: jax.Array) -> jax.Array:
  """[F, 3] unit key-light directions; +z for frames without a key light."""
  norm = jnp.linalg.norm(key_light[:, :3], axis=-1, keepdims=True)
  return jnp.where(norm > 0, key_light[:, :3] / jnp.maximum(norm, 1e-6),
                   jnp.array([[0.0, 0.0, 1.0]]))


@functools.partial(jax.jit, static_argnames=("image_size", "capacity", "shadow_capacity",
                                             "silhouette_pairs"))
def render_frames(vertices, topology, albedo, rotation, translation, focal, light, key_light,
                  background, *, image_size, capacity=None, shadow_capacity=None,
                  silhouette_pairs=None):
  """Renders F frames of one face, one after the other (one compiled program).

  Frames are rendered in a loop rather than batched: on CPU a frame at a time is
  faster, and only frames with a key light pay for its shadow map.

  Args:
    vertices: [F, V, 3] model-frame vertices, mm. albedo: [V, 3].
    rotation: [F, 3] Euler radians. translation: [F, 3] mm. focal: [F] pixels.
    light: [F, 9, 3] SH. key_light: [F, 7] direction (3), colour (3), specular (1);
      frames without a key light (all zero) get no highlight and no shadow map.
    background: [F, S, S, 3].
    image_size: S.
    capacity, shadow_capacity: rasterizer windows of the frames and the shadow maps
      (static; default `render.default_capacity`).
    silhouette_pairs: antialias only this many silhouette pixel pairs per direction
      (`render.antialias_silhouettes`, static), or None for every pair
      (`render.antialias`); the same image when nothing overflows.
  Returns:
    image [F, S, S, 3] (not clipped), mask [F, S, S] (hard coverage: 1 on the face),
    xy [F, V, 2] projected vertices (pixels), depth [F, V] mm, overflow [F] triangles
    the windows could not draw (frame and shadow map) plus silhouette pairs left
    hard (0 = exact).
  """
  triangles = topology.triangles

  def one(frame):  # the frame's arrays with a batch dimension of 1
    vertices, rotation, translation, focal, light, key_light, background = (
        a[None] for a in frame)
    camera = _camera(rotation, translation, focal, image_size)
    xy, depth = render.project(camera, vertices)
    fragments = render.rasterize(xy, depth, triangles, image_size=camera.image_size,
                                 capacity=capacity, on_overflow="ignore")
    posed = render.rigid_transform(vertices, camera.rotation, camera.translation)
    normals = vertex_normals(posed, triangles)
    # One gather for the three attributes (the gathers dominate on CPU).
    attributes = jnp.concatenate([normals, posed, jnp.broadcast_to(albedo, posed.shape)], -1)
    pixels = render.interpolate(fragments, triangles, attributes)
    pixel_normals, pixel_positions, pixel_albedo = jnp.split(pixels, 3, axis=-1)
    colour = render.shade_sh(pixel_albedo, pixel_normals, light)
    direction = _unit_key_direction(key_light)
    eye = jnp.stack([jnp.zeros_like(focal), jnp.zeros_like(focal),
                     jnp.full_like(focal, scene.CAMERA_DISTANCE_MM)], -1)
    keyed = render.shade_phong(pixel_albedo, pixel_normals, pixel_positions,
                               light_direction=direction, light_colour=key_light[:, 3:6],
                               ambient=jnp.zeros_like(key_light[:, 3:6]),
                               specular=key_light[:, 6], shininess=16.0, eye=eye)
    lit, shadow_overflow = jax.lax.cond(
        jnp.any(key_light != 0),
        lambda: _shadow(posed, pixel_positions, pixel_normals, direction, triangles,
                        shadow_capacity),
        lambda: (jnp.ones(pixel_positions.shape[:3]), jnp.zeros((1,), jnp.int32)))
    colour = colour + keyed * lit[..., None]
    mask = fragments.mask
    image = colour * mask[..., None] + background * (1 - mask[..., None])
    overflow = fragments.overflow + shadow_overflow
    if silhouette_pairs is None:
      image = render.antialias(image, fragments, xy, topology)
    else:
      image, hard = render.antialias_silhouettes(image, fragments, xy, topology, silhouette_pairs)
      overflow = overflow + hard
    return image[0], mask[0], xy[0], depth[0], overflow[0]

  return jax.lax.map(one, (vertices, rotation, translation, focal, light, key_light, background))


def _window_counts(xy: jax.Array, depth: jax.Array, triangles: jax.Array, image_size: int,
                   perspective: bool) -> jax.Array:
  """[len(CAPACITY_WINDOWS)] most triangles `render.rasterize` draws in each window class.

  A front-facing triangle whose box of pixel centres has side s (in any of the B
  images) belongs to the smallest window >= s, as in `rasterize.visibility`.

  Args:
    xy: [B, V, 2] pixels; depth: [B, V]; triangles: [F, 3]; image_size: S.
  """
  a, b, c = (xy[:, triangles[:, i]] for i in range(3))
  corners = jnp.stack([a, b, c], axis=2)  # [B, F, 3, 2]
  low = jnp.maximum(jnp.ceil(corners.min(axis=2) - 0.5), 0)
  high = jnp.minimum(jnp.floor(corners.max(axis=2) - 0.5), image_size - 1)
  side = jnp.max(high - low + 1, axis=-1)
  drawn = (edge_function(a, b, c) < -1e-9) & (side > 0)
  if perspective:
    drawn &= jnp.all(depth[:, triangles] > 0, axis=-1)
  smaller = (0,) + CAPACITY_WINDOWS[:-1]
  return jnp.stack([jnp.max(jnp.sum(drawn & (side > lo) & (side <= hi), axis=1))
                    for lo, hi in zip(smaller, CAPACITY_WINDOWS)])


@functools.partial(jax.jit, static_argnames=("image_size",))
def _sample_window_counts(vertices, triangles, rotation, translation, focal, key_light, *,
                          image_size):
  """`_window_counts` of F frames as `render_frames` rasterizes them: (frames, shadow maps)."""
  camera = _camera(rotation, translation, focal, image_size)
  posed = render.rigid_transform(vertices, camera.rotation, camera.translation)
  _, map_xy, map_depth = _shadow_map_projection(posed, _unit_key_direction(key_light))
  return (_window_counts(*render.project(camera, vertices), triangles, image_size, True),
          _window_counts(map_xy, map_depth, triangles, SHADOW_MAP_SIZE, False))


def sampled_capacities(model: morphable.MorphableModel, config: scene.SynthConfig
                       ) -> tuple[render.Capacity, render.Capacity]:
  """Rasterizer windows for `render_frames`, sized on CAPACITY_SAMPLES random frames.

  The default windows (`render.default_capacity`) test every triangle's 2 x 2 pixel
  box and a 5 x 5 box for an eighth of them; the synthetic frames (a face of known
  size) draw most triangles in a 1 x 1 box. Each window class of CAPACITY_WINDOWS
  holds CAPACITY_MARGIN x the most triangles it drew in the samples (at least
  CAPACITY_MINIMUM), about half the default's work; the rare frame that overflows
  is re-rendered with the default windows (`generate_identity`), so images are exact.

  Returns:
    (capacity of the S x S frames, capacity of the shadow maps).
  """
  rng = np.random.default_rng(12345)  # independent of the dataset's seeds
  frames = scene.sample_frames(rng, dataclasses.replace(config, frames=CAPACITY_SAMPLES,
                                                        key_light_probability=1.0),
                               model.num_expression, appearance.sample_occluder,
                               appearance.sample_background)
  stack = lambda name: np.stack([getattr(f, name) for f in frames])
  shape = rng.normal(0.0, 1.0, (CAPACITY_SAMPLES, model.num_shape)).astype(np.float32)
  vertices = _posed_mesh(model, shape, stack("expression"),
                         np.zeros((model.num_vertices, 3), np.float32))
  counts = _sample_window_counts(
      vertices, jnp.asarray(model.triangles), stack("rotation"), stack("translation"),
      np.array([f.focal for f in frames], np.float32), stack("key_light"),
      image_size=config.image_size)
  num_triangles = model.triangles.shape[0]
  sized = lambda count: render.Capacity(tiers=tuple(
      (window, int(min(n, num_triangles))) for window, n in zip(
          CAPACITY_WINDOWS, np.maximum(np.ceil(np.asarray(count) * CAPACITY_MARGIN),
                                       CAPACITY_MINIMUM))))
  return sized(counts[0]), sized(counts[1])


def position_maps(operator: scipy.sparse.csr_matrix, xy: np.ndarray, depth: np.ndarray,
                  translation: np.ndarray, focal: np.ndarray) -> np.ndarray:
  """[F, 256, 256, 3] UV position maps (PRNet): x, y pixels; z = pixel-scaled nearness.

  Args:
    operator: the model's `uv_operator`. xy: [F, V, 2] projected vertices, pixels.
    depth: [F, V] camera depth, mm. translation: [F, 3] mm. focal: [F] pixels.
  """
  reference = scene.CAMERA_DISTANCE_MM - translation[:, 2:3]  # depth of the model origin
  # Depth in the same pixel scale as x, y (PRNet's weak-perspective z), larger = nearer.
  z = (reference - depth) * focal[:, None] / reference
  values = np.concatenate([xy, z[..., None]], -1)  # [F, V, 3]
  frames, size = len(values), POSITION_MAP_SIZE
  maps = operator @ values.transpose(1, 0, 2).reshape(values.shape[1], -1)  # [N * N, F * 3]
  return maps.reshape(size, size, frames, 3).transpose(2, 0, 1, 3).astype(np.float32)


@jax.jit
def _posed_mesh(model, shape, expression, detail):
  """[F, V, 3] vertices: identity + expression + detail (one dispatch, not dozens)."""
  return morphable.decode(model, shape, expression) + detail


@functools.partial(jax.jit, static_argnames=("image_size",))
def _landmarks_2d(model, vertices, rotation, translation, focal, *, image_size):
  """[F, 68, 2] projected landmarks of `render_frames`' camera."""
  camera = _camera(rotation, translation, focal, image_size)
  return render.project(camera, morphable.landmarks_3d(model, vertices))[0]


def generate_identity(generator: Generator, seed: int, identity: int) -> dict:
  """One identity's record: F frames with ground truth (numpy).

  `finish_identity(start_identity(...))`; generating many, start the next identity
  before finishing this one (`generate_identities`) so that rendering overlaps the
  host-side work.

  Args:
    generator: `make_generator(model, config)`.
    seed: dataset seed. identity: global identity index (the record depends only on
      (seed, identity)).
  Returns:
    dict: image [F, S, S, 3] uint8; mask [F, S, S] uint8 (255 = face surface, before
    occluders); occlusion [F, S, S] uint8 (255 = occluder); landmarks [F, 68, 2] pixels;
    position_map [F, 256, 256, 3] float32; shape [Ks]; expression [F, Ke]; albedo [Ka];
    rotation [F, 3] rad; translation [F, 3] mm; focal [F] px; light [F, 9, 3];
    key_light [F, 7]; detail [V, 3] float16 mm; tags list of F strings; identity int.
  """
  return finish_identity(generator, start_identity(generator, seed, identity))


def generate_identities(generator: Generator, seed: int, identities):
  """Yields `generate_identity` records of `identities` in order, one rendered ahead.

  JAX dispatches the renderer asynchronously: while identity i+1 renders, identity i
  is finished here and handed to the caller (encoding, writing), so the two overlap
  on a multi-core CPU. The records equal `generate_identity`'s.
  """
  pending = None
  for identity in identities:
    started = start_identity(generator, seed, identity)
    if pending is not None:
      yield finish_identity(generator, pending)
    pending = started
  if pending is not None:
    yield finish_identity(generator, pending)


def start_identity(generator: Generator, seed: int, identity: int) -> dict:
  """Samples an identity's scene (numpy) and dispatches its rendering (asynchronous).

  Returns:
    What `finish_identity` needs: the sampled coefficients, frames and per-frame
    camera/light arrays (numpy, as stored), the renderer's inputs, and its and the
    landmarks' (possibly still computing) outputs.
  """
  model, config = generator.model, generator.config
  rng = scene.identity_rng(seed, identity)
  size = config.image_size
  shape = rng.normal(0.0, 1.0, model.num_shape).astype(np.float32)
  albedo_coefficients = (0.7 * rng.normal(0.0, 1.0, model.num_albedo)).astype(np.float32)
  mean = np.asarray(model.mean)
  detail = appearance.out_of_span_detail(rng, mean, generator.mean_normals,
                                         generator.shape_span, config.detail_mm)
  detail = detail.astype(np.float16)  # stored as float16: render exactly what is stored
  base_albedo = np.asarray(morphable.albedo(model, albedo_coefficients))
  vertex_albedo = appearance.skin_albedo(rng, base_albedo, mean, generator.eyes)
  frames = scene.sample_frames(rng, config, model.num_expression, appearance.sample_occluder,
                               appearance.sample_background)
  stack = lambda name: np.stack([getattr(f, name) for f in frames])
  cameras = {"expression": stack("expression"), "rotation": stack("rotation"),
             "translation": stack("translation"),
             "focal": np.array([f.focal for f in frames], np.float32),
             "light": stack("light"), "key_light": stack("key_light")}
  backgrounds = np.stack([appearance.background(f.background, size) for f in frames])
  vertices = _posed_mesh(model, shape, cameras["expression"], detail.astype(np.float32))
  scene_arrays = [jnp.asarray(a) for a in (
      vertex_albedo, cameras["rotation"], cameras["translation"], cameras["focal"],
      cameras["light"], cameras["key_light"], backgrounds)]
  rendered = render_frames(vertices, generator.topology, *scene_arrays, image_size=size,
                           capacity=generator.capacity, shadow_capacity=generator.shadow_capacity,
                           silhouette_pairs=SILHOUETTE_PAIRS_PER_SIDE * size)
  landmarks = _landmarks_2d(model, vertices, cameras["rotation"], cameras["translation"],
                            cameras["focal"], image_size=size)
  return {"identity": int(identity), "shape": shape, "albedo": albedo_coefficients,
          "detail": detail, "skin": vertex_albedo.mean(axis=0), "frames": frames,
          "cameras": cameras, "vertices": vertices, "scene_arrays": scene_arrays,
          "rendered": rendered, "landmarks": landmarks}


def finish_identity(generator: Generator, started: dict) -> dict:
  """Waits for `start_identity`'s rendering and assembles the record (numpy)."""
  size, frames = generator.config.image_size, started["frames"]
  image, mask, xy, depth, overflow = started["rendered"]
  if np.any(np.asarray(overflow)):  # rare: the sampled windows were too small
    image, mask, xy, depth, _ = render_frames(started["vertices"], generator.topology,
                                              *started["scene_arrays"], image_size=size)
  landmarks = np.asarray(started["landmarks"], np.float32)
  cameras = started["cameras"]
  translation, focal = cameras["translation"], cameras["focal"]
  position_map = position_maps(generator.uv_operator, np.asarray(xy), np.asarray(depth),
                               translation, focal)
  image = np.array(image)
  occlusion = np.zeros((len(frames), size, size), np.uint8)
  for t, frame in enumerate(frames):
    if frame.occluder is not None:
      colour, coverage = appearance.draw_occluder(frame.occluder, landmarks[t], size,
                                                  started["skin"])
      image[t] = image[t] * (1 - coverage[..., None]) + colour * coverage[..., None]
      occlusion[t] = np.where(coverage > 0.5, 255, 0)
  return {
      "identity": started["identity"],
      "image": np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
      "mask": (np.asarray(mask) > 0.5).astype(np.uint8) * 255,
      "occlusion": occlusion,
      "landmarks": landmarks,
      "position_map": position_map,
      "shape": started["shape"], "albedo": started["albedo"],
      **{name: cameras[name].astype(np.float32) for name in (
          "expression", "rotation", "translation", "focal", "light", "key_light")},
      "detail": started["detail"],
      "tags": [",".join(f.tags) for f in frames],
  }


def neutral_vertices(model: morphable.MorphableModel, shape: np.ndarray,
                     detail: np.ndarray) -> np.ndarray:
  """[V, 3] ground-truth neutral mesh (identity + out-of-span detail, no expression), mm."""
  zero = jnp.zeros(model.num_expression)
  return np.asarray(morphable.decode(model, jnp.asarray(shape), zero)) + np.asarray(detail, np.float32)
