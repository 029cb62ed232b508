"""ResNet backbones: shapes, norms, batch statistics across devices, parameter counts.

Compiles are the cost on CPU, so shapes and parameter counts come from `jax.eval_shape`,
variables are mostly random fills of the abstract tree (`random_variables`), and every
real run is jitted once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from jaxface import nets
from jaxface.nets import resnet

# "rbg" keys: a jitted init of these nets compiles several times faster than threefry's.
KEY = jax.random.key(0, impl="rbg")
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # tiny nets: compiling dominates


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def init(model, x, **kw):
  """model.init, jitted."""
  return jax.jit(lambda k, x: model.init(k, x, **kw), compiler_options=FAST_COMPILE)(KEY, x)


def apply(model, variables, x, **kw):
  """model.apply, jitted."""
  return jax.jit(lambda v, x: model.apply(v, x, **kw), compiler_options=FAST_COMPILE)(
      variables, x)


def abstract_init(model, x, **kw):
  """Shapes of model.init's variables (nothing runs)."""
  return jax.eval_shape(lambda: model.init(KEY, jnp.zeros(x.shape, x.dtype), **kw))


def random_variables(model, x, seed=0, **kw):
  """Random variables of init's shapes: kernels ~N(0, 1/fan_in), scales ~1 + N(0, 0.3²),
  biases and running means ~N(0, 0.1²), running variances ~U(0.5, 1.5). Unlike a real
  init, no residual branch starts at zero."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      value = rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name == "scale":
      value = 1.0 + 0.3 * rng.standard_normal(leaf.shape)
    elif name == "var":
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      value = 0.1 * rng.standard_normal(leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract_init(model, x, **kw))


def images(batch, size=32, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(batch, size, size, channels)), jnp.float32)


@pytest.mark.parametrize("block, width, channels", [
    ("basic", 8, (8, 16, 32, 64)), ("bottleneck", 4, (16, 32, 64, 128))])
def test_tiny_shapes_and_dtypes(block, width, channels):
  model = nets.tiny_resnet(block=block, width=width)
  assert model.stage_channels == channels
  x = images(2, size=32, channels=5)
  variables = abstract_init(model, x, train=False)
  for dtype in (jnp.float32, jnp.bfloat16):
    out = jax.eval_shape(lambda v, x, dtype=dtype: nets.tiny_resnet(
        block=block, width=width, dtype=dtype).apply(v, x, train=False), variables, x)
    assert [s.shape for s in out["stages"]] == [
        (2, 8, 8, channels[0]), (2, 4, 4, channels[1]), (2, 2, 2, channels[2]),
        (2, 1, 1, channels[3])]
    assert out["pooled"].shape == (2, channels[3])
    assert all(a.dtype == dtype for a in jax.tree.leaves(out))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


def test_full_size_stage_shapes():
  # Symmetric (PyTorch) padding: 224 -> 112 -> 56, 28, 14, 7.
  model = nets.resnet50()
  x = jnp.zeros((2, 224, 224, 3))
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False),
                       abstract_init(model, x, train=False))
  assert [s.shape for s in out["stages"]] == [
      (2, 56, 56, 256), (2, 28, 28, 512), (2, 14, 14, 1024), (2, 7, 7, 2048)]
  assert out["pooled"].shape == (2, 2048)


@pytest.mark.parametrize("make, channels, expected", [
    (nets.resnet18, 3, 11_176_512),        # torchvision 11,689,512 - fc 512·1000 + 1000
    (nets.resnet50, 3, 23_508_032),        # torchvision 25,557,032 - fc 2048·1000 + 1000
    (nets.resnet50, 3 + 69, 23_724_416),   # + 7·7·69·64 = 216,384 in the stem
])
def test_parameter_counts(make, channels, expected):
  variables = abstract_init(make(), jnp.zeros((1, 64, 64, channels)), train=False)
  assert count(variables["params"]) == expected
  assert variables["params"]["stem"]["conv"]["kernel"].shape == (7, 7, channels, 64)


def test_group_norm_has_same_params_and_no_batch_stats():
  variables = abstract_init(nets.resnet50(norm="group"), jnp.zeros((1, 64, 64, 3)),
                            train=True)
  assert set(variables) == {"params"}
  assert count(variables["params"]) == 23_508_032
  assert resnet.num_groups(64) == 32 and resnet.num_groups(8) == 8
  assert resnet.num_groups(24) == 24 and resnet.num_groups(48) == 24


def test_group_norm_trains_without_mutable_state_and_per_example():
  model = nets.tiny_resnet(norm="group")
  x = images(3)
  variables = random_variables(model, x, train=True)
  assert set(variables) == {"params"}
  out = apply(model, variables, x, train=True)  # nothing mutable needed
  alone = apply(model, variables, x[:1], train=True)
  np.testing.assert_allclose(alone["pooled"], out["pooled"][:1], rtol=1e-4, atol=1e-5)


def test_batch_stats_update_only_in_training():
  model = nets.tiny_resnet()
  x = images(4)
  variables = random_variables(model, x, train=False)
  trained, updates = apply(model, variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(trained["pooled"], trained["stages"][-1].mean((1, 2)), rtol=1e-6)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
                         updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  out, same = apply(model, variables, x, train=False, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], same["batch_stats"])
  # Evaluation uses running averages: an example's output does not depend on the batch;
  # training normalises by the batch, so it does.
  alone = apply(model, variables, x[:2], train=False)
  np.testing.assert_allclose(alone["pooled"], out["pooled"][:2], rtol=1e-4, atol=1e-5)
  trained_alone, _ = apply(model, variables, x[:2], train=True, mutable=["batch_stats"])
  assert np.abs(trained_alone["pooled"] - trained["pooled"][:2]).max() > 1e-3


@pytest.mark.parametrize("block, last", [(resnet.BasicBlock(8, strides=2), "norm2"),
                                         (resnet.BottleneckBlock(4, strides=2), "norm3")])
def test_last_norm_of_each_residual_branch_starts_at_zero(block, last):
  params = init(block, jnp.zeros((1, 8, 8, 4)), train=False)["params"]
  scales = {k[0]: v for k, v in traverse_util.flatten_dict(params).items() if k[-1] == "scale"}
  assert last in scales and "proj_norm" in scales
  for name, scale in scales.items():
    np.testing.assert_array_equal(scale, 0.0 if name == last else 1.0)


def test_bottleneck_strides_in_the_3x3_conv():
  block = resnet.BottleneckBlock(4, strides=2)
  x = jnp.zeros((1, 8, 8, 8))
  _, state = jax.eval_shape(
      lambda v: block.apply(v, x, train=False, capture_intermediates=True,
                            mutable=["intermediates"]), abstract_init(block, x, train=False))
  inter = state["intermediates"]
  assert inter["conv1"]["__call__"][0].shape == (1, 8, 8, 4)   # 1x1 keeps the size (v1.5)
  assert inter["conv2"]["__call__"][0].shape == (1, 4, 4, 4)   # 3x3 carries the stride
  assert inter["proj"]["__call__"][0].shape == (1, 4, 4, 16)


def test_cross_device_batch_norm_equals_global_batch():
  devices = 8
  assert jax.device_count() >= devices
  x = images(2 * devices, size=16)
  single = nets.tiny_resnet()
  variables = random_variables(single, x[:2], train=False)
  expected, expected_stats = apply(single, variables, x, train=True, mutable=["batch_stats"])
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  step = lambda model: lambda v, xb: model.apply(v, xb, train=True, mutable=["batch_stats"])

  # shard_map over a "data" mesh axis (the train step's default wrapping).
  mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  fn = jax.jit(jax.shard_map(step(nets.tiny_resnet(axis_name="data")), mesh=mesh,
                             in_specs=(P(), P("data")), out_specs=(P("data"), P())))
  out, stats = fn(variables, x)
  jax.tree.map(close, out, expected)
  jax.tree.map(close, stats, expected_stats)

  # pmap with axis_name="data".
  per_device = x.reshape((devices, 2) + x.shape[1:])
  out, stats = jax.pmap(step(nets.tiny_resnet(axis_name="data")), axis_name="data",
                        in_axes=(None, 0))(variables, per_device)
  close(out["pooled"].reshape(expected["pooled"].shape), expected["pooled"])
  for leaf, want in zip(jax.tree.leaves(stats), jax.tree.leaves(expected_stats)):
    close(leaf, np.broadcast_to(want, leaf.shape))  # the same on every device
  # (Without the axis each device would normalise by its own 2 examples, which gives
  # other outputs: see test_batch_stats_update_only_in_training.)


def test_rejects_bad_configuration():
  x = jnp.zeros((1, 32, 32, 3))
  with pytest.raises(ValueError, match="norm"):
    abstract_init(nets.tiny_resnet(norm="layer"), x, train=False)
  with pytest.raises(ValueError, match="block"):
    abstract_init(nets.tiny_resnet(block="wide"), x, train=False)
  with pytest.raises(ValueError, match="B, H, W, C"):
    abstract_init(nets.tiny_resnet(), x[0], train=False)
