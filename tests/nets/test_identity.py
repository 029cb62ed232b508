"""dlib face-recognition ResNet port: weights parser, descriptors and chips against dlib."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface import assets
from jaxface import nets
from jaxface.errors import JaxfaceError, ModelFormatError
from jaxface.nets import dlib_format
from jaxface.nets import identity

dlib = pytest.importorskip("dlib")

_embed = jax.jit(nets.embed)
_face_chip = jax.jit(nets.face_chip, static_argnames=("size", "padding"))


@pytest.fixture(scope="module")
def params():
  return nets.load_dlib_params()


@pytest.fixture(scope="module")
def dlib_net():
  return dlib.face_recognition_model_v1(str(assets.dlib_model_path("recognition")))


def _smooth_image(height, width, seed):
  """Smooth random RGB pattern, uint8 [H, W, 3]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
  channels = []
  for _ in range(3):
    freq, phase, angle = rng.uniform(1, 6), rng.uniform(0, 6), rng.uniform(0, np.pi)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    channels.append(0.5 + 0.4 * wave + 0.05 * np.sin((xx + yy) * 40 + phase))
  return np.round(np.stack(channels, -1) * 255).astype(np.uint8)


def _synthetic_landmarks(num, scale, angle, centre, seed):
  """A face-like landmark set: dlib's template rotated, scaled, moved and jittered."""
  rng = np.random.default_rng(seed)
  if num == 5:
    template = identity.TEMPLATE_5
  else:
    template = np.zeros((68, 2))
    template[17:, 0] = identity._MEAN_FACE_17_67_X  # pylint: disable=protected-access
    template[17:, 1] = identity._MEAN_FACE_17_67_Y  # pylint: disable=protected-access
    t = np.linspace(0, np.pi, 17)
    template[:17] = np.stack([0.5 - 0.5 * np.cos(t), 0.45 + 0.5 * np.sin(t)], -1)  # jaw
  c, s = np.cos(angle), np.sin(angle)
  points = (template - 0.5) @ np.array([[c, s], [-s, c]]) * scale + np.asarray(centre)
  return np.round(points + rng.normal(0, 2, points.shape)).astype(np.int64)


def _dlib_detection(points, height, width):
  return dlib.full_object_detection(dlib.rectangle(0, 0, width - 1, height - 1),
                                    [dlib.point(int(x), int(y)) for x, y in points])


# ------------------------------------------------------------------------------------
# Weights.


def test_params_tree(params):
  p = params["params"]
  assert sum(x.size for x in jax.tree.leaves(params)) == 5_614_592
  assert p["conv0"]["kernel"].shape == (7, 7, 3, 32)
  assert p["block3"]["conv1"]["kernel"].shape == (3, 3, 32, 64)
  assert p["block13"]["affine2"]["scale"].shape == (256,)
  assert p["fc"]["kernel"].shape == (256, 128)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  # Same tree as a freshly initialised module.
  init = jax.eval_shape(nets.DlibResNet().init, jax.random.key(0),
                        jnp.zeros((1, 150, 150, 3)))
  assert jax.tree.structure(init) == jax.tree.structure(params)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, init, params)))


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path))
  first = nets.load_dlib_params()
  cache = tmp_path / "models" / "dlib_resnet_v1.npz"
  assert cache.is_file()
  assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp files left
  stamp = cache.stat().st_mtime_ns
  second = nets.load_dlib_params()
  assert cache.stat().st_mtime_ns == stamp
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, first, second)))
  cache.write_bytes(b"not an npz")  # a corrupt cache is rebuilt, not an error
  third = nets.load_dlib_params()
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, first, third)))


def test_parser_walks_the_whole_file():
  network = dlib_format.read_network(assets.dlib_model_path("recognition"))
  assert network.loss.kind == "loss_metric"
  assert network.layers[0].kind == "input_rgb_image_sized"
  assert sum(layer.kind == "con" for layer in network.layers) == 29
  assert network.layers[-1].kind == "fc"


def _assert_one_line_naming(error, path):
  message = str(error.value)
  assert str(path) in message and "\n" not in message
  assert isinstance(error.value, JaxfaceError)


@pytest.mark.parametrize("fraction", [0.0005, 0.5, 0.999])
def test_truncated_file(tmp_path, fraction):
  data = assets.dlib_model_path("recognition").read_bytes()
  path = tmp_path / "truncated.dat"
  path.write_bytes(data[:int(len(data) * fraction)])
  with pytest.raises(ModelFormatError) as error:
    nets.load_dlib_params(path)
  _assert_one_line_naming(error, path)


def test_random_bytes_and_missing_and_compressed(tmp_path):
  path = tmp_path / "random.dat"
  path.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, np.uint8).tobytes())
  with pytest.raises(ModelFormatError) as error:
    nets.load_dlib_params(path)
  _assert_one_line_naming(error, path)
  with pytest.raises(ModelFormatError) as error:
    nets.load_dlib_params(tmp_path / "missing.dat")
  _assert_one_line_naming(error, tmp_path / "missing.dat")
  path = tmp_path / "model.dat.bz2"
  path.write_bytes(b"BZh91AY&SY" + bytes(100))
  with pytest.raises(ModelFormatError, match="bzip2") as error:
    nets.load_dlib_params(path)
  _assert_one_line_naming(error, path)


def test_other_dlib_networks_are_rejected():
  # A different dlib DNN (the MMOD face detector) and a non-DNN dlib file.
  for key in ("mmod_detector", "landmarks68"):
    path = assets.dlib_model_path(key)
    if key == "landmarks68":  # only the first MB; the file is 100 MB
      data = path.read_bytes()[:1 << 20]
      with pytest.raises(ModelFormatError) as error:
        dlib_format.parse_network(data, path)
    else:
      with pytest.raises(ModelFormatError) as error:
        nets.load_dlib_params(path)
    _assert_one_line_naming(error, path)


def test_trailing_bytes_are_rejected(tmp_path):
  path = tmp_path / "extra.dat"
  path.write_bytes(assets.dlib_model_path("recognition").read_bytes() + b"\x00")
  with pytest.raises(ModelFormatError, match="trailing") as error:
    dlib_format.read_network(path)
  _assert_one_line_naming(error, path)


# ------------------------------------------------------------------------------------
# Descriptors.


def test_matches_dlib_descriptors(params, dlib_net):
  chips = [_smooth_image(150, 150, seed) for seed in range(3)]
  chips.append(np.random.default_rng(3).integers(0, 256, (150, 150, 3), np.uint8))
  chips = np.stack(chips)
  ours = np.asarray(_embed(params, jnp.asarray(chips, jnp.float32) / 255.0))
  ref = np.stack([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips])
  assert ours.shape == (4, 128) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)  # measured: 3e-7
  # Raw descriptors, not unit vectors.
  assert np.all(np.abs(np.linalg.norm(ours, axis=1) - 1) > 1e-3)


def test_chip_then_descriptor_matches_dlib_pipeline(params, dlib_net):
  """face_chip + embed against dlib's compute_face_descriptor(img, shape)."""
  image = _smooth_image(240, 320, 7)
  points = _synthetic_landmarks(68, 110, 0.3, (170, 120), seed=7)
  det = _dlib_detection(points, 240, 320)
  ref = np.asarray(dlib_net.compute_face_descriptor(image, det))
  chip = _face_chip(jnp.asarray(image[None], jnp.float32) / 255.0,
                    jnp.asarray(points[None] + 0.5, jnp.float32))
  ours = np.asarray(_embed(params, chip))[0]
  # dlib floors its chip to uint8; flooring ours too reproduces its input.
  floored = np.asarray(_embed(params, jnp.floor(chip * 255.0 + 1e-3) / 255.0))[0]
  assert np.abs(floored - ref).max() < 3e-4  # measured 3e-5 .. 6e-5
  assert np.abs(ours - ref).max() < 5e-3  # measured 4e-4 .. 8e-4
  assert np.linalg.norm(ours - ref) < 0.01  # measured ~0.002; same person is ~0.4


def test_shape_errors(params):
  with pytest.raises(ValueError, match="150"):
    nets.embed(params, jnp.zeros((1, 112, 112, 3)))
  with pytest.raises(ValueError, match="landmarks"):
    nets.face_chip(jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 10, 2)))


def test_descriptor_gradient(params):
  chips = jnp.asarray(_smooth_image(150, 150, 11)[None], jnp.float32) / 255.0
  grad = jax.jit(jax.grad(lambda c: jnp.sum(nets.embed(params, c) ** 2)))(chips)
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


# ------------------------------------------------------------------------------------
# Chips.


@pytest.mark.parametrize("num", [68, 5])
@pytest.mark.parametrize("scale,angle,centre", [(100, 0.2, (160, 120)),
                                                (130, -0.4, (150, 110)),
                                                (80, 1.0, (60, 60))])  # partly outside
def test_face_chip_matches_dlib(num, scale, angle, centre):
  height, width = 240, 320
  image = _smooth_image(height, width, num + scale)
  points = _synthetic_landmarks(num, scale, angle, centre, seed=scale)
  det = _dlib_detection(points, height, width)
  ours = np.asarray(_face_chip(jnp.asarray(image[None], jnp.float32) / 255.0,
                               jnp.asarray(points[None] + 0.5, jnp.float32)))[0] * 255.0
  # Float images: dlib does not round, so the geometry and interpolation compare exactly.
  ref_float = np.stack([
      dlib.get_face_chip(np.ascontiguousarray(image[..., c], np.float64), det, size=150,
                         padding=0.25) for c in range(3)], -1)
  assert np.abs(ours - ref_float).max() < 2e-3  # grey levels; measured <= 2.5e-4
  # uint8 RGB: dlib truncates, so ours is 0..1 level above and floors to dlib's value.
  ref_u8 = dlib.get_face_chip(image, det, size=150, padding=0.25).astype(np.float64)
  assert np.all(ours - ref_u8 > -1e-2) and np.all(ours - ref_u8 < 1 + 1e-2)
  assert np.mean(np.floor(ours + 1e-3) == ref_u8) > 0.99  # measured 0.999


def test_face_chip_gradients_reach_the_image():
  image = jnp.asarray(_smooth_image(200, 200, 3)[None], jnp.float32) / 255.0
  points = jnp.asarray(_synthetic_landmarks(68, 110, 0.1, (100, 100), seed=1)[None] + 0.5,
                       jnp.float32)
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(1, 150, 150, 3)), jnp.float32)
  grad = jax.jit(jax.grad(lambda im: jnp.sum(nets.face_chip(im, points) * weights)))(image)
  assert bool(jnp.all(jnp.isfinite(grad)))
  assert float(jnp.abs(grad).max()) > 0
  # Bilinear weights sum to one per chip pixel: total gradient = total weight.
  np.testing.assert_allclose(float(grad.sum()), float(weights.sum()), rtol=1e-4)


def test_recognition_net_registry():
  entry = nets.RECOGNITION_NETS["dlib_resnet_v1"]
  assert entry.embed is nets.embed and entry.chip is nets.face_chip
  assert (entry.chip_size, entry.embedding_dim) == (150, 128)
  assert entry.load_params is nets.load_dlib_params
