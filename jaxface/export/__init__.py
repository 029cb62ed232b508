"""Exports: meshes (OBJ + MTL + texture PNG) and baked textures."""

from jaxface.export.mesh_io import atomic_path, write_obj, write_png, write_text
from jaxface.export.texture import bilinear_sample, unwrap_texture, vertex_visibility
