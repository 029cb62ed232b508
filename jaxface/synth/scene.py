"""Random scene parameters of the synthetic dataset: who (identity), how (each frame).

Everything is drawn from `numpy.random.Generator`s seeded by (seed, identity index),
so an identity's record does not depend on which process or shard generates it.
Units: mm, radians, pixels; frames as in `jaxface.render.camera` (camera at
(0, 0, CAMERA_DISTANCE_MM) looking down -z, head rotated by R = Rz Ry Rx).
"""

import dataclasses

import numpy as np

# The camera convention of the fitting (Deng et al. 2019), so fits see the same camera.
from jaxface.fit.fitting import CAMERA_DISTANCE_MM, FOCAL_AT_224  # pylint: disable=unused-import


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """What the generator varies, and by how much.

  Attributes:
    image_size: S, square images (pixels).
    frames: F frames per identity.
    max_yaw, max_pitch, max_roll: uniform head-pose ranges, degrees (yaw is drawn
      so that half the frames are within ±max_yaw/2: near-frontal views stay common).
    expression_probability: fraction of frames with a random (N(0, 1)) expression;
      the rest are near-neutral (N(0, 0.15²)).
    occlusion_probability: fraction of frames with a synthetic occluder.
    key_light_probability: fraction of frames lit by a strong directional key light
      with cast shadows and specular highlights on top of the SH light (light that a
      9-coefficient SH model cannot represent).
    detail_mm: RMS of the per-identity out-of-span displacement, mm.
    scale_jitter: relative head-distance jitter (face size ±).
    shift_jitter: head translation jitter as a fraction of the image size.
    focal_jitter: relative focal-length jitter.
  """
  image_size: int = 224
  frames: int = 4
  max_yaw: float = 90.0
  max_pitch: float = 20.0
  max_roll: float = 20.0
  expression_probability: float = 0.5
  occlusion_probability: float = 0.25
  key_light_probability: float = 0.5
  detail_mm: float = 1.0
  scale_jitter: float = 0.1
  shift_jitter: float = 0.05
  focal_jitter: float = 0.15


@dataclasses.dataclass(frozen=True)
class FrameScene:
  """One frame's parameters (arrays for F frames stacked by `sample_frames`).

  Attributes:
    expression: [Ke] coefficients.
    rotation: [3] Euler (pitch, yaw, roll), radians.
    translation: [3] mm (z towards the camera: nearer = larger face).
    focal: focal length, pixels.
    light: [9, 3] SH coefficients.
    key_light: [7] direction towards the light (3, camera-aligned frame), colour (3),
      specular reflectance (1); all zero when the frame has no key light.
    occluder: None or a dict describing the occluder (see `appearance.draw_occluder`).
    background: a dict describing the background (see `appearance.background`).
    tags: frame tags: "expression", "large_pose", "occluded", "key_light".
  """
  expression: np.ndarray
  rotation: np.ndarray
  translation: np.ndarray
  focal: float
  light: np.ndarray
  key_light: np.ndarray
  occluder: dict | None
  background: dict
  tags: tuple[str, ...]


LARGE_POSE_DEG = 45.0
EXPRESSION_TAG_NORM = 2.0  # |expression| above this (N(0,1) in Ke=10 has norm ~3.1)


def identity_rng(seed: int, identity: int) -> np.random.Generator:
  """The generator of one identity's record: independent of shards and processes."""
  return np.random.default_rng([int(seed), int(identity)])


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def sh_directional(direction: np.ndarray, colour: np.ndarray) -> np.ndarray:
  """[9, 3] SH radiance coefficients of a distant light (Y_k(d) · colour).

  With `jaxface.render.shade_sh` (whose basis folds in the Lambertian kernel) this
  gives the order-2 approximation of colour · max(n·d, 0).
  """
  x, y, z = _unit(np.asarray(direction, np.float64))
  y00, y1 = 0.5 * np.sqrt(1 / np.pi), np.sqrt(3 / (4 * np.pi))
  y2, y20 = 0.5 * np.sqrt(15 / np.pi), 0.25 * np.sqrt(5 / np.pi)
  basis = np.array([y00, y1 * y, y1 * z, y1 * x, y2 * x * y, y2 * y * z,
                    y20 * (3 * z * z - 1), y2 * x * z, 0.5 * y2 * (x * x - y * y)])
  return basis[:, None] * np.asarray(colour, np.float64)[None, :]


def sh_ambient(colour: np.ndarray) -> np.ndarray:
  """[9, 3] SH coefficients of uniform irradiance `colour` [3]."""
  light = np.zeros((9, 3))
  light[0] = np.asarray(colour) / (np.pi * 0.5 * np.sqrt(1 / np.pi))
  return light


def _light_colour(rng: np.random.Generator, level: float) -> np.ndarray:
  """A light colour of brightness ~level: white, warm or cool tints."""
  tint = 1.0 + rng.uniform(-0.25, 0.25, 3)
  return level * tint / tint.mean()


def _direction(rng: np.random.Generator, max_angle_deg: float) -> np.ndarray:
  """A direction within max_angle of +z (towards the camera)."""
  theta = np.deg2rad(rng.uniform(0, max_angle_deg))
  phi = rng.uniform(0, 2 * np.pi)
  return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


def sample_light(rng: np.random.Generator, key: bool) -> tuple[np.ndarray, np.ndarray]:
  """(SH light [9, 3], key light [7]) of one frame.

  The SH part is a coloured ambient plus one soft directional light; with `key`, the
  SH part is dimmer and a strong key light (shadows and highlights, not SH) is added.
  Without a key light the directional part is at least about half the ambient: faces
  lit by ambient light alone look flat, unlike photos (and face detectors miss them).
  """
  ambient = _light_colour(rng, rng.uniform(0.35, 0.7) if key else rng.uniform(0.35, 0.65))
  soft_level = rng.uniform(0.0, 0.5) if key else rng.uniform(0.3, 0.7)
  soft = sh_directional(_direction(rng, 70.0 if key else 60.0),
                        _light_colour(rng, soft_level))
  light = sh_ambient(ambient) + soft
  key_light = np.zeros(7)
  if key:
    key_light[:3] = _direction(rng, 75.0)
    key_light[3:6] = _light_colour(rng, rng.uniform(0.5, 1.0))
    key_light[6] = rng.uniform(0.05, 0.35)
  return light.astype(np.float32), key_light.astype(np.float32)


def sample_frames(rng: np.random.Generator, config: SynthConfig, num_expression: int,
                  occluder_fn, background_fn) -> list[FrameScene]:
  """F frames of one identity.

  Args:
    rng: the identity's generator (advanced).
    config: ranges.
    num_expression: Ke.
    occluder_fn: rng -> occluder dict (`appearance.sample_occluder`).
    background_fn: rng -> background dict (`appearance.sample_background`).
  Returns:
    `config.frames` `FrameScene`s.
  """
  size = config.image_size
  frames = []
  for _ in range(config.frames):
    expressive = rng.uniform() < config.expression_probability
    expression = rng.normal(0.0, 1.0 if expressive else 0.15, num_expression)
    # Half the yaws within ±max/2, half over the whole range: frontal views stay common.
    yaw_range = config.max_yaw if rng.uniform() < 0.5 else config.max_yaw / 2
    angles_deg = np.array([rng.uniform(-config.max_pitch, config.max_pitch),
                           rng.uniform(-yaw_range, yaw_range),
                           rng.uniform(-config.max_roll, config.max_roll)])
    focal = FOCAL_AT_224 * size / 224.0 * (1 + rng.uniform(-1, 1) * config.focal_jitter)
    # Depth keeps the face size near the reference; x, y shift by a fraction of the image.
    depth = CAMERA_DISTANCE_MM * focal / (FOCAL_AT_224 * size / 224.0)
    depth *= 1 + rng.uniform(-1, 1) * config.scale_jitter
    shift = rng.uniform(-1, 1, 2) * config.shift_jitter * size * depth / focal
    translation = np.array([shift[0], shift[1], CAMERA_DISTANCE_MM - depth])
    key = rng.uniform() < config.key_light_probability
    light, key_light = sample_light(rng, key)
    occluder = occluder_fn(rng) if rng.uniform() < config.occlusion_probability else None
    tags = []
    if np.linalg.norm(expression) > EXPRESSION_TAG_NORM:
      tags.append("expression")
    if abs(angles_deg[1]) > LARGE_POSE_DEG:
      tags.append("large_pose")
    if occluder is not None:
      tags.append("occluded")
    if key:
      tags.append("key_light")
    frames.append(FrameScene(
        expression=expression.astype(np.float32),
        rotation=np.deg2rad(angles_deg).astype(np.float32),
        translation=translation.astype(np.float32), focal=float(focal), light=light,
        key_light=key_light, occluder=occluder, background=background_fn(rng),
        tags=tuple(tags)))
  return frames
