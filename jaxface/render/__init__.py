"""Differentiable rendering in pure JAX: cameras, rasterizer -> Fragments, shading.

Knows nothing of faces: meshes are vertices + triangles. No Flax parameters.
"""

from jaxface.render.antialias import Topology, antialias, antialias_silhouettes, make_topology
from jaxface.render.camera import (Camera, euler_to_matrix, orthographic_camera,
                                   perspective_camera, project, rigid_transform,
                                   rotation_6d_to_matrix)
from jaxface.render.interpolate import interpolate, sample_texture
from jaxface.render.rasterize import (Capacity, Fragments, capacity_for, check_overflow,
                                      default_capacity, rasterize)
from jaxface.render.render import PhongLight, RenderOutput, render
from jaxface.render.shading import ambient_sh, sh_basis, shade_phong, shade_sh
from jaxface.render import uv_raster
from jaxface.render.uv_raster import UVRaster, rasterize_uv
