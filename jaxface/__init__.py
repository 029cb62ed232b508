"""jaxface: 3D face reconstruction in JAX/Flax.

Subpackages: `morphable` (face models), `render` (differentiable rendering), `nets`
(Flax modules), `losses`, `preprocess`, `fit`, `train`, `eval`, `export`. `assets`
locates the offline model files; `cli` is the `jaxface` command.
"""

__version__ = "0.1.0"
