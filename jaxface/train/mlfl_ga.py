"""MLFL-GA coarse-stage training (seed 001 §2.3): multi-level feature losses.

The encoder E_c (`nets.MLFLGAEncoder`: prior-information input, ResNet + RGA + FPN)
sees `nets.prior_input(image, landmarks, mask)` and regresses shape β, expression ψ,
albedo α (the face model's bases: the BFM-sim front model by default, not FLAME, so no
jaw: `predict_jaw=False`), head pose (Euler radians), the orthographic camera (s, tx, ty)
of v = s·P(R M) + t and a 9-band SH light. The render is `render.render` with
`render.orthographic_camera` and SH (Lambertian) shading of the model's albedo.

L_coarse = L_low + L_mid + L_deep + L_reg (eq. 10), each term weighted by
`config.loss_weights` (0 skips it, computation included):
- L_low (§2.3.1):
  - photometric: pixel MSE (eq. 12) `losses.masked_photometric_loss(norm="l2")` over
    the render's coverage (stop_gradient: the area normaliser must not reward shrinking
    the face). Eq. 12 averages over all C·H·W pixels; pixels the face does not cover
    carry no information about it (DECA composites the render on the photo, making them
    0), so the mean runs over the covered pixels. Occluders inside the face count here.
  - mask: face-mask consistency (eq. 11) `losses.mask_consistency_loss` of the render
    (on its black background) against the photo over the batch's face mask ρ.
- L_mid (§2.3.2):
  - landmark: 68-landmark L1 (eq. 13) `losses.landmark_loss(norm="l1")` in normalised
    image units (pixels / (W/2), DECA's convention), the mean over points (not the sum).
  - eye_closure: eyelid offsets (eq. 14) `losses.eye_closure_loss`, same units.
- L_deep (§2.3.3):
  - ssim: structural consistency (eq. 15) `losses.ssim_loss` (11-px Gaussian windows)
    over face mask × coverage.
  - identity: 1 - cos (eq. 16) of the recognition net's embeddings of the photo and the
    render pasted into it (as GAN-3DMM's; the photo's embedding is a constant).
  - shape_consistency (eq. 17, "L_sc"): with T ≥ 2 frames of one person per sample, the
    shape (and, with `config.loss.consistency_albedo`, albedo) codes are rolled by one
    frame within each sample (`roll_frames`: frame t gets frame t+1's identity), the
    faces re-rendered with each frame's own expression, pose, camera and light, and
    photometric + landmark terms (definitions above) applied to the re-renders. DECA
    applies its whole coarse loss; the photometric and landmark terms carry most of it.
- L_reg (eq. 18): shape_reg ‖β‖², expression_reg ‖ψ‖², albedo_reg ‖α‖² (sums of squares).
- supervised (optional, synthetic data): as `jaxface.train.gan3dmm.supervised_loss`.

Metrics: unweighted "loss/<term>", weighted "loss/total", grad/param norms.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxface import losses, morphable, nets, render
from jaxface.morphable import coefficients as coefficients_lib
from jaxface.train import gan3dmm as common
from jaxface.train import parallel
from jaxface.train import state as state_lib

ENCODER = "encoder"
TERMS = ("photometric", "mask", "landmark", "eye_closure", "ssim", "identity",
         "shape_consistency", "shape_reg", "expression_reg", "albedo_reg", "supervised")


def layout(config: Any, model: morphable.MorphableModel | None = None
           ) -> coefficients_lib.CoefficientLayout:
  """The coefficient layout of the encoder's outputs (orthographic camera, SH light)."""
  model = common.load_model(config.morphable.model) if model is None else model
  return coefficients_lib.layout_for(model, "orthographic")


def encoder_for(config: Any, model: morphable.MorphableModel, *,
                axis_name: str | None = None) -> nets.MLFLGAEncoder:
  """The coarse encoder from `config.model`, code sizes from the face model."""
  m = config.model
  return nets.MLFLGAEncoder(
      num_shape=model.num_shape, num_expression=model.num_expression,
      num_albedo=model.num_albedo, prior_channels=nets.PRIOR_CHANNELS[m.landmark_channels],
      predict_jaw=False, backbone=m.backbone, norm=m.norm, axis_name=axis_name,
      rga_stages=tuple(m.rga_stages), fpn_width=m.fpn_width, hidden=m.hidden,
      head_init_scale=m.head_init_scale, camera_scale_init=m.camera_scale_init,
      light_init=m.light_init, landmark_vector=m.get("landmark_vector", False))


def encoder_input(config: Any, images: jax.Array, landmarks: jax.Array,
                  mask: jax.Array) -> jax.Array:
  """[N, H, W, 3 + K] prior-augmented input; heatmap σ scales with the crop (σ at 224)."""
  sigma = config.model.heatmap_sigma * images.shape[2] / 224.0
  return nets.prior_input(images, landmarks, mask,
                          landmark_channels=config.model.landmark_channels, sigma=sigma)


def to_blocks(codes: dict) -> dict:
  """Encoder outputs -> coefficient blocks of `layout` (orthographic names).

  pose -> rotation [N, 3] Euler radians; camera (s, tx, ty) -> scale [N, 1] and
  translation [N, 2] (normalised image units); light [N, 9, 3].
  """
  return {"shape": codes["shape"], "expression": codes["expression"],
          "albedo": codes["albedo"], "rotation": codes["pose"],
          "translation": codes["camera"][:, 1:], "scale": codes["camera"][:, :1],
          "light": codes["light"]}


def camera(config: Any, blocks: dict, image_size: tuple[int, int]) -> render.Camera:
  """The orthographic camera of `to_blocks` output (v = s·P(R M) + t)."""
  del config
  return render.orthographic_camera(render.euler_to_matrix(blocks["rotation"]),
                                    blocks["translation"], blocks["scale"][:, 0],
                                    image_size=image_size)


def roll_frames(x: jax.Array, frames: int, shift: int = 1) -> jax.Array:
  """Rolls per-image codes across the T frames of each sample (shape consistency).

  Args:
    x: [N, ...] with N = B·T, images ordered sample-major (frame t of sample b at
      b·T + t, as `merge_frames` flattens them).
    frames: T.
    shift: frame t receives frame (t + shift) mod T's value.
  Returns:
    [N, ...]: out[b·T + t] = x[b·T + (t + shift) % T].
  """
  y = x.reshape((-1, frames) + x.shape[1:])
  return jnp.roll(y, -shift, axis=1).reshape(x.shape)


def init_state(config: Any, rng: jax.Array) -> state_lib.TrainState:
  """Step-0 state: "encoder" params + batch_stats, Adam (`common.learning_rate`)."""
  model = common.load_model(config.morphable.model)
  encoder = encoder_for(config, model)
  size = config.input.image_size
  channels = 3 + nets.PRIOR_CHANNELS[config.model.landmark_channels]
  variables = encoder.init(rng, jnp.zeros((1, size, size, channels), jnp.float32), train=False,
                           landmarks=jnp.ones((1, 68, 2), jnp.float32))
  return state_lib.TrainState.create(
      params={ENCODER: variables["params"]},
      batch_stats={ENCODER: variables.get("batch_stats", {})},
      tx={ENCODER: optax.adam(common.learning_rate(config))}, rng=rng)


def make_train_step(config: Any, model: morphable.MorphableModel | None = None,
                    topology: render.Topology | None = None):
  """The per-device MLFL-GA coarse step (module docstring).

  Args:
    config: a `configs/mlfl_ga.py` config (read once, here).
    model: the face model (default `config.morphable.model`).
    topology: `render.make_topology(model.triangles)` (built if None).
  Returns:
    `step(state, batch, rng) -> (state, metrics)`, pure, per device, pmean over "data".
  Raises:
    ValueError (when traced): shape_consistency on with fewer than 2 frames.
  """
  model = common.load_model(config.morphable.model) if model is None else model
  topology = render.make_topology(model.triangles) if topology is None else topology
  encoder = encoder_for(config, model, axis_name=parallel.DATA_AXIS)
  weights = common.active_weights(config, TERMS)
  roll_albedo = config.loss.get("consistency_albedo", True)
  render_options = dict(edge_antialias=config.render.edge_antialias,
                        on_overflow=config.render.on_overflow)
  identity_params, embed = (common.identity_embedder(config) if "identity" in weights
                            else (None, None))
  image_terms = {"photometric", "mask", "ssim", "identity"}
  supervised_blocks = tuple(config.loss.get("supervised_blocks", common.SUPERVISED_BLOCKS))

  def draw(blocks, image_size, shape=None, albedo=None):
    shape = blocks["shape"] if shape is None else shape
    albedo = blocks["albedo"] if albedo is None else albedo
    vertices = morphable.decode(model, shape, blocks["expression"])
    cam = camera(config, blocks, image_size)
    lmk = render.project(cam, morphable.landmarks_3d(model, vertices))[0]
    return vertices, cam, albedo, lmk

  def loss_fn(params, batch_stats, batch, images, landmarks, face_mask):
    n, height, width = images.shape[:3]
    frames = batch["image"].shape[1]
    codes, updates = encoder.apply({"params": params, "batch_stats": batch_stats},
                                   encoder_input(config, images, landmarks, face_mask),
                                   train=True, landmarks=landmarks, mutable=["batch_stats"])
    blocks = to_blocks(codes)
    vertices, cam, albedo, predicted = draw(blocks, (height, width))
    unit = width / 2.0  # pixels per normalised image unit
    terms = {}

    def photometric(out):
      return losses.masked_photometric_loss(out.image, images, jax.lax.stop_gradient(out.mask),
                                            norm="l2")

    if image_terms & set(weights):
      out = render.render(vertices, topology, cam,
                          albedo=morphable.albedo(model, albedo), light=blocks["light"],
                          **render_options)
      coverage = jax.lax.stop_gradient(out.mask)
      if "photometric" in weights:
        terms["photometric"] = photometric(out)
      if "mask" in weights:
        terms["mask"] = losses.mask_consistency_loss(out.image, images, face_mask)
      if "ssim" in weights:
        terms["ssim"] = losses.ssim_loss(out.image, images, face_mask * coverage)
      if "identity" in weights:
        terms["identity"] = common.identity_term(embed, identity_params, out.image, out.mask,
                                                 images, landmarks, face_mask)
    if "landmark" in weights:
      terms["landmark"] = losses.landmark_loss(predicted, landmarks, norm="l1", scale=unit)
    if "eye_closure" in weights:
      terms["eye_closure"] = losses.eye_closure_loss(predicted, landmarks, scale=unit)
    if "shape_consistency" in weights:
      if frames < 2:
        raise ValueError("loss_weights.shape_consistency needs input.frames >= 2 (frames "
                         f"of one person to swap identities between); got {frames}")
      shape = roll_frames(blocks["shape"], frames)
      rolled_albedo = roll_frames(blocks["albedo"], frames) if roll_albedo else None
      vertices_r, camera_r, albedo_r, predicted_r = draw(blocks, (height, width), shape,
                                                         rolled_albedo)
      out_r = render.render(vertices_r, topology, camera_r,
                            albedo=morphable.albedo(model, albedo_r), light=blocks["light"],
                            **render_options)
      terms["shape_consistency"] = photometric(out_r) + losses.landmark_loss(
          predicted_r, landmarks, norm="l1", scale=unit)
    for name, block in (("shape_reg", "shape"), ("expression_reg", "expression"),
                        ("albedo_reg", "albedo")):
      if name in weights:
        terms[name] = jnp.sum(jnp.square(blocks[block]), -1)
    if "supervised" in weights:
      terms["supervised"] = common.supervised_loss(blocks, batch, frames, supervised_blocks)
    del n
    total = common.weighted_total({k: jnp.mean(v) for k, v in terms.items()}, weights)
    return total, (terms, updates["batch_stats"])

  def train_step(state, batch, rng):
    del rng  # deterministic step
    images, landmarks, face_mask = common.merge_frames(batch)
    (total, (terms, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params[ENCODER], state.batch_stats[ENCODER], batch, images, landmarks,
        face_mask)
    grads = jax.lax.pmean(grads, parallel.DATA_AXIS)
    state = state_lib.apply_gradients(state, ENCODER, grads)
    state = state.replace(batch_stats={**state.batch_stats, ENCODER: stats})
    return state, common.finish_metrics(terms, total, {}, {ENCODER: grads}, state)

  return train_step


def predict(config: Any, state: state_lib.TrainState, images: jax.Array,
            landmarks: jax.Array, mask: jax.Array) -> dict:
  """Coarse codes of crops (inference: running BatchNorm statistics).

  Args:
    config: the training config.
    state: a `TrainState` (or anything with `.params` / `.batch_stats` dicts).
    images: [N, H, W, 3] in [0, 1] at `config.input.image_size`.
    landmarks: [N, 68, 2] pixels. mask: [N, H, W] face mask.
  Returns:
    {block: [N, *shape]} of `layout(config)`: shape, expression, albedo, rotation
    (Euler radians), translation [N, 2] and scale [N, 1] (orthographic), light [N, 9, 3].
  """
  model = common.load_model(config.morphable.model)
  codes = encoder_for(config, model).apply(
      {"params": state.params[ENCODER], "batch_stats": state.batch_stats[ENCODER]},
      encoder_input(config, images, landmarks, mask), train=False, landmarks=landmarks)
  return to_blocks(codes)
