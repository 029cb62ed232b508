"""Analytic edge antialiasing for occlusion-boundary gradients (after nvdiffrast).

Hard rasterization has no gradient w.r.t. where a silhouette lies. For each pair of
horizontally or vertically adjacent pixels showing different surfaces, the nearer
pixel's triangle is checked for a silhouette edge (no neighbour across it, or a
back-facing neighbour) crossing the segment between the two pixel centres. At the
crossing t (0 at the near pixel's centre, 1 at the far one's) the colours blend as
coverage does: for t > 1/2 the far pixel takes (t - 1/2) of the near colour, for
t < 1/2 the near pixel takes (1/2 - t) of the far colour. t depends on the edge's
projected vertices, so image losses move silhouettes (Laine et al. 2020).
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxface.render.rasterize import Fragments, edge_function


@flax.struct.dataclass
class Topology:
  """Triangles plus static adjacency, built once per mesh by `make_topology`.

  Attributes:
    triangles: [F, 3] int32.
    neighbours: [F, 3] int32 triangle across edge k = (v_k, v_{k+1}), -1 on borders.
  """
  triangles: jax.Array
  neighbours: jax.Array


def make_topology(triangles) -> Topology:
  """Computes edge adjacency with numpy (non-manifold edges count as borders)."""
  triangles = np.asarray(triangles, np.int64)
  num = triangles.shape[0]
  edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
  owner = np.tile(np.arange(num), 3)
  slot = np.repeat(np.arange(3), num)
  key = np.sort(edges, axis=1)
  order = np.lexsort((key[:, 1], key[:, 0]))
  key, owner, slot = key[order], owner[order], slot[order]
  same_next = np.all(key[1:] == key[:-1], axis=1)
  # An edge shared by exactly two triangles: pairs (i, i+1) not part of a longer run.
  run_start = np.concatenate([[True], ~same_next])
  run_id = np.cumsum(run_start) - 1
  run_length = np.bincount(run_id)[run_id]
  pair = np.flatnonzero(same_next & (run_length[:-1] == 2))
  neighbours = np.full((num, 3), -1, np.int64)
  neighbours[owner[pair], slot[pair]] = owner[pair + 1]
  neighbours[owner[pair + 1], slot[pair + 1]] = owner[pair]
  return Topology(triangles=jnp.asarray(triangles, jnp.int32),
                  neighbours=jnp.asarray(neighbours, jnp.int32))


def _pair_deltas(ids_p, ids_q, z_p, z_q, c_p, c_q, colour_p, colour_q, xy, topology, front):
  """Colour corrections (delta_p, delta_q) for pixel pairs (p, q) of one image."""
  p_near = z_p <= z_q
  tri = jnp.where(p_near, ids_p, ids_q)
  near_c = jnp.where(p_near[..., None], c_p, c_q)
  far_c = jnp.where(p_near[..., None], c_q, c_p)
  active = (ids_p != ids_q) & (tri >= 0)
  safe_tri = jnp.maximum(tri, 0)
  corners = topology.triangles[safe_tri]  # [..., 3]
  inside_sign = jnp.where(front[safe_tri], -1.0, 1.0)  # front faces have negative area
  best_t = jnp.zeros(tri.shape, xy.dtype)
  found = jnp.zeros(tri.shape, bool)
  for k in range(3):
    u, v = xy[corners[..., k]], xy[corners[..., (k + 1) % 3]]
    e_near = edge_function(u, v, near_c) * inside_sign
    e_far = edge_function(u, v, far_c) * inside_sign
    across = topology.neighbours[safe_tri, k]
    silhouette = (across < 0) | ~front[jnp.maximum(across, 0)]
    crosses = (e_near >= 0) & (e_far < 0) & silhouette
    denominator = e_near - e_far  # > 0 where crosses
    t = e_near / jnp.where(crosses, denominator, 1.0)
    take = crosses & ~found
    best_t = jnp.where(take, t, best_t)
    found = found | crosses
  use = active & found
  near_colour = jnp.where(p_near[..., None], colour_p, colour_q)
  far_colour = jnp.where(p_near[..., None], colour_q, colour_p)
  t = best_t[..., None]
  near_delta = jnp.where(use[..., None] & (t < 0.5), (0.5 - t) * (far_colour - near_colour), 0.0)
  far_delta = jnp.where(use[..., None] & (t >= 0.5), (t - 0.5) * (near_colour - far_colour), 0.0)
  delta_p = jnp.where(p_near[..., None], near_delta, far_delta)
  delta_q = jnp.where(p_near[..., None], far_delta, near_delta)
  return delta_p, delta_q


def _depth_and_front(ids, depth, xy, topology: Topology):
  """One image's pixel depth (inf off the mesh) and [F] front-facing triangles, no gradient."""
  z = jnp.where(ids >= 0, jax.lax.stop_gradient(depth), jnp.inf)
  tri_xy = xy[topology.triangles]
  front = edge_function(tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]) < 0
  return z, jax.lax.stop_gradient(front)


def antialias(image: jax.Array, fragments: Fragments, xy: jax.Array,
              topology: Topology) -> jax.Array:
  """Blends colours across silhouette edges so that they have position gradients.

  Args:
    image: [B, H, W, C] hard-rasterized colours (with background), any channels
      (append the mask as a channel to antialias it too).
    fragments: the `Fragments` the image was shaded from.
    xy: [B, V, 2] projected vertices (differentiable).
    topology: `make_topology(triangles)`.
  Returns:
    [B, H, W, C] antialiased image.
  """

  def one(img, ids, depth, xy_i):
    height, width = ids.shape
    z, front = _depth_and_front(ids, depth, xy_i, topology)
    centres = jnp.stack(jnp.meshgrid(jnp.arange(width), jnp.arange(height), indexing="xy"),
                        -1).astype(xy_i.dtype) + 0.5
    out = img
    # Horizontal pairs (p = [:, :-1], q = [:, 1:]), then vertical pairs.
    dp, dq = _pair_deltas(ids[:, :-1], ids[:, 1:], z[:, :-1], z[:, 1:], centres[:, :-1],
                          centres[:, 1:], img[:, :-1], img[:, 1:], xy_i, topology, front)
    out = out + jnp.pad(dp, ((0, 0), (0, 1), (0, 0))) + jnp.pad(dq, ((0, 0), (1, 0), (0, 0)))
    dp, dq = _pair_deltas(ids[:-1], ids[1:], z[:-1], z[1:], centres[:-1], centres[1:],
                          img[:-1], img[1:], xy_i, topology, front)
    out = out + jnp.pad(dp, ((0, 1), (0, 0), (0, 0))) + jnp.pad(dq, ((1, 0), (0, 0), (0, 0)))
    return out

  return jax.vmap(one)(image, fragments.triangle_id, fragments.depth, xy)


def _silhouette_triangles(front: jax.Array, topology: Topology) -> jax.Array:
  """[F] bool: triangles with a silhouette edge (a border, or a back-facing neighbour)."""
  across = topology.neighbours
  return jnp.any((across < 0) | ~front[jnp.maximum(across, 0)], axis=1)


def antialias_silhouettes(image: jax.Array, fragments: Fragments, xy: jax.Array,
                          topology: Topology, max_pairs: int) -> tuple[jax.Array, jax.Array]:
  """`antialias` restricted to the pixel pairs that can blend: a sparse, cheaper form.

  Only pairs whose nearer pixel shows a triangle with a silhouette edge can change
  (`antialias` blends across silhouette edges alone), and on a dense mesh those are a
  thin curve of pixels: at most `max_pairs` of them per direction and image are
  gathered, blended and scattered back, instead of every pixel pair of the image. The
  result equals `antialias` wherever no pairs were left out; pairs beyond `max_pairs`
  (in raster order) stay hard and are counted.

  Args:
    image: [B, H, W, C] hard-rasterized colours (with background).
    fragments: the `Fragments` the image was shaded from.
    xy: [B, V, 2] projected vertices (differentiable).
    topology: `make_topology(triangles)`.
    max_pairs: static number of candidate pairs per direction and image.
  Returns:
    (image [B, H, W, C]; overflow [B] int32, candidate pairs left hard).
  """

  def one(img, ids, depth, xy_i):
    height, width, channels = img.shape
    z, front = _depth_and_front(ids, depth, xy_i, topology)
    silhouette = _silhouette_triangles(front, topology)
    colours = img.reshape(height * width, channels)
    centre = lambda pix: jnp.stack([pix % width, pix // width], -1).astype(xy_i.dtype) + 0.5
    out, overflow = colours, jnp.zeros((), jnp.int32)
    # Horizontal pairs (p = (i, j), q = (i, j + 1)), then vertical (q = (i + 1, j)).
    for pair_shape, step in (((height, width - 1), 1), ((height - 1, width), width)):
      p = (jnp.arange(pair_shape[0])[:, None] * width + jnp.arange(pair_shape[1])[None]).ravel()
      ids_p, ids_q = ids.ravel()[p], ids.ravel()[p + step]
      z_p, z_q = z.ravel()[p], z.ravel()[p + step]
      near = jnp.where(z_p <= z_q, ids_p, ids_q)
      candidate = (ids_p != ids_q) & (near >= 0) & silhouette[jnp.maximum(near, 0)]
      count = jnp.sum(candidate)
      index = jnp.nonzero(candidate, size=max_pairs, fill_value=0)[0]
      keep = (jnp.arange(max_pairs) < count)[:, None]
      p_pix = p[index]
      q_pix = p_pix + step
      dp, dq = _pair_deltas(ids_p[index], ids_q[index], z_p[index], z_q[index], centre(p_pix),
                            centre(q_pix), colours[p_pix], colours[q_pix], xy_i, topology, front)
      out = out.at[p_pix].add(jnp.where(keep, dp, 0.0)).at[q_pix].add(jnp.where(keep, dq, 0.0))
      overflow += jnp.maximum(count - max_pairs, 0).astype(jnp.int32)
    return out.reshape(height, width, channels), overflow

  return jax.vmap(one)(image, fragments.triangle_id, fragments.depth, xy)
