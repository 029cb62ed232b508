"""Texture maps unwrapped from a photo where the fitted face is visible, albedo elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import render

_rasterize = jax.jit(render.rasterize, static_argnames=(
    "image_size", "capacity", "cull_backfaces", "perspective", "on_overflow"))


def bilinear_sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Samples an [H, W, C] image at [N, 2] pixel coordinates (centres at +0.5), clamped."""
  height, width = image.shape[:2]
  x = np.clip(xy[:, 0] - 0.5, 0, width - 1)
  y = np.clip(xy[:, 1] - 0.5, 0, height - 1)
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def vertex_visibility(xy: np.ndarray, depth: np.ndarray, rendered_depth: np.ndarray,
                      normals_camera: np.ndarray, *, tolerance_mm: float = 2.0,
                      min_facing: float = 0.2) -> np.ndarray:
  """[V] weight in [0, 1]: the vertex is unoccluded and faces the camera.

  Args:
    xy: [V, 2] projected pixels; depth: [V] camera depth (mm).
    rendered_depth: [H, W] depth map of the same render (0 = background).
    normals_camera: [V, 3] unit normals in the camera-aligned frame (+z to camera).
  """
  height, width = rendered_depth.shape
  col = np.clip(xy[:, 0].astype(int), 0, width - 1)
  row = np.clip(xy[:, 1].astype(int), 0, height - 1)
  seen = rendered_depth[row, col]
  inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
  unoccluded = inside & (seen > 0) & (depth <= seen + tolerance_mm)
  facing = np.clip((normals_camera[:, 2] - min_facing) / (1.0 - min_facing), 0.0, 1.0)
  return np.where(unoccluded, facing, 0.0)


def unwrap_texture(uv: np.ndarray, triangles: np.ndarray, photo: np.ndarray,
                   photo_xy: np.ndarray, visibility: np.ndarray, albedo: np.ndarray, *,
                   size: int = 512) -> np.ndarray:
  """Bakes a UV texture: photo colours where visible, blended into albedo elsewhere.

  Args:
    uv: [V, 2] in [0, 1] (v up); triangles: [F, 3].
    photo: [H, W, 3] in [0, 1]; photo_xy: [V, 2] vertex positions in the photo (pixels).
    visibility: [V] weights from `vertex_visibility`; albedo: [V, 3].
    size: texture side in pixels.
  Returns:
    [size, size, 3] texture; texels outside every triangle hold the mean albedo.
  """
  uv = np.asarray(uv, np.float32)
  screen = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], -1)[None]
  fragments = _rasterize(jnp.asarray(screen), jnp.ones((1, uv.shape[0])),
                               jnp.asarray(triangles, jnp.int32), image_size=(size, size),
                               capacity=render.capacity_for(screen, triangles, (size, size)),
                               cull_backfaces=False, perspective=False, on_overflow="raise")
  attributes = np.concatenate([photo_xy, visibility[:, None], albedo], -1).astype(np.float32)
  texel = np.asarray(jax.jit(render.interpolate)(fragments, jnp.asarray(triangles, jnp.int32),
                                                 jnp.asarray(attributes)))[0]
  covered = np.asarray(fragments.triangle_id[0]) >= 0
  flat = texel.reshape(-1, attributes.shape[1])
  colours = bilinear_sample(photo, flat[:, :2])
  weight = flat[:, 2:3]
  baked = (weight * colours + (1 - weight) * flat[:, 3:6]).reshape(size, size, 3)
  return np.where(covered[..., None], baked, np.asarray(albedo).mean(0))
