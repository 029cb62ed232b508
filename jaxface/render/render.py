"""`render`: mesh + camera + light (+ albedo or texture) -> image, mask, depth, Fragments.

Stages (PyTorch3D-like): `camera.project` -> `rasterize` (Fragments) -> `interpolate`
-> shading (`shade_sh` or `shade_phong`) -> composite over the background ->
`antialias` (silhouette gradients). Pure and batched; works under jit, vmap, grad,
shard_map and pmap.
"""

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp

from jaxface.geometry import vertex_normals
from jaxface.render import camera as camera_lib
from jaxface.render import shading
from jaxface.render.antialias import Topology, antialias
from jaxface.render.interpolate import interpolate, sample_texture
from jaxface.render.rasterize import Capacity, Fragments, rasterize


@flax.struct.dataclass
class PhongLight:
  """A directional light for `shade_phong`; all [B, 3] except `specular` [B]."""
  direction: jax.Array
  colour: jax.Array
  ambient: jax.Array
  specular: jax.Array
  shininess: float = flax.struct.field(pytree_node=False, default=20.0)


@flax.struct.dataclass
class RenderOutput:
  """What `render` returns.

  Attributes:
    image: [B, H, W, 3] shaded, composited, antialiased colours.
    mask: [B, H, W] coverage in [0, 1] (antialiased: has silhouette gradients).
    depth: [B, H, W] camera depth of the visible surface, 0 off the mesh.
    fragments: the rasterizer's `Fragments`.
  """
  image: jax.Array
  mask: jax.Array
  depth: jax.Array
  fragments: Fragments


def render(vertices: jax.Array, topology: Topology, camera: camera_lib.Camera, *,
           albedo: Optional[jax.Array] = None, texture: Optional[jax.Array] = None,
           uv: Optional[jax.Array] = None, light=None, background: Optional[jax.Array] = None,
           edge_antialias: bool = True, cull_backfaces: bool = True,
           capacity: Optional[Capacity] = None, on_overflow: str = "warn") -> RenderOutput:
  """Renders a batch of meshes sharing one topology.

  Args:
    vertices: [B, V, 3] model-frame vertices, mm (posed by `camera.rotation`).
    topology: `make_topology(triangles)`.
    camera: a batch of B cameras.
    albedo: [B, V, 3] (or [V, 3]) per-vertex reflectance; or
    texture: [B, Ht, Wt, 3] (or [Ht, Wt, 3]) with `uv` [V, 2] per-vertex coordinates.
    light: [B, 9, 3] SH coefficients (Lambertian SH shading), a `PhongLight`, or None
      (unlit: the albedo itself).
    background: [B, H, W, 3] composited behind the face; default black.
    edge_antialias: apply `antialias` to image and mask (silhouette gradients).
    cull_backfaces: draw only triangles facing the camera.
    capacity: rasterizer window sizes; default from the mesh and image size.
    on_overflow: "warn", "raise" or "ignore" when triangles were not drawn.
  Returns:
    `RenderOutput`.
  """
  triangles = topology.triangles
  xy, depth = camera_lib.project(camera, vertices)
  fragments = rasterize(xy, depth, triangles, image_size=camera.image_size, capacity=capacity,
                        cull_backfaces=cull_backfaces,
                        perspective=camera.kind == "perspective", on_overflow=on_overflow)
  if texture is not None:
    colour = sample_texture(texture, interpolate(fragments, triangles, uv))
  elif albedo is not None:
    colour = interpolate(fragments, triangles, albedo)
  else:
    raise ValueError("render needs `albedo` or `texture` (with `uv`)")
  if light is not None:
    # Shade in the camera-aligned frame: rotate normals and positions with the head.
    normals = jnp.einsum("bij,bvj->bvi", camera.rotation, vertex_normals(vertices, triangles),
                         precision=jax.lax.Precision.HIGHEST)
    pixel_normals = interpolate(fragments, triangles, normals)
    if isinstance(light, PhongLight):
      posed = camera_lib.rigid_transform(vertices, camera.rotation, camera.translation)
      eye = None
      if camera.kind == "perspective":
        eye = jnp.stack([jnp.zeros_like(camera.distance), jnp.zeros_like(camera.distance),
                         camera.distance], -1)
      colour = shading.shade_phong(
          colour, pixel_normals, interpolate(fragments, triangles, posed),
          light_direction=light.direction, light_colour=light.colour, ambient=light.ambient,
          specular=light.specular, shininess=light.shininess, eye=eye)
    else:
      colour = shading.shade_sh(colour, pixel_normals, light)
  mask = fragments.mask[..., None]
  if background is None:
    background = jnp.zeros_like(colour)
  image = colour * mask + background * (1.0 - mask)
  if edge_antialias:
    both = antialias(jnp.concatenate([image, mask], -1), fragments, xy, topology)
    image, mask = both[..., :3], both[..., 3:]
  return RenderOutput(image=image, mask=mask[..., 0], depth=fragments.depth, fragments=fragments)
