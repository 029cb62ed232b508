"""GAN-3DMM training (seed 000): a coefficient regressor trained against a prior discriminator.

The "generator" G (`nets.Gan3dmmGenerator`, ResNet-50 -> Dense) regresses the flat
coefficient vector of `morphable.coefficients.layout_for(model, "perspective")` from a
crop. The discriminator D (`nets.CoefficientDiscriminator`, 3-layer MLP) tells samples of
the model prior N(0, I) from the regressed shape | expression | albedo blocks
(`coefficients.normalised`). One train step (alternating updates, paper §1.2.1):

1. D update: real = `sample_prior` (fresh N(0, I) samples, different on each device),
   fake = stop_gradient(normalised(G(x))), loss `losses.discriminator_loss(kind=
   config.loss.gan_kind)`.
2. G update against the UPDATED D:
     L = w_gan·L_GAN + w_identity·L_id + w_skin·L_skin
         (+ w_landmark·L_lmk + w_prior·L_prior + w_supervised·L_sup),
   each weight from `config.loss_weights`; a zero weight skips the term entirely (the
   identity net's forward pass, the render when no image term is on).

G runs forward once per step: its output is shared by both updates and its gradient
is pulled back through one `jax.vjp`.

Terms (per example, averaged over the B·T images of the device, then over devices):
- gan: `losses.generator_loss(D(normalised(c)), kind=config.loss.gan_kind)` (eq. 2).
- identity: `losses.identity_loss` (1 - cos, eq. 3) between the recognition net's
  embeddings of the photo and of the render pasted into the photo over the face
  region (both chips aligned with the photo's 68 landmarks, as `jaxface.fit` does); the
  photo's embedding is a constant (stop_gradient).
- skin: `losses.skin_loss` (eq. 4), the render pasted into the photo by the face region.
  The paper builds that region from the 68 landmarks; here it is the batch's `mask`
  (the input pipeline's visible-face mask, which is the same region minus occluders).
- landmark (optional, off by default): `losses.landmark_loss` (norm `config.loss.
  landmark_norm`, "l2") of the projected model landmarks, in 224-pixel units (as
  `jaxface.fit`).
- prior (optional): `losses.coefficient_prior` of the normalised blocks (mean squared
  coefficient).
- supervised (optional, synthetic data): mean squared error of the shape, expression
  and albedo blocks to the batch's ground truth (`shape [B, Ks]`, `expression [B, T,
  Ke]`, `albedo [B, Ka]`, whichever are present). Camera and light are not supervised:
  augmentation moves the image away from the stored camera (see the input pipeline).

Choices and deviations (DESIGN.md: write them down):
- Camera: the fitter's perspective camera (`jaxface.fit.fitting`: f = FOCAL_AT_224 px
  at 224, scaled with the crop, 1 m away; translation in 10 mm units).
- Light: the paper shades with Phong; the house's coefficient layout has a 9-band SH
  light only, so G regresses SH light (Lambertian) instead. G's raw output is offset by
  an ambient SH light of irradiance `config.model.light_init` (and zeros elsewhere),
  so the initial render (G's head starts ≈ 0) is the lit mean face, not black; the
  offset is part of G's output, so the flat vector is the coefficients themselves.
- The metrics log the UNWEIGHTED value of each term ("loss/<name>"), "loss/total" the
  weighted generator objective, "loss/discriminator" D's loss, "gan/real_prob" and
  "gan/fake_prob" D's mean sigmoid outputs, and grad/param norms of both networks.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxface import losses, morphable, nets, render
from jaxface.fit import fitting
from jaxface.morphable import coefficients as coefficients_lib
from jaxface.train import parallel
from jaxface.train import state as state_lib

GENERATOR, DISCRIMINATOR = "generator", "discriminator"
TERMS = ("gan", "identity", "skin", "landmark", "prior", "supervised")
SUPERVISED_BLOCKS = ("shape", "expression", "albedo")


# ------------------------------------------------------------------------------------
# Helpers shared with the other methods' steps (`jaxface.train.mlfl_ga`).


@functools.lru_cache(maxsize=4)
def load_model(spec: str) -> morphable.MorphableModel:
  """The face model of a config's `morphable.model` spec (cached per spec).

  Built eagerly even when first called inside a trace (`jax.jit(init_state)`), so the
  cache never holds tracers.
  """
  with jax.ensure_compile_time_eval():
    return morphable.load_model(spec)


def active_weights(config: Any, names: tuple[str, ...]) -> dict[str, float]:
  """{term: weight} of the terms in `names` with a non-zero `config.loss_weights` entry.

  Raises:
    ValueError: `config.loss_weights` names a term this method does not know.
  """
  weights = dict(config.loss_weights)
  unknown = sorted(set(weights) - set(names))
  if unknown:
    raise ValueError(f"unknown loss_weights {unknown} for method {config.method!r}; "
                     f"known terms: {list(names)}")
  return {name: float(weights[name]) for name in names if weights.get(name, 0.0)}


def learning_rate(config: Any) -> optax.ScalarOrSchedule:
  """Adam's step size: `train.learning_rate`, constant, or with `train.schedule="cosine"`
  decayed to 0 over `train.num_steps` (the optimiser's own step count drives it, so a
  resumed run continues the schedule exactly).

  Raises:
    ValueError: an unknown schedule.
  """
  lr, schedule = config.train.learning_rate, config.train.get("schedule", "constant")
  if schedule == "constant":
    return lr
  if schedule == "cosine":
    return optax.cosine_decay_schedule(lr, config.train.num_steps)
  raise ValueError(f"train.schedule must be 'constant' or 'cosine'; got {schedule!r}")


def weighted_total(terms: Mapping[str, jax.Array], weights: Mapping[str, float]) -> jax.Array:
  """[] Σ weights[name]·terms[name] over the computed terms."""
  return sum((weights[name] * value for name, value in terms.items()),
             jnp.zeros((), jnp.float32))


def merge_frames(batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The batch's frames as one network batch of N = B·T images.

  Args:
    batch: DESIGN.md §2 batch: image [B, T, H, W, 3], landmarks [B, T, 68, 2], mask
      [B, T, H, W].
  Returns:
    (images [N, H, W, 3] in [0, 1], landmarks [N, 68, 2] pixels, mask [N, H, W]).
  """
  image = batch["image"]
  if image.ndim != 5 or image.shape[-1] != 3:
    raise ValueError(f"batch['image'] must be [B, T, H, W, 3]; got {image.shape}")
  b, t, h, w = image.shape[:4]
  n = b * t
  return (image.reshape(n, h, w, 3).astype(jnp.float32),
          batch["landmarks"].reshape(n, 68, 2).astype(jnp.float32),
          batch["mask"].reshape(n, h, w).astype(jnp.float32))


def supervised_loss(predicted: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
                    frames: int, blocks: tuple[str, ...] = SUPERVISED_BLOCKS) -> jax.Array:
  """[N] mean squared error of shape/expression/albedo to the batch's ground truth.

  Args:
    predicted: {"shape" [N, Ks], "expression" [N, Ke], "albedo" [N, Ka]}, N = B·T.
    batch: holds some of `shape [B, Ks]`, `expression [B, T, Ke]`, `albedo [B, Ka]`.
    frames: T.
    blocks: which of SUPERVISED_BLOCKS to supervise (`config.loss.supervised_blocks`).
  Returns:
    [N] the mean over all supervised coefficients of each image.
  Raises:
    ValueError: the batch holds none of them, or sizes differ from the model's.
  """
  errors = []
  unknown = sorted(set(blocks) - set(SUPERVISED_BLOCKS))
  if unknown:
    raise ValueError(f"loss.supervised_blocks: unknown {unknown}; choose from {SUPERVISED_BLOCKS}")
  for name in blocks:
    if name not in batch:
      continue
    target = batch[name].astype(jnp.float32)
    if name != "expression":  # per identity: the same for the T frames
      target = jnp.broadcast_to(target[:, None], target.shape[:1] + (frames,) + target.shape[1:])
    target = target.reshape((-1,) + target.shape[2:])
    if target.shape != predicted[name].shape:
      raise ValueError(f"ground truth {name!r} has shape {target.shape} per image but the "
                       f"model's block is {predicted[name].shape}: the data were made "
                       "with another face model")
    errors.append(jnp.square(predicted[name] - target))
  if not errors:
    raise ValueError("loss_weights.supervised > 0 needs ground truth in the batch "
                     f"(some of {SUPERVISED_BLOCKS}; input.ground_truth=True)")
  return jnp.mean(jnp.concatenate(errors, -1), -1)


def identity_embedder(config: Any) -> tuple[Any, Callable[..., jax.Array]]:
  """(params, embed(params, images [N,H,W,3], landmarks [N,68,2]) -> [N, D]) of the
  recognition net named by `config.loss.identity_net` (default dlib's ResNet)."""
  net = nets.RECOGNITION_NETS[config.loss.get("identity_net", "dlib_resnet_v1")]
  params = net.load_params()

  def embed(params, images, landmarks):
    return net.embed(params, net.chip(images, landmarks))

  return params, embed


def identity_term(embed, identity_params, rendered, render_mask, images, landmarks, face_mask):
  """[N] 1 - cos between the photo's and the pasted render's embeddings.

  The render is pasted into the photo over face mask × coverage (as `jaxface.fit`), and
  both are chipped with the photo's landmarks; the photo's embedding is a constant.
  """
  w = (face_mask * render_mask)[..., None]
  composite = rendered * w + images * (1.0 - w)
  target = jax.lax.stop_gradient(embed(identity_params, images, landmarks))
  return losses.identity_loss(embed(identity_params, composite, landmarks), target)


def finish_metrics(terms: Mapping[str, jax.Array], total: jax.Array,
                   extra: Mapping[str, jax.Array], grads: Mapping[str, Any],
                   state: state_lib.TrainState) -> dict[str, jax.Array]:
  """All metrics of a step, pmean'ed over "data" (the step runs with check_vma=False).

  Returns:
    {"loss/<term>": unweighted device-mean value, "loss/total", **extra,
     "grad_norm/<net>" (of the already averaged gradients), "param_norm/<net>"}.
  """
  metrics = {f"loss/{name}": jnp.mean(value) for name, value in terms.items()}
  metrics["loss/total"] = total
  metrics.update(extra)
  metrics = jax.lax.pmean(metrics, parallel.DATA_AXIS)
  return {**metrics, **state_lib.grad_norms(grads), **state_lib.param_norms(state)}


# ------------------------------------------------------------------------------------
# GAN-3DMM.


def layout(config: Any, model: morphable.MorphableModel | None = None
           ) -> coefficients_lib.CoefficientLayout:
  """The generator's flat coefficient layout (perspective camera, SH light)."""
  model = load_model(config.morphable.model) if model is None else model
  return coefficients_lib.layout_for(model, "perspective")


def camera(config: Any, blocks: dict, image_size: tuple[int, int]) -> render.Camera:
  """The perspective camera of regressed blocks (the fitter's: `fitting.camera_for`)."""
  del config
  return fitting.camera_for(blocks, image_size)


def networks(config: Any, num_coefficients: int, *, axis_name: str | None = None):
  """(generator, discriminator) modules from `config.model`."""
  m = config.model
  generator = nets.Gan3dmmGenerator(
      num_coefficients=num_coefficients, backbone=m.backbone, norm=m.norm,
      axis_name=axis_name, head_init_scale=m.head_init_scale)
  discriminator = nets.CoefficientDiscriminator(hidden=tuple(m.discriminator_hidden),
                                                negative_slope=m.discriminator_slope)
  return generator, discriminator


def output_offset(config: Any, lay: coefficients_lib.CoefficientLayout) -> jax.Array:
  """[layout.size] added to G's raw output: ambient SH light, zeros elsewhere."""
  blocks = {name: jnp.zeros(shape, jnp.float32) for name, shape in lay.blocks}
  blocks["light"] = render.ambient_sh(config.model.light_init).astype(jnp.float32)
  return coefficients_lib.flatten(lay, blocks)


def init_state(config: Any, rng: jax.Array) -> state_lib.TrainState:
  """Step-0 state: "generator" (params + batch_stats) and "discriminator", Adam each.

  Args:
    config: a `configs/gan3dmm.py` config.
    rng: a PRNG key; the run's base key is stored in the state.
  Returns:
    The `TrainState` (deterministic in `rng`).
  """
  lay = layout(config)
  generator, discriminator = networks(config, lay.size)
  g_rng, d_rng = jax.random.split(rng)
  size = config.input.image_size
  g_vars = generator.init(g_rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)
  d_vars = discriminator.init(d_rng, jnp.zeros((1, lay.size_of()), jnp.float32))
  lr = learning_rate(config)
  return state_lib.TrainState.create(
      params={GENERATOR: g_vars["params"], DISCRIMINATOR: d_vars["params"]},
      batch_stats={GENERATOR: g_vars.get("batch_stats", {})},
      tx={GENERATOR: optax.adam(lr), DISCRIMINATOR: optax.adam(lr)}, rng=rng)


def make_train_step(config: Any, model: morphable.MorphableModel | None = None,
                    topology: render.Topology | None = None):
  """The per-device GAN-3DMM step (module docstring).

  Args:
    config: a `configs/gan3dmm.py` config (read once, here).
    model: the face model (default `config.morphable.model`).
    topology: `render.make_topology(model.triangles)` (built if None).
  Returns:
    `step(state, batch, rng) -> (state, metrics)`: pure, per device, pmean over "data";
    batch per DESIGN.md §2 (frames are flattened into the network batch).
  """
  model = load_model(config.morphable.model) if model is None else model
  topology = render.make_topology(model.triangles) if topology is None else topology
  lay = layout(config, model)
  generator, discriminator = networks(config, lay.size, axis_name=parallel.DATA_AXIS)
  weights = active_weights(config, TERMS)
  kind = config.loss.gan_kind
  landmark_norm = config.loss.get("landmark_norm", "l2")
  render_options = dict(edge_antialias=config.render.edge_antialias,
                        on_overflow=config.render.on_overflow)
  identity_params, embed = (identity_embedder(config) if "identity" in weights
                            else (None, None))
  offset = output_offset(config, lay)
  supervised_blocks = tuple(config.loss.get("supervised_blocks", SUPERVISED_BLOCKS))
  needs_render = bool({"identity", "skin"} & set(weights))

  def generator_forward(params, batch_stats, images):
    coeffs, updates = generator.apply({"params": params, "batch_stats": batch_stats}, images,
                                      train=True, mutable=["batch_stats"])
    return coeffs + offset, updates["batch_stats"]

  def generator_terms(coeffs, d_params, batch, images, landmarks, face_mask):
    """Per-example terms of the generator objective as a function of its output."""
    n, height, width = images.shape[:3]
    blocks = coefficients_lib.unflatten(lay, coeffs)
    terms = {}
    if "gan" in weights:
      logits = discriminator.apply({"params": d_params}, coefficients_lib.normalised(lay, blocks))
      terms["gan"] = losses.generator_loss(logits, kind=kind)
    if "prior" in weights:
      terms["prior"] = losses.coefficient_prior(coefficients_lib.normalised(lay, blocks))
    if "supervised" in weights:
      terms["supervised"] = supervised_loss(blocks, batch, n // batch["image"].shape[0],
                                            supervised_blocks)
    if needs_render or "landmark" in weights:
      vertices = morphable.decode(model, blocks["shape"], blocks["expression"])
      cam = camera(config, blocks, (height, width))
    if "landmark" in weights:
      predicted = render.project(cam, morphable.landmarks_3d(model, vertices))[0]
      terms["landmark"] = losses.landmark_loss(predicted, landmarks, norm=landmark_norm,
                                               scale=width / 224.0)
    if needs_render:
      out = render.render(vertices, topology, cam,
                          albedo=morphable.albedo(model, blocks["albedo"]),
                          light=blocks["light"], **render_options)
      if "skin" in weights:
        terms["skin"] = losses.skin_loss(out.image, images, face_mask, out.mask)
      if "identity" in weights:
        terms["identity"] = identity_term(embed, identity_params, out.image, out.mask, images,
                                          landmarks, face_mask)
    total = weighted_total({k: jnp.mean(v) for k, v in terms.items()}, weights)
    return total, terms

  def train_step(state, batch, rng):
    images, landmarks, face_mask = merge_frames(batch)
    g_params = state.params[GENERATOR]
    coeffs, g_pullback, g_stats = jax.vjp(
        lambda p: generator_forward(p, state.batch_stats[GENERATOR], images), g_params,
        has_aux=True)

    # 1. Discriminator: prior samples (different noise per device) vs regressed codes.
    real = coefficients_lib.sample_prior(lay, parallel.device_rng(rng), (coeffs.shape[0],))
    fake = jax.lax.stop_gradient(coefficients_lib.normalised(lay, coeffs))

    def d_loss_fn(d_params):
      real_logits = discriminator.apply({"params": d_params}, real)
      fake_logits = discriminator.apply({"params": d_params}, fake)
      loss = jnp.mean(losses.discriminator_loss(real_logits, fake_logits, kind=kind))
      return loss, (jax.nn.sigmoid(real_logits).mean(), jax.nn.sigmoid(fake_logits).mean())

    (d_loss, (real_prob, fake_prob)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
        state.params[DISCRIMINATOR])
    d_grads = jax.lax.pmean(d_grads, parallel.DATA_AXIS)
    state = state_lib.apply_gradients(state, DISCRIMINATOR, d_grads)

    # 2. Generator, against the updated discriminator.
    (total, terms), coeff_grads = jax.value_and_grad(generator_terms, has_aux=True)(
        coeffs, state.params[DISCRIMINATOR], batch, images, landmarks, face_mask)
    (g_grads,) = g_pullback(coeff_grads)
    g_grads = jax.lax.pmean(g_grads, parallel.DATA_AXIS)
    state = state_lib.apply_gradients(state, GENERATOR, g_grads)
    state = state.replace(batch_stats={**state.batch_stats, GENERATOR: g_stats})
    extra = {"loss/discriminator": d_loss, "gan/real_prob": real_prob,
             "gan/fake_prob": fake_prob}
    metrics = finish_metrics(terms, total, extra,
                             {GENERATOR: g_grads, DISCRIMINATOR: d_grads}, state)
    return state, metrics

  return train_step


def predict(config: Any, state: state_lib.TrainState, images: jax.Array,
            landmarks: jax.Array | None = None, mask: jax.Array | None = None) -> dict:
  """Regresses coefficients (inference: running BatchNorm statistics).

  Args:
    config: the training config.
    state: a `TrainState` (or anything with `.params` / `.batch_stats` dicts).
    images: [N, H, W, 3] crops in [0, 1] at `config.input.image_size`.
    landmarks, mask: unused (the generator sees the image only).
  Returns:
    {block: [N, *shape]} of `layout(config)` (shape, expression, albedo, rotation,
    translation in 10 mm units, light [N, 9, 3]).
  """
  del landmarks, mask
  lay = layout(config)
  generator, _ = networks(config, lay.size)
  raw = generator.apply({"params": state.params[GENERATOR],
                         "batch_stats": state.batch_stats[GENERATOR]}, images, train=False)
  return coefficients_lib.unflatten(lay, raw + output_offset(config, lay))
