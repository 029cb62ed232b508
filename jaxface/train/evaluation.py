"""What training shows besides its losses: held-out shape error and image summaries.

Both are method-independent: a method supplies `predict` (crops -> coefficient blocks)
and `camera` (blocks -> render.Camera), see `jaxface.train.methods`.

- `make_eval_fn(config, method, batches)` -> `eval_fn(state) -> {name: float}`: the
  NoW-style error (`jaxface.eval.now_distances`, non-metrical, the protocol of
  `jaxface evaluate --protocol synthetic`) of each image's predicted NEUTRAL mesh
  (predicted shape, zero expression) against the ground-truth neutral mesh (the
  generating shape plus the out-of-span detail), and the 2D landmark NME of the
  projected model landmarks against the stored 68 landmarks (normalised by
  sqrt(w·h) of the ground-truth landmark box, as `jaxface.eval.aflw2000.nme`), beside
  the same figures for the MEAN FACE (zero shape; for landmarks, zero coefficients:
  frontal, at the fitter's default placement in the image, which is where the
  synthetic camera centres faces before its jitter). The baselines are computed once.
- `make_image_fn(config, method)` -> `image_fn(state, host_batch)`: a strip per image,
  input | render | overlay (the render over the input, predicted landmarks in green,
  ground-truth ones in red).

The held-out batches come from the composition root (`jaxface train` reads the split
`config.eval.split` with `data_pipelines`); this module never imports tf.data.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import morphable, render
from jaxface.eval import aflw2000, mesh_files, now
from jaxface.fit import fitting
from jaxface.train import gan3dmm as common

Batch = Mapping[str, np.ndarray]


def _images_of(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(images [N,H,W,3], landmarks [N,68,2], mask [N,H,W]) numpy, N = B·T."""
  return tuple(np.asarray(x) for x in common.merge_frames(batch))


def _neutral_now_landmarks(model: morphable.MorphableModel, vertices: np.ndarray) -> np.ndarray:
  """[7, 3] NoW landmarks of a neutral mesh [V, 3] (the model's 68 landmark vertices)."""
  lmk68 = np.asarray(morphable.landmarks_3d(model, jnp.asarray(vertices, jnp.float32)))
  return mesh_files.now_landmarks(lmk68)


def ground_truth_meshes(model: morphable.MorphableModel, batches: Sequence[Batch]
                        ) -> list[np.ndarray]:
  """[V, 3] ground-truth neutral mesh (mm) per image of the batches, frames repeated.

  Raises:
    ValueError: a batch lacks `shape`/`detail` (input.ground_truth and input.detail
      must be on), or the data were made with another face model.
  """
  meshes = []
  for batch in batches:
    if "shape" not in batch or "detail" not in batch:
      raise ValueError("held-out evaluation needs the ground-truth shape and detail "
                       "(input.ground_truth=True, input.detail=True)")
    if batch["detail"].shape[1] != model.num_vertices:
      raise ValueError(f"the held-out data have {batch['detail'].shape[1]} vertices per "
                       f"mesh, the model {model.num_vertices}: made with another face model")
    frames = batch["image"].shape[1]
    zero = jnp.zeros((batch["shape"].shape[0], model.num_expression))
    neutral = np.asarray(morphable.decode(model, jnp.asarray(batch["shape"]), zero))
    neutral = neutral + np.asarray(batch["detail"], np.float32)
    meshes.extend(mesh for mesh in neutral for _ in range(frames))
  return meshes


def now_errors(model: morphable.MorphableModel, predicted: np.ndarray,
               truths: Sequence[np.ndarray], truth_lmk7: Sequence[np.ndarray]) -> np.ndarray:
  """Pooled non-metrical NoW distances (mm) of predicted neutral meshes [N, V, 3]."""
  triangles = np.asarray(model.triangles)
  pooled = []
  for vertices, truth, lmk7 in zip(predicted, truths, truth_lmk7):
    pooled.append(now.now_distances(vertices, triangles, _neutral_now_landmarks(model, vertices),
                                    truth, lmk7, metrical=False))
  return np.concatenate(pooled)


def make_eval_fn(config: Any, method: Any, batches: Sequence[Batch], *,
                 model: morphable.MorphableModel | None = None, log=None):
  """`eval_fn(state) -> {name: float}` over the held-out batches (module docstring).

  Args:
    config: the training config (`morphable.model`, what `method.predict` reads).
    method: a `jaxface.train.methods.Method`.
    batches: host batches of the held-out split with `shape` and `detail`, no
      augmentation (numpy, DESIGN.md §2 layout).
    model: the face model (default `config.morphable.model`).
    log: optional, gets one line with the baselines when they are computed.
  Returns:
    eval_fn; its dict holds now_median_mm, now_mean_mm, landmark_nme_percent, the mean
    face's mean_face_now_median_mm and mean_face_landmark_nme_percent, and the
    reductions now_reduction / landmark_reduction = 1 - method / mean face.
  """
  model = common.load_model(config.morphable.model) if model is None else model
  batches = list(batches)
  if not batches:
    raise ValueError("held-out evaluation needs at least one batch")
  truths = ground_truth_meshes(model, batches)
  truth_lmk7 = [_neutral_now_landmarks(model, v) for v in truths]
  inputs = [_images_of(b) for b in batches]
  gt_landmarks = np.concatenate([lmk for _, lmk, _ in inputs])
  size = inputs[0][0].shape[1:3]

  mean = np.broadcast_to(np.asarray(model.mean), (len(truths),) + model.mean.shape)
  zero = {"rotation": jnp.zeros((1, 3)), "translation": jnp.zeros((1, 3))}
  mean_lmk = render.project(fitting.camera_for(zero, size),
                            morphable.landmarks_3d(model, jnp.asarray(model.mean)[None]))[0]
  baseline = {
      "mean_face_now_median_mm": float(np.median(now_errors(model, mean, truths, truth_lmk7))),
      "mean_face_landmark_nme_percent": float(100 * np.mean(
          aflw2000.nme(np.broadcast_to(np.asarray(mean_lmk), gt_landmarks.shape),
                       gt_landmarks))),
  }
  if log is not None:
    log(f"held-out set: {len(truths)} images; mean face: NoW median "
        f"{baseline['mean_face_now_median_mm']:.3f} mm, landmark NME "
        f"{baseline['mean_face_landmark_nme_percent']:.2f}%")

  @jax.jit
  def infer(state, images, landmarks, mask):
    blocks = method.predict(config, state, images, landmarks, mask)
    zero_expression = jnp.zeros_like(blocks["expression"])
    neutral = morphable.decode(model, blocks["shape"], zero_expression)
    posed = morphable.decode(model, blocks["shape"], blocks["expression"])
    lmk = render.project(method.camera(config, blocks, images.shape[1:3]),
                         morphable.landmarks_3d(model, posed))[0]
    return neutral, lmk

  def eval_fn(state) -> dict[str, float]:
    neutral, lmk = zip(*(jax.device_get(infer(state, *x)) for x in inputs))
    distances = now_errors(model, np.concatenate(neutral), truths, truth_lmk7)
    scores = {"now_median_mm": float(np.median(distances)),
              "now_mean_mm": float(np.mean(distances)),
              "landmark_nme_percent": float(100 * np.mean(
                  aflw2000.nme(np.concatenate(lmk), gt_landmarks)))}
    scores.update(baseline)
    scores["now_reduction"] = 1 - scores["now_median_mm"] / baseline["mean_face_now_median_mm"]
    scores["landmark_reduction"] = 1 - (scores["landmark_nme_percent"]
                                        / baseline["mean_face_landmark_nme_percent"])
    return scores

  return eval_fn


def _dots(images: np.ndarray, points: np.ndarray, colour) -> np.ndarray:
  """Images [N,H,W,3] with a pixel of `colour` at each point [N,K,2] (x right, y down)."""
  out = images.copy()
  n, h, w = images.shape[:3]
  xy = np.floor(points).astype(int)
  inside = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
  rows = np.broadcast_to(np.arange(n)[:, None], inside.shape)
  out[rows[inside], xy[..., 1][inside], xy[..., 0][inside]] = colour
  return out


def make_image_fn(config: Any, method: Any, *, model: morphable.MorphableModel | None = None,
                  count: int = 4):
  """`image_fn(state, host_batch) -> {"input_render_overlay": [n, H, 3W, 3]}`.

  The first `count` images of the batch (frames flattened), each as input | render |
  overlay in [0, 1]; the render uses the method's camera and SH light.
  """
  model = common.load_model(config.morphable.model) if model is None else model
  topology = render.make_topology(model.triangles)

  @jax.jit
  def draw(state, images, landmarks, mask):
    blocks = method.predict(config, state, images, landmarks, mask)
    vertices = morphable.decode(model, blocks["shape"], blocks["expression"])
    camera = method.camera(config, blocks, images.shape[1:3])
    out = render.render(vertices, topology, camera,
                        albedo=morphable.albedo(model, blocks["albedo"]),
                        light=blocks["light"], edge_antialias=False,
                        on_overflow=config.render.get("on_overflow", "warn"))
    lmk = render.project(camera, morphable.landmarks_3d(model, vertices))[0]
    return jnp.clip(out.image, 0.0, 1.0), out.mask, lmk

  def image_fn(state, host_batch) -> dict[str, np.ndarray]:
    images, landmarks, mask = (x[:count] for x in _images_of(host_batch))
    rendered, coverage, predicted = (np.asarray(x) for x in
                                     jax.device_get(draw(state, images, landmarks, mask)))
    w = 0.6 * coverage[..., None]
    overlay = _dots(_dots(images * (1 - w) + rendered * w, landmarks, (1.0, 0.0, 0.0)),
                    predicted, (0.0, 1.0, 0.0))
    return {"input_render_overlay": np.concatenate([images, rendered, overlay], axis=2)}

  return image_fn
