"""A tiny GAN-shaped regression problem for the training-infrastructure tests.

Generator: 2-layer MLP with cross-device BatchNorm, x [B, 4] -> y [B, 3], trained with
SGD + momentum on MSE plus a small adversarial term. Discriminator: 2-layer MLP
scoring y vectors, trained with Adam (real = targets, fake = generator outputs). Two
optimisers, one BatchNorm, optional per-device input noise: the parts a real method's
step has. Run as a script (`python -m tests.train.toy WORKDIR NUM_STEPS [DELAY]`) it
trains with `jaxface.train.run` and saves the final params to WORKDIR/final.npz.
"""

import functools
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxface.train import loop, parallel
from jaxface.train import state as state_lib

IN, HIDDEN, OUT = 4, 16, 3


class Generator(nn.Module):
  """Dense -> BatchNorm (statistics averaged over "data") -> relu -> Dense."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Dense(HIDDEN)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     axis_name=parallel.DATA_AXIS if train else None)(x)
    return nn.Dense(OUT)(nn.relu(x))


class Discriminator(nn.Module):
  """Scores y vectors: [B, OUT] -> [B] logits."""

  @nn.compact
  def __call__(self, y):
    return nn.Dense(1)(nn.tanh(nn.Dense(8)(y)))[:, 0]


GENERATOR, DISCRIMINATOR = Generator(), Discriminator()


@jax.jit  # one compilation instead of many small eager ones
def init_state(rng: jax.Array) -> state_lib.TrainState:
  """Step-0 state of both networks."""
  g_rng, d_rng = jax.random.split(rng)
  g_vars = GENERATOR.init(g_rng, jnp.zeros((2, IN)), train=False)
  d_vars = DISCRIMINATOR.init(d_rng, jnp.zeros((2, OUT)))
  return state_lib.TrainState.create(
      params={"generator": g_vars["params"], "discriminator": d_vars["params"]},
      batch_stats={"generator": g_vars["batch_stats"]},
      tx={"generator": optax.sgd(0.1, momentum=0.9), "discriminator": optax.adam(1e-2)},
      rng=rng)


@functools.cache  # one function per setting, so jaxface.train reuses its compilation
def make_train_step(*, noise: float = 0.0, adversarial_weight: float = 0.1):
  """A per-device step: D update, then G update (cross-device BN), pmean'd grads."""

  def train_step(state, batch, rng):
    x, y = batch["x"], batch["y"]
    if noise:
      x = x + noise * jax.random.normal(parallel.device_rng(rng), x.shape)

    def g_loss(params):
      pred, updates = GENERATOR.apply(
          {"params": params, "batch_stats": state.batch_stats["generator"]}, x,
          train=True, mutable=["batch_stats"])
      regression = jnp.mean((pred - y) ** 2)
      adversarial = jnp.mean(jax.nn.softplus(
          -DISCRIMINATOR.apply({"params": state.params["discriminator"]}, pred)))
      total = regression + adversarial_weight * adversarial
      return total, (regression, adversarial, pred, updates["batch_stats"])

    (_, (regression, adversarial, pred, stats)), g_grads = jax.value_and_grad(
        g_loss, has_aux=True)(state.params["generator"])

    def d_loss(params):
      real = DISCRIMINATOR.apply({"params": params}, batch["real"])
      fake = DISCRIMINATOR.apply({"params": params}, jax.lax.stop_gradient(pred))
      return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))

    d_value, d_grads = jax.value_and_grad(d_loss)(state.params["discriminator"])
    grads = jax.lax.pmean({"generator": g_grads, "discriminator": d_grads}, "data")
    state = state_lib.apply_gradients(state, "discriminator", grads["discriminator"])
    state = state_lib.apply_gradients(state, "generator", grads["generator"])
    state = state.replace(batch_stats={"generator": stats})
    metrics = jax.lax.pmean({"loss/regression": regression, "loss/adversarial": adversarial,
                             "loss/discriminator": d_value}, "data")
    return state, {**metrics, **state_lib.grad_norms(grads), **state_lib.param_norms(state)}

  return train_step


def make_batch(index: int, batch_size: int) -> dict[str, np.ndarray]:
  """The deterministic batch number `index` (0-based), float32 arrays.

  x [B, 4] inputs, y [B, 3] regression targets, real [B, 3] samples the
  discriminator calls real (like GAN-3DMM's prior samples).
  """
  rng = np.random.default_rng(1000 + index)
  x = rng.normal(size=(batch_size, IN)).astype(np.float32)
  w = np.linspace(-1.0, 1.0, IN * OUT, dtype=np.float32).reshape(IN, OUT)
  real = np.tanh(rng.normal(size=(batch_size, IN)) @ w)
  return {"x": x, "y": np.tanh(x @ w).astype(np.float32), "real": real.astype(np.float32)}


def batches(start_step: int, *, batch_size: int, delay: float = 0.0, nan_at: int | None = None):
  """Batches for steps start_step + 1, ... (resumable); `nan_at`: a NaN target at that step."""
  index = start_step
  while True:
    if delay:
      time.sleep(delay)
    batch = make_batch(index, batch_size)
    index += 1
    if nan_at == index:
      batch["y"][0, 0] = np.nan
    yield batch


def make_config(num_steps: int = 6, **train) -> ml_collections.ConfigDict:
  """The loop's config for the toy (tiny, every feature on)."""
  return ml_collections.ConfigDict({
      "parallelism": "shard_map", "seed": 0,
      "train": {"num_steps": num_steps, "batch_size": 16, "log_every": 2,
                "checkpoint_every": 2, "keep_checkpoints": 3, "image_every": 0,
                "eval_every": 0, **train}})


def flat_params(state) -> dict[str, np.ndarray]:
  """Params, batch stats and optimiser states as name -> host array (for comparisons)."""
  tree = {"params": state.params, "batch_stats": state.batch_stats,
          "opt_states": state.opt_states}
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(tree))
  return {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def main(argv) -> None:
  """WORKDIR NUM_STEPS [DELAY]: train the toy, save the final params to final.npz."""
  workdir, num_steps = argv[1], int(argv[2])
  delay = float(argv[3]) if len(argv) > 3 else 0.0
  config = make_config(num_steps)
  final = loop.run(
      config, workdir, init_state=init_state, train_step=make_train_step(noise=0.1),
      batches=lambda s: batches(s, batch_size=config.train.batch_size, delay=delay),
      log=lambda line: print(line, flush=True))
  np.savez(f"{workdir}/final.npz", **flat_params(final))


if __name__ == "__main__":
  main(sys.argv)
