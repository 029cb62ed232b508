"""Analysis-by-synthesis fitting of a morphable model to aligned photos (jitted Adam).

One image, or T images of one person: identity (shape, albedo) is shared across
frames, expression, pose and SH light are per frame (the multi-frame idea of FML).
Losses: 68-landmark L2 (jaw contour sliding to the silhouette, `contour.py`), eye closure, masked
photometric L2,1, identity 1 - cos (dlib ResNet on aligned chips) and N(0, I)
priors. Stages: landmarks only -> + photometric -> + identity (`FitConfig.stages`).
The camera is Deng et al.'s for 224 crops (f = 1015 px at 224, 1 m away), scaled
with the crop size. Deterministic: no randomness beyond the fixed initialisation.
"""

import dataclasses
import functools
import time
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxface import morphable
from jaxface import render
from jaxface.fit import contour as contour_lib
from jaxface.losses import identity as identity_losses
from jaxface.losses import landmarks as landmark_losses
from jaxface.losses import photometric
from jaxface.losses import regularization

FOCAL_AT_224 = 1015.0  # px (Deng et al. 2019)
CAMERA_DISTANCE_MM = 1000.0
TRANSLATION_UNIT_MM = 10.0  # optimiser units for translation (keeps parameters ~O(1))


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Fitting schedule and loss weights.

  Set by hand on synthetic renders and checked on the astronaut photo; `photometric`,
  `shape_prior` and `late_landmark_scale` chosen on the tuning split of
  `benchmarks/accuracy_bench.py` (README "Shape accuracy"). dlib's landmarks are a few
  pixels off on every face: at full weight through the photometric stage they pull the
  shape as far from the truth as the photometric term pulls it towards it (gap closed
  0.04); once they have placed the head, a tenth of their weight lets the photometric
  term shape the face (0.31 at photometric 5, 0.39 at 15; single images, no identity
  term, 10 tuning identities). Trimming pixels with colour error above 0.3 from the
  photometric term (`photometric_trim`) raised it to 0.49 (metrical -0.13 -> 0.02).
  The fitted faces' size was off by 3.0% (median) against 1.8% for the mean face:
  restraining the size direction (`scale_prior` 10) took the metrical gap closed to
  0.27 at the same non-metrical 0.48; a stronger prior on turned heads
  (`shape_prior_profile` 2) took large-pose fits from 1.52x the neutral tag's error
  to 1.37x (with ground-truth landmarks large-pose fits were worse than the mean face
  at the base prior, and as good as it at 10x). dlib misplaces a few landmarks by
  tens of pixels on turned and occluded faces; a Cauchy landmark loss of scale 3 px
  (`landmark_robust`) lets them pull little: on 12 tuning identities the gap closed
  went 0.53 -> 0.63 (metrical 0.29 -> 0.40; scale 8: 0.60 / 0.34), fits worse than the
  mean face 6.2% -> 2.1%, fitted landmark NME 2.0% -> 0.9%.
  """
  # 300 against 200 on all 24 tuning identities (single image, no identity term): gap
  # closed 0.42 -> 0.46 (metrical 0.23 -> 0.25), worse than the mean face 7.3% -> 4.2%,
  # large pose / neutral 1.23 -> 1.19, fit 6.4 -> 10.1 s on 2 CPU cores.
  steps: int = 300
  learning_rate: float = 0.03
  # Fractions of `steps` at which the photometric and identity terms switch on.
  stages: tuple = (0.4, 0.8)
  landmark: float = 2e-2  # per squared pixel at 224 px
  contour_weight: float = 1.0
  # Cauchy scale of the landmark loss (px at 224, `landmark_loss(robust=)`); 0: plain L2.
  landmark_robust: float = 3.0
  contour_marching: bool = True  # jaw landmarks slide to the silhouette (`contour.py`)
  eye_closure: float = 2e-2  # per pixel
  photometric: float = 15.0
  identity: float = 0.3
  shape_prior: float = 0.05
  # Added to `shape_prior` times sin(yaw)^4 (`shape_prior_profile_power`) of the most
  # frontal frame: a turned head shows half the face, whose other half the data pull
  # only by noise, but one frontal frame of T shows all of it. On all 24 tuning
  # identities (4 frames, no identity term) the most frontal frame's yaw closed 0.77 of
  # the gap against 0.70 with the mean of sin^4 over the frames (better for 17 of 24).
  shape_prior_profile: float = 2.0
  # The (integer) power of |sin(yaw)| in the turned-head prior: 8 with
  # `shape_prior_profile` 3.56 gives the same shape prior at 60° and 37-65% of it at 20-40°.
  shape_prior_profile_power: int = 4
  # Weight on the squared shape coefficient along `morphable.scale_direction`: a
  # photo does not tell a big face far away from a small one near.
  scale_prior: float = 10.0
  # The shared identity's priors (shape, scale, albedo) are divided by
  # T ** multi_frame_evidence for T frames: the data terms are means over frames, so 0
  # weighs T photos as the evidence of one, 1 as T independent photos. On 12 tuning
  # identities (4 frames, no identity term) 0 / 0.5 / 1 closed 0.68 / 0.72 / 0.70 of the
  # gap (non-metrical) with a squared landmark loss, and 0.5 / 1 closed 0.78 / 0.83 with
  # the Cauchy one (1 better for 9 of 12): once outlying landmarks pull little, the
  # frames' evidence is close to independent.
  multi_frame_evidence: float = 1.0
  expression_prior: float = 5e-3
  # Landmarks the model cannot follow are the detector's guesses on a face it does not
  # see well (the landmark stage absorbs them into pose and expression: its mean distance
  # is at most 5 px at 224 on every tuning image, the garbage ones included; the
  # photometric term shows them up). From the photometric stage on, each frame's expression prior is
  # multiplied by max(1, (r / landmark_noise_px)^2), r its current mean landmark distance
  # (px at 224, no gradient), and the shape prior by the most reliable frame's factor.
  # 0 turns it off. Off by default until measured on the test split: on all 24 tuning
  # identities, with `shape_prior_profile_power` 8, 12 px and 8 px took the images worse
  # than the mean face from 7.3% to 5.2% and 3.1% (README "Shape accuracy").
  landmark_noise_px: float = 0.0
  albedo_prior: float = 5e-3
  light_prior: float = 1e-3
  # Factor on the landmark weight once the photometric term is on (`stages[0]`).
  late_landmark_scale: float = 0.1
  # Pixels whose colour error (Euclidean, linear RGB in [0, 1]) exceeds this leave the
  # photometric mask: occluders, cast shadows, highlights. 0 keeps every pixel.
  photometric_trim: float = 0.3


@flax.struct.dataclass
class FitTargets:
  """What the fit matches, for T frames at one resolution.

  Attributes:
    images: [T, H, W, 3] aligned crops in [0, 1].
    landmarks: [T, 68, 2] detected landmarks, crop pixels (x right, y down).
    masks: [T, H, W] face masks in {0, 1}.
    identity: [T, D] identity embeddings of the photos' chips (zeros if unused).
  """
  images: jax.Array
  landmarks: jax.Array
  masks: jax.Array
  identity: jax.Array


def camera_for(params: dict, image_size: tuple[int, int]) -> render.Camera:
  """The perspective camera of every frame from the fitted pose."""
  focal = FOCAL_AT_224 * image_size[1] / 224.0
  return render.perspective_camera(
      render.euler_to_matrix(params["rotation"]), params["translation"] * TRANSLATION_UNIT_MM,
      focal=focal, distance=CAMERA_DISTANCE_MM, image_size=image_size)


def init_params(model: morphable.MorphableModel, landmarks: np.ndarray,
                images: np.ndarray, masks: np.ndarray) -> dict:
  """Zero identity/expression, frontal pose placed and scaled from the landmarks, flat light.

  Args:
    landmarks: [T, 68, 2] detected landmarks (crop pixels).
    images, masks: [T, H, W, 3], [T, H, W] for the initial light brightness.
  Returns:
    The parameter pytree: shape [Ks], albedo [Ka] (shared); expression [T, Ke],
    rotation [T, 3] radians, translation [T, 3] (x 10 mm), light [T, 9, 3] (per frame).
  """
  frames, height, width = images.shape[:3]
  focal = FOCAL_AT_224 * width / 224.0
  model_points = np.asarray(morphable.landmarks_3d(model, model.mean))
  # Projected size of the mean landmarks at the reference distance, vs detected size.
  spread = lambda p: np.sqrt(np.mean(np.sum((p - p.mean(0)) ** 2, -1)))
  size_at_d = focal * spread(model_points[:, :2]) / CAMERA_DISTANCE_MM
  translation = np.zeros((frames, 3))
  for t in range(frames):
    ratio = spread(landmarks[t]) / size_at_d
    depth = CAMERA_DISTANCE_MM / ratio  # camera distance to the face for that size
    translation[t, 2] = CAMERA_DISTANCE_MM - depth
    offset = landmarks[t].mean(0) - np.array([width / 2, height / 2])
    centre = model_points.mean(0)
    translation[t, 0] = offset[0] * depth / focal - centre[0]
    translation[t, 1] = -offset[1] * depth / focal - centre[1]
  brightness = [images[t][masks[t] > 0].mean() if masks[t].any() else 0.5
                for t in range(frames)]
  albedo_level = float(np.asarray(model.albedo_mean).mean())
  light = np.stack([np.asarray(render.ambient_sh(b / albedo_level)) for b in brightness])
  return {
      "shape": jnp.zeros(model.num_shape), "albedo": jnp.zeros(model.num_albedo),
      "expression": jnp.zeros((frames, model.num_expression)),
      "rotation": jnp.zeros((frames, 3)),
      "translation": jnp.asarray(translation / TRANSLATION_UNIT_MM, jnp.float32),
      "light": jnp.asarray(light, jnp.float32),
  }


def posed_vertices(model, params) -> jax.Array:
  """[T, V, 3] model-frame vertices with the shared identity and per-frame expression."""
  shape = jnp.broadcast_to(params["shape"], params["expression"].shape[:1] + params["shape"].shape)
  return morphable.decode(model, shape, params["expression"])


def projected_landmarks(model, params, image_size) -> jax.Array:
  """[T, 68, 2] model landmarks projected with each frame's camera (pixels)."""
  points = morphable.landmarks_3d(model, posed_vertices(model, params))
  return render.project(camera_for(params, image_size), points)[0]


def _landmarks_2d(model, vertices, camera, contour) -> jax.Array:
  """[T, 68, 2] projected landmarks, the jaw contour marched if `contour` is given."""
  predicted = render.project(camera, morphable.landmarks_3d(model, vertices))[0]
  if contour is None:
    return predicted
  candidates, sides = contour
  band_xy = render.project(camera, vertices[:, candidates.reshape(-1)])[0]
  marched = contour_lib.march(band_xy.reshape(band_xy.shape[0], *candidates.shape, 2), sides)
  return predicted.at[:, contour_lib.CONTOUR].set(marched)


def detector_landmarks(model, params, image_size) -> jax.Array:
  """[T, 68, 2] the landmarks as a 2D detector marks them (jaw contour on the silhouette
  of a turned head, `contour.py`): what the landmark term matches."""
  contour = tuple(jnp.asarray(a) for a in contour_lib.contour_candidates(model))
  return _landmarks_2d(model, posed_vertices(model, params), camera_for(params, image_size),
                       contour)


def fit_loss(params, targets: FitTargets, stage: jax.Array, model, topology, identity_params,
             contour=None, scale_direction=None, *, config: FitConfig,
             identity_fn: Optional[Callable] = None):
  """The weighted fitting loss and its terms.

  Args:
    params: see `init_params`. targets: `FitTargets`.
    stage: [2] gates (0 or 1) of the photometric and identity terms.
    model, topology: the face model and `render.make_topology(model.triangles)`.
    contour: (candidates [17, C], sides [17]) of `contour.contour_candidates`: the jaw
      landmarks slide to the silhouette; None pins them to their vertices.
    identity_params: parameters passed to `identity_fn`.
    scale_direction: [Ks] `morphable.scale_direction(model)`, for the scale prior
      (computed here if None: one more pass over the shape basis per call).
    config: weights; terms with weight 0 are skipped (no rendering if both the
      photometric and identity weights are 0).
    identity_fn: (identity_params, images [T, H, W, 3], landmarks [T, 68, 2]) ->
      embeddings [T, D]; None disables the identity term.
  Returns:
    (total, terms dict of scalars).
  """
  height, width = targets.images.shape[1:3]
  scale = width / 224.0  # landmark errors measured in 224-px units
  weights = jnp.ones(68).at[contour_lib.CONTOUR].set(config.contour_weight)
  camera = camera_for(params, (height, width))
  vertices = posed_vertices(model, params)
  predicted = _landmarks_2d(model, vertices, camera, contour)
  landmark_weight = config.landmark * (1.0 + stage[0] * (config.late_landmark_scale - 1.0))
  yaw = jax.lax.stop_gradient(params["rotation"][:, 1])
  frames = vertices.shape[0]
  shared = frames ** -config.multi_frame_evidence  # on the priors of the shared identity
  prior_scale = jnp.ones(frames)
  if config.landmark_noise_px:
    distance = jax.lax.stop_gradient(
        jnp.linalg.norm(predicted - targets.landmarks, axis=-1).mean(-1) / scale)
    factor = jnp.maximum(1.0, (distance / config.landmark_noise_px) ** 2)
    prior_scale = 1.0 + stage[0] * (factor - 1.0)
  shape_prior = shared * jnp.min(prior_scale) * (
      config.shape_prior + config.shape_prior_profile
      * jnp.min(jnp.abs(jnp.sin(yaw)) ** config.shape_prior_profile_power))
  terms = {
      "landmark": landmark_weight * landmark_losses.landmark_loss(
          predicted, targets.landmarks, weights=weights, scale=scale,
          robust=config.landmark_robust).mean(),
      "eye_closure": config.eye_closure * landmark_losses.eye_closure_loss(
          predicted, targets.landmarks, scale=scale).mean(),
      "shape_prior": shape_prior * regularization.coefficient_prior(params["shape"]),
      "expression_prior": config.expression_prior * jnp.mean(
          prior_scale * regularization.coefficient_prior(params["expression"])),
      "albedo_prior": shared * config.albedo_prior * regularization.coefficient_prior(
          params["albedo"]),
      "light_prior": config.light_prior * jnp.mean(params["light"][:, 1:] ** 2),
  }
  if config.scale_prior:
    if scale_direction is None:
      scale_direction = morphable.scale_direction(model)
    terms["scale_prior"] = (shared * config.scale_prior
                            * jnp.dot(params["shape"], scale_direction) ** 2)
  use_identity = bool(config.identity) and identity_fn is not None
  if config.photometric or use_identity:
    albedo = morphable.albedo(model, params["albedo"])
    # No edge antialiasing: landmarks place the silhouette, and it costs ~40% of a step.
    out = render.render(vertices, topology, camera,
                        albedo=jnp.broadcast_to(albedo, (frames,) + albedo.shape),
                        light=params["light"], edge_antialias=False)
    mask = targets.masks * out.mask
    terms["photometric"] = stage[0] * config.photometric * photometric.masked_photometric_loss(
        out.image, targets.images, mask, trim=config.photometric_trim).mean()
    if use_identity:
      composite = out.image * mask[..., None] + targets.images * (1 - mask[..., None])
      rendered_id = identity_fn(identity_params, composite, targets.landmarks)
      terms["identity"] = stage[1] * config.identity * identity_losses.identity_loss(
          rendered_id, targets.identity).mean()
  return sum(terms.values()), terms


@functools.partial(jax.jit, static_argnames=("config", "identity_fn"))
def fit_step(params, opt_state, targets, stage, model, topology, identity_params, contour=None,
             scale_direction=None, *, config: FitConfig, identity_fn=None):
  """One Adam step on `fit_loss`; compiled once per shapes and config, then reused."""
  (_, terms), grads = jax.value_and_grad(fit_loss, has_aux=True)(
      params, targets, stage, model, topology, identity_params, contour, scale_direction,
      config=config, identity_fn=identity_fn)
  updates, opt_state = optax.adam(config.learning_rate).update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, terms


@flax.struct.dataclass
class FitResult:
  """Fitted parameters with per-step loss terms and timings."""
  params: dict
  history: dict
  seconds: float = flax.struct.field(pytree_node=False, default=0.0)
  compile_seconds: float = flax.struct.field(pytree_node=False, default=0.0)


def fit(model, targets: FitTargets, *, config: FitConfig = FitConfig(),
        identity_fn: Optional[Callable] = None, identity_params=None, topology=None,
        progress: Optional[Callable[[int, dict], None]] = None,
        init: Optional[dict] = None) -> FitResult:
  """Fits shape, expression, albedo, pose and light to T aligned frames.

  Args:
    model: the morphable model (the front variant is faster).
    targets: `FitTargets` (T = 1 for a single image).
    config: schedule and weights.
    identity_fn, identity_params: see `fit_loss` (pass the same function object for
      every fit so the compiled step is reused).
    topology: `render.make_topology(model.triangles)` (computed if None).
    progress: called as progress(step, terms) every 10 steps.
    init: starting parameters in `init_params`' layout (e.g. a trained encoder's
      estimate, `jaxface.train.inference.fit_init`); default `init_params`.
  Returns:
    `FitResult`; `compile_seconds` is the time of each stage's first step. With
    `config.steps == 0` the params are the start and the history is empty.
  """
  topology = topology or render.make_topology(model.triangles)
  params = init if init is not None else init_params(
      model, np.asarray(targets.landmarks), np.asarray(targets.images), np.asarray(targets.masks))
  opt_state = optax.adam(config.learning_rate).init(params)
  contour = (tuple(jnp.asarray(a) for a in contour_lib.contour_candidates(model))
             if config.contour_marching else None)
  scale_direction = morphable.scale_direction(model) if config.scale_prior else None
  landmarks_only = dataclasses.replace(config, photometric=0.0, identity=0.0)
  first_photometric = int(config.stages[0] * config.steps)
  first_identity = int(config.stages[1] * config.steps)
  history, compile_seconds, start = [], 0.0, time.perf_counter()
  for i in range(config.steps):
    stage = jnp.array([float(i >= first_photometric), float(i >= first_identity)])
    tic = time.perf_counter()
    params, opt_state, terms = fit_step(
        params, opt_state, targets, stage, model, topology, identity_params, contour,
        scale_direction,
        config=landmarks_only if i < first_photometric else config,
        identity_fn=None if i < first_photometric else identity_fn)
    if i in (0, first_photometric):  # each stage's first call may compile
      jax.block_until_ready(params)
      compile_seconds += time.perf_counter() - tic
    history.append(terms)
    if progress is not None and (i % 10 == 0 or i == config.steps - 1):
      progress(i, {k: float(v) for k, v in terms.items()})
  jax.block_until_ready(params)
  stacked = {k: np.array([float(h.get(k, 0.0)) for h in history])
             for k in (history[-1] if history else ())}
  return FitResult(params=params, history=stacked,
                   seconds=time.perf_counter() - start - compile_seconds,
                   compile_seconds=compile_seconds)
