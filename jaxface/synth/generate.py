"""Synthetic faces with exact ground truth: one identity, F frames -> numpy arrays.

`generate_identity` returns the record that `data_pipelines.features.encode_example`
writes (and `jaxface synth` stores): images, face masks, occluder masks, 68 landmarks,
UV position maps and every parameter needed to re-render the frame. Rendering uses
`jaxface.render` (jitted once per image size and frame count): SH light plus, on some
frames, a directional key light with shadow-mapped cast shadows and Phong highlights.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import morphable
from jaxface import render
from jaxface.geometry import vertex_normals
from jaxface.render import uv_raster
from jaxface.synth import appearance
from jaxface.synth import scene

POSITION_MAP_SIZE = 256
SHADOW_MAP_SIZE = 128
SHADOW_BIAS_MM = 2.0


@dataclasses.dataclass(frozen=True)
class Generator:
  """What `generate_identity` needs besides the seed: the model and cached topology.

  Attributes:
    model: the face model (`bfm_sim_front` by default in `jaxface synth`).
    topology: `render.make_topology(model.triangles)`.
    uv_raster: the model's triangles rasterized in its 256 x 256 UV map (PRNet
      position maps); identical for every face, so computed once.
    shape_span: [3V, Ks] orthonormal basis of span(shape_basis) (`appearance.span_basis`).
    config: `scene.SynthConfig`.
  """
  model: morphable.MorphableModel
  topology: render.Topology
  uv_raster: render.UVRaster
  shape_span: np.ndarray
  config: scene.SynthConfig


def make_generator(model: morphable.MorphableModel, config: scene.SynthConfig) -> Generator:
  return Generator(model=model, topology=render.make_topology(model.triangles),
                   uv_raster=render.rasterize_uv(np.asarray(model.uv), np.asarray(model.triangles),
                                                 POSITION_MAP_SIZE),
                   shape_span=appearance.span_basis(np.asarray(model.shape_basis)), config=config)


def _light_frame(direction: jax.Array) -> jax.Array:
  """[B, 3, 3] rotations Q with Q d = +z for unit directions d [B, 3]."""
  helper = jnp.where(jnp.abs(direction[:, 1:2]) < 0.9, jnp.array([[0.0, 1.0, 0.0]]),
                     jnp.array([[1.0, 0.0, 0.0]]))
  e1 = jnp.cross(helper, direction)
  e1 = e1 / jnp.linalg.norm(e1, axis=-1, keepdims=True)
  e2 = jnp.cross(direction, e1)
  return jnp.stack([e1, e2, direction], axis=-2)


def _shadow(posed: jax.Array, pixel_positions: jax.Array, direction: jax.Array,
            triangles: jax.Array) -> jax.Array:
  """[B, H, W] fraction of the key light reaching each pixel (1 = lit), by shadow mapping.

  Args:
    posed: [B, V, 3] vertices in the camera-aligned frame, mm.
    pixel_positions: [B, H, W, 3] surface points seen at each pixel, same frame.
    direction: [B, 3] unit direction towards the light.
  """
  q_frame = _light_frame(direction)
  q = jnp.einsum("bij,bvj->bvi", q_frame, posed)
  centre = jnp.mean(q[..., :2], axis=1, keepdims=True)
  extent = jnp.max(jnp.abs(q[..., :2] - centre), axis=(1, 2))[:, None, None] * 1.05
  half = SHADOW_MAP_SIZE / 2

  def to_map(points):  # [B, N, 3] light-frame points -> map pixels, y down
    rel = (points[..., :2] - centre) / extent * half
    return jnp.stack([half + rel[..., 0], half - rel[..., 1]], -1)

  fragments = render.rasterize(to_map(q), -q[..., 2], triangles,
                               image_size=(SHADOW_MAP_SIZE, SHADOW_MAP_SIZE),
                               perspective=False, on_overflow="ignore")
  b, h, w = pixel_positions.shape[:3]
  p = jnp.einsum("bij,bnj->bni", q_frame, pixel_positions.reshape(b, -1, 3))
  xy = to_map(p)
  lit = 0.0
  # 2x2 percentage-closer filtering: soft shadow edges instead of map-pixel stairs.
  for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)):
    col = jnp.clip(jnp.floor(xy[..., 0] + dx), 0, SHADOW_MAP_SIZE - 1).astype(jnp.int32)
    row = jnp.clip(jnp.floor(xy[..., 1] + dy), 0, SHADOW_MAP_SIZE - 1).astype(jnp.int32)
    occluder_depth = jax.vmap(lambda d, r, c: d[r, c])(fragments.depth, row, col)
    covered = jax.vmap(lambda m, r, c: m[r, c])(fragments.mask, row, col) > 0
    lit = lit + jnp.where(covered & (-p[..., 2] > occluder_depth + SHADOW_BIAS_MM), 0.0, 0.25)
  return lit.reshape(b, h, w)


@functools.partial(jax.jit, static_argnames=("image_size", "shadows"))
def render_frames(vertices, topology, albedo, rotation, translation, focal, light, key_light,
                  background, *, image_size, shadows=True):
  """Renders F frames of one face.

  Args:
    vertices: [F, V, 3] model-frame vertices, mm. albedo: [V, 3].
    rotation: [F, 3] Euler radians. translation: [F, 3] mm. focal: [F] pixels.
    light: [F, 9, 3] SH. key_light: [F, 7] direction (3), colour (3), specular (1).
    background: [F, S, S, 3].
    image_size: S.
    shadows: shadow-map the key light (False: frames without a key light, cheaper).
  Returns:
    image [F, S, S, 3] (not clipped), mask [F, S, S] (hard coverage: 1 on the face),
    xy [F, V, 2] projected vertices (pixels), depth [F, V] mm.
  """
  triangles = topology.triangles
  camera = render.perspective_camera(render.euler_to_matrix(rotation), translation, focal=focal,
                                     distance=scene.CAMERA_DISTANCE_MM,
                                     image_size=(image_size, image_size))
  xy, depth = render.project(camera, vertices)
  fragments = render.rasterize(xy, depth, triangles, image_size=camera.image_size,
                               on_overflow="ignore")
  posed = render.rigid_transform(vertices, camera.rotation, camera.translation)
  normals = vertex_normals(posed, triangles)
  # One gather for the three attributes (the gathers dominate on CPU).
  attributes = jnp.concatenate([normals, posed, jnp.broadcast_to(albedo, posed.shape)], -1)
  pixels = render.interpolate(fragments, triangles, attributes)
  pixel_normals, pixel_positions, pixel_albedo = jnp.split(pixels, 3, axis=-1)
  colour = render.shade_sh(pixel_albedo, pixel_normals, light)
  direction = key_light[:, :3] / jnp.maximum(
      jnp.linalg.norm(key_light[:, :3], axis=-1, keepdims=True), 1e-6)
  direction = jnp.where(jnp.linalg.norm(key_light[:, :3], axis=-1, keepdims=True) > 0,
                        direction, jnp.array([[0.0, 0.0, 1.0]]))
  eye = jnp.stack([jnp.zeros_like(focal), jnp.zeros_like(focal),
                   jnp.full_like(focal, scene.CAMERA_DISTANCE_MM)], -1)
  keyed = render.shade_phong(pixel_albedo, pixel_normals, pixel_positions,
                             light_direction=direction, light_colour=key_light[:, 3:6],
                             ambient=jnp.zeros_like(key_light[:, 3:6]),
                             specular=key_light[:, 6], shininess=16.0, eye=eye)
  if shadows:
    keyed = keyed * _shadow(posed, pixel_positions, direction, triangles)[..., None]
  colour = colour + keyed
  mask = fragments.mask
  image = colour * mask[..., None] + background * (1 - mask[..., None])
  image = render.antialias(image, fragments, xy, topology)
  return image, mask, xy, depth


def position_maps(raster: render.UVRaster, xy: np.ndarray, depth: np.ndarray,
                  translation: np.ndarray, focal: np.ndarray) -> np.ndarray:
  """[F, 256, 256, 3] UV position maps (PRNet): x, y pixels; z = pixel-scaled nearness.

  Args:
    raster: the model's `UVRaster`. xy: [F, V, 2] projected vertices, pixels.
    depth: [F, V] camera depth, mm. translation: [F, 3] mm. focal: [F] pixels.
  """
  reference = scene.CAMERA_DISTANCE_MM - translation[:, 2:3]  # depth of the model origin
  # Depth in the same pixel scale as x, y (PRNet's weak-perspective z), larger = nearer.
  z = (reference - depth) * focal[:, None] / reference
  values = np.concatenate([xy, z[..., None]], -1)
  return np.stack([uv_raster.interpolate(raster, v) for v in values])


@jax.jit
def _posed_mesh(model, shape, expression, detail):
  """[F, V, 3] vertices: identity + expression + detail (one dispatch, not dozens)."""
  return morphable.decode(model, shape, expression) + detail


@functools.partial(jax.jit, static_argnames=("image_size",))
def _landmarks_2d(model, vertices, rotation, translation, focal, *, image_size):
  """[F, 68, 2] projected landmarks of `render_frames`' camera."""
  camera = render.perspective_camera(render.euler_to_matrix(rotation), translation, focal=focal,
                                     distance=scene.CAMERA_DISTANCE_MM,
                                     image_size=(image_size, image_size))
  return render.project(camera, morphable.landmarks_3d(model, vertices))[0]


def generate_identity(generator: Generator, seed: int, identity: int) -> dict:
  """One identity's record: F frames with ground truth (numpy).

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
  model, config = generator.model, generator.config
  rng = scene.identity_rng(seed, identity)
  size = config.image_size
  shape = rng.normal(0.0, 1.0, model.num_shape).astype(np.float32)
  albedo_coefficients = (0.7 * rng.normal(0.0, 1.0, model.num_albedo)).astype(np.float32)
  mean = np.asarray(model.mean)
  detail = appearance.out_of_span_detail(rng, mean, np.asarray(model.triangles),
                                         generator.shape_span, config.detail_mm)
  detail = detail.astype(np.float16)  # stored as float16: render exactly what is stored
  base_albedo = np.asarray(morphable.albedo(model, albedo_coefficients))
  vertex_albedo = appearance.skin_albedo(rng, base_albedo, mean)
  frames = scene.sample_frames(rng, config, model.num_expression, appearance.sample_occluder,
                               appearance.sample_background)
  stack = lambda name: np.stack([getattr(f, name) for f in frames])
  expression, rotation, translation = stack("expression"), stack("rotation"), stack("translation")
  focal = np.array([f.focal for f in frames], np.float32)
  light, key_light = stack("light"), stack("key_light")
  backgrounds = np.stack([appearance.background(f.background, size) for f in frames])
  vertices = _posed_mesh(model, shape, expression, detail.astype(np.float32))
  # One frame per call, two compiled variants: only key-lit frames pay for shadows.
  rendered = [render_frames(
      vertices[t:t + 1], generator.topology, jnp.asarray(vertex_albedo),
      *(jnp.asarray(a[t:t + 1]) for a in (rotation, translation, focal, light, key_light,
                                          backgrounds)),
      image_size=size, shadows=bool(np.any(key_light[t] != 0))) for t in range(len(frames))]
  image, mask, xy, depth = (jnp.concatenate(parts) for parts in zip(*rendered))
  landmarks = np.asarray(_landmarks_2d(model, vertices, rotation, translation, focal,
                                       image_size=size), np.float32)
  position_map = position_maps(generator.uv_raster, np.asarray(xy), np.asarray(depth),
                               translation, focal)
  image = np.array(image)
  occlusion = np.zeros((len(frames), size, size), np.uint8)
  skin = vertex_albedo.mean(axis=0)
  for t, frame in enumerate(frames):
    if frame.occluder is not None:
      colour, coverage = appearance.draw_occluder(frame.occluder, landmarks[t], size, skin)
      image[t] = image[t] * (1 - coverage[..., None]) + colour * coverage[..., None]
      occlusion[t] = np.where(coverage > 0.5, 255, 0)
  return {
      "identity": int(identity),
      "image": np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
      "mask": (np.asarray(mask) > 0.5).astype(np.uint8) * 255,
      "occlusion": occlusion,
      "landmarks": landmarks,
      "position_map": position_map,
      "shape": shape, "expression": expression.astype(np.float32),
      "albedo": albedo_coefficients, "rotation": rotation.astype(np.float32),
      "translation": translation.astype(np.float32), "focal": focal,
      "light": light.astype(np.float32), "key_light": key_light.astype(np.float32),
      "detail": detail,
      "tags": [",".join(f.tags) for f in frames],
  }


def neutral_vertices(model: morphable.MorphableModel, shape: np.ndarray,
                     detail: np.ndarray) -> np.ndarray:
  """[V, 3] ground-truth neutral mesh (identity + out-of-span detail, no expression), mm."""
  zero = jnp.zeros(model.num_expression)
  return np.asarray(morphable.decode(model, jnp.asarray(shape), zero)) + np.asarray(detail, np.float32)
