"""Times `decode` + `vertex_normals` of the default models under jit, against numpy.

Run: python benchmarks/decode_bench.py [--batch 8] [--repeats 20]
Prints a table, then one JSON line with the same figures (ms per face).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import morphable


def _time(fn, repeats):
  fn()  # compile / warm up
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  results = {"device": jax.devices()[0].device_kind, "batch": args.batch}
  print(f"{'model':<8} {'jax decode+normals ms/face':>28} {'numpy decode ms/face':>22} {'ratio':>7}")
  for variant in ("full", "front"):
    model = morphable.default_model(variant)
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(args.batch, model.num_shape)).astype(np.float32)
    expression = rng.normal(size=(args.batch, model.num_expression)).astype(np.float32)

    @jax.jit
    def forward(s, e, model=model):
      vertices = morphable.decode(model, s, e)
      return vertices, morphable.vertex_normals(vertices, model.triangles)

    s, e = jnp.asarray(shape), jnp.asarray(expression)
    t_jax = _time(lambda: jax.block_until_ready(forward(s, e)), args.repeats)
    mean, sb, eb = (np.asarray(x) for x in (model.mean, model.shape_basis, model.expression_basis))
    t_np = _time(lambda: mean + np.einsum("vck,bk->bvc", sb, shape)
                 + np.einsum("vck,bk->bvc", eb, expression), args.repeats)
    jax_ms, np_ms = 1e3 * t_jax / args.batch, 1e3 * t_np / args.batch
    print(f"{variant:<8} {jax_ms:>28.3f} {np_ms:>22.3f} {np_ms / jax_ms:>7.2f}")
    results[f"{variant}_decode_normals_ms_per_face"] = round(jax_ms, 4)
    results[f"{variant}_numpy_decode_ms_per_face"] = round(np_ms, 4)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
