"""Face models: coefficients -> mesh (pure jnp), the default BFM-sim model, loaders."""

from jaxface.morphable.model import (MorphableModel, Skinning, albedo, decode, landmarks_3d,
                                     region_weights, scale_direction, vertex_normals,
                                     PRNET_REGION_WEIGHTS, REGION_NAMES)
from jaxface.morphable.bfm_sim import default_model
from jaxface.morphable import coefficients
from jaxface.morphable.coefficients import CoefficientLayout, layout_for, make_layout
from jaxface.morphable.flame import decode_posed
from jaxface.morphable.loaders import load_model
