"""Photo(s) in, textured 3D face(s) out: preprocess -> fit -> export (`jaxface reconstruct`).

Outputs per input stem, in millimetres, right-handed, x to the image right, y up, z
towards the camera (the model frame, canonical head pose):
  <stem>.obj/.mtl/_texture.png  mesh with the fitted expression, UV-textured (photo
                                colours where visible, fitted albedo elsewhere)
  <stem>_neutral.obj            identity only (zero expression), same texture
  <stem>_lmk68.txt              68 x 3 landmarks of the neutral mesh
  <stem>_params.json            coefficients, camera, light, crop transform, fit figures,
                                detected and fitted 68 landmarks in photo pixels
  <stem>_overlay.png            the render over the aligned crop, landmarks drawn
With `multi_frame`, `identity*` files hold the shared identity and every frame gets
the per-frame files. Each stem's files are written in a temporary folder and moved
into place only when all of them are complete.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from jaxface import export
from jaxface import fit
from jaxface import morphable
from jaxface import preprocess
from jaxface import render
from jaxface.errors import JaxfaceError

TEXTURE_SIZE = 1024
# Last-resort HOG threshold when HOG (0.3) and the MMOD CNN find no face: the user says
# the photo holds one (`detect.detect_faces(weak_min_score=...)`). On the accuracy
# benchmark's tuning split this and the CNN on an equalised copy find 94 of 96 faces,
# all boxes on the face (-0.8 with one doubling less and no equalised copy: 89).
WEAK_MIN_SCORE = -1.0
# Jitted once per process: eager rendering dispatches thousands of small ops.
_render = jax.jit(render.render, static_argnames=("edge_antialias", "cull_backfaces",
                                                  "capacity", "on_overflow"))


def dlib_identity(params, images, landmarks):
  """dlib ResNet embeddings [T, 128] of the aligned chips of images [T, H, W, 3]."""
  from jaxface import nets  # pylint: disable=import-outside-toplevel
  return nets.embed(params, nets.face_chip(images, landmarks))


def check_output_dir(out_dir: pathlib.Path) -> None:
  """Creates `out_dir` and checks it is writable; one clear error otherwise."""
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".probe"):
      pass
  except OSError as e:
    raise JaxfaceError(f"{out_dir}: output directory is not writable ({e.strerror})") from None


def fit_targets(crops, identity_params) -> fit.FitTargets:
  """`FitTargets` from aligned crops: images, landmarks, face masks, photo embeddings.

  Args:
    crops: `preprocess.Crop`s of one size. identity_params: dlib ResNet params, or None
      (zero embeddings; the identity term must then be off).
  """
  images = np.stack([c.image for c in crops]).astype(np.float32)
  landmarks = np.stack([c.landmarks for c in crops]).astype(np.float32)
  masks = np.stack([preprocess.face_mask(c.landmarks, c.image.shape[0]) for c in crops])
  identity = np.zeros((len(crops), 128), np.float32)
  if identity_params is not None:
    identity = np.asarray(jax.jit(dlib_identity)(identity_params, images, landmarks))
  return fit.FitTargets(images=jnp.asarray(images), landmarks=jnp.asarray(landmarks),
                        masks=jnp.asarray(masks, jnp.float32), identity=jnp.asarray(identity))


def _frame(params: dict, t: int) -> dict:
  """Parameters of frame t (identity shared), with a frame axis of 1."""
  per_frame = ("expression", "rotation", "translation", "light")
  return {k: (v[t:t + 1] if k in per_frame else v) for k, v in params.items()}


def _texture(model, params, crop, photo, topology):
  """(UV texture [TEXTURE_SIZE, TEXTURE_SIZE, 3], the frame's `RenderOutput`)."""
  size = crop.image.shape[:2]
  vertices = fit.posed_vertices(model, params)
  camera = fit.camera_for(params, size)
  albedo = morphable.albedo(model, params["albedo"])
  out = _render(vertices, topology, camera, albedo=albedo[None], light=params["light"],
                edge_antialias=False)
  xy, depth = render.project(camera, vertices)
  normals = jnp.einsum("bij,bvj->bvi", camera.rotation,
                       morphable.vertex_normals(vertices, model.triangles))
  visible = export.vertex_visibility(np.asarray(xy[0]), np.asarray(depth[0]),
                                     np.asarray(out.depth[0]), np.asarray(normals[0]))
  # Crop pixels -> original photo pixels, to bake the texture at full resolution.
  photo_xy = preprocess.apply_transform(preprocess.invert_transform(crop.transform),
                                        np.asarray(xy[0]))
  return export.unwrap_texture(np.asarray(model.uv), np.asarray(model.triangles), photo,
                               photo_xy, visible, np.clip(np.asarray(albedo), 0, 1),
                               size=TEXTURE_SIZE), out


def overlay_image(crop, rendered, predicted) -> np.ndarray:
  """[H, W, 3] uint8: the render blended over the crop, detected landmarks green,
  fitted ones red."""
  image = np.asarray(crop.image)
  mask = np.asarray(rendered.mask[0])[..., None]
  blend = image * (1 - 0.7 * mask) + 0.7 * mask * np.clip(np.asarray(rendered.image[0]), 0, 1)
  canvas = Image.fromarray((np.clip(blend, 0, 1) * 255 + 0.5).astype(np.uint8))
  draw = ImageDraw.Draw(canvas)
  for (x, y), colour in [(p, (40, 220, 40)) for p in crop.landmarks] + [
      (p, (230, 40, 40)) for p in np.asarray(predicted)]:
    draw.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=colour)
  return np.asarray(canvas)


def _write_mesh_set(folder, stem, model, shape, expression, texture) -> None:
  triangles, uv = np.asarray(model.triangles), np.asarray(model.uv)
  header = (f"jaxface reconstruction ({model.name}); millimetres, x right, y up, "
            "z towards the camera")
  export.write_png(folder / f"{stem}_texture.png", texture)
  neutral = morphable.decode(model, shape, jnp.zeros_like(expression))
  posed = morphable.decode(model, shape, expression)
  for suffix, vertices in (("", posed), ("_neutral", neutral)):
    export.write_obj(folder / f"{stem}{suffix}.obj", np.asarray(vertices), triangles, uv=uv,
                     texture_png=f"{stem}_texture.png", material=f"{stem}{suffix}", header=header)
  landmarks = np.asarray(morphable.landmarks_3d(model, neutral))
  export.write_text(folder / f"{stem}_lmk68.txt",
                    "\n".join(f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in landmarks) + "\n")


@jax.jit
def identity_cosine(identity_params, photo_embedding, crop_image, landmarks, rendered, mask):
  """Cosine between the photo chip's embedding and that of the render composited over
  the photo by the face mask (the fit's identity measure). Shapes: [1, ...]."""
  from jaxface import losses  # pylint: disable=import-outside-toplevel
  face = (mask * rendered.mask)[..., None]
  composite = rendered.image * face + crop_image * (1 - face)
  return 1.0 - losses.identity_loss(photo_embedding,
                                    dlib_identity(identity_params, composite, landmarks))[0]


def landmark_reprojection(model, params, crop) -> tuple[np.ndarray, float]:
  """(fitted landmarks [68, 2] in crop pixels, mean error / inter-ocular distance).

  The landmarks are the model's 68 landmark vertices projected (the 3D convention of
  synthetic ground truth and AFLW2000-3D); the error is the fit's residual against the
  detected ones, with the jaw contour as the fit matches it (`fit.detector_landmarks`).
  """
  size = crop.image.shape[:2]
  predicted = np.asarray(fit.projected_landmarks(model, params, size)[0])
  matched = np.asarray(fit.detector_landmarks(model, params, size)[0])
  interocular = np.linalg.norm(crop.landmarks[36:42].mean(0) - crop.landmarks[42:48].mean(0))
  error = np.linalg.norm(matched - crop.landmarks, axis=-1).mean()
  return predicted, float(error / max(interocular, 1e-6))


def _params_json(model, params, crop, result, predicted, reprojection, cosine, t) -> str:
  tolist = lambda x: np.asarray(x).round(6).tolist()
  to_photo = lambda p: preprocess.apply_transform(preprocess.invert_transform(crop.transform), p)
  return json.dumps({
      "model": model.name, "source": crop.source,
      "shape": tolist(params["shape"]), "albedo": tolist(params["albedo"]),
      "expression": tolist(params["expression"][t]),
      "rotation_euler_xyz_rad": tolist(params["rotation"][t]),
      "translation_mm": tolist(params["translation"][t] * fit.fitting.TRANSLATION_UNIT_MM),
      "light_sh_9x3": tolist(params["light"][t]),
      "camera": {"kind": "perspective", "image_size": list(crop.image.shape[:2]),
                 "focal_px": fit.fitting.FOCAL_AT_224 * crop.image.shape[1] / 224.0,
                 "distance_mm": fit.fitting.CAMERA_DISTANCE_MM},
      "crop_transform": tolist(crop.transform),
      "detection": {"detector": crop.box.detector, "score": round(crop.box.score, 4)},
      "landmark_error_over_interocular": round(reprojection, 5),
      "landmarks_68_photo_px": {"detected": np.round(to_photo(crop.landmarks), 3).tolist(),
                                "fitted": np.round(to_photo(predicted), 3).tolist()},
      "identity_cosine": None if cosine is None else round(cosine, 5),
      "final_losses": {k: round(float(v[-1]), 6) for k, v in result.history.items()},
      "fit_seconds": round(result.seconds, 3),
      "fit_compile_seconds": round(result.compile_seconds, 3)}, indent=1)


def _commit(folder: pathlib.Path, out_dir: pathlib.Path) -> None:
  for item in sorted(folder.iterdir()):
    os.replace(item, out_dir / item.name)


@dataclasses.dataclass
class Summary:
  images: int = 0
  faces: int = 0
  failures: int = 0
  seconds: float = 0.0
  reprojection: list = dataclasses.field(default_factory=list)
  identity_cosine: list = dataclasses.field(default_factory=list)


def reconstruct(paths, out_dir, *, model_spec="bfm_sim_front", multi_frame=False,
                steps=None, all_faces=False, use_identity=True,
                config: fit.FitConfig | None = None, checkpoint=None, landmarks=None,
                log=print) -> Summary:
  """Reconstructs every image (or, with `multi_frame`, all of them as one person).

  Args:
    paths: image paths. out_dir: output folder (created).
    model_spec: "bfm_sim_front", "bfm_sim" or a model file (see `morphable.load_model`).
    multi_frame: fit one shared identity to the largest face of every image.
    steps: optimisation steps (None: `config.steps`).
    all_faces: every face, not only the largest.
    use_identity: include the dlib identity loss.
    checkpoint: a `jaxface export` file: its trained encoder's estimate starts the fit
      (`steps=0`: the estimate is the result, no fitting).
    landmarks: {str(path): [68, 2] iBUG landmarks in photo pixels} for images whose
      landmarks are known (another detector, or ground truth): their face is not
      detected but aligned and fitted to these.
    log: where per-image messages go.
  Returns:
    A `Summary`; failures (unreadable image, no face) are logged and counted.
  """
  out_dir = pathlib.Path(out_dir)
  check_output_dir(out_dir)
  model = morphable.load_model(model_spec)
  topology = render.make_topology(model.triangles)
  identity_params = None
  if use_identity:
    from jaxface import nets  # pylint: disable=import-outside-toplevel
    identity_params = nets.load_dlib_params()
  predictor = None
  if checkpoint is not None:
    from jaxface.train import inference  # pylint: disable=import-outside-toplevel
    predictor = inference.load_predictor(checkpoint)
  config = config or fit.FitConfig()
  if steps is not None:
    config = dataclasses.replace(config, steps=steps)
  summary, start = Summary(), time.perf_counter()
  groups = []  # (stem, photo, crops)
  for index, path in enumerate(paths):
    summary.images += 1
    log(f"[{index + 1}/{len(paths)}] {path}")
    try:
      photo = preprocess.load_image(path)
      if landmarks is not None and str(path) in landmarks:
        crops = [preprocess.align_crop(photo, landmarks[str(path)], source=str(path))]
      else:
        crops = preprocess.detect_and_align(photo, all_faces=all_faces and not multi_frame,
                                            source=str(path), weak_min_score=WEAK_MIN_SCORE)
    except JaxfaceError as e:
      log(f"jaxface: error: {e}")
      summary.failures += 1
      continue
    stem = pathlib.Path(path).stem
    if crops[0].box.detector in preprocess.detect.LAST_RESORT_DETECTORS:
      log(f"  warning: {path}: face found only by a last resort ({crops[0].box.detector}, "
          f"score {crops[0].box.score:.2f}); check its overlay")
    for k, crop in enumerate(crops):
      groups.append((stem if len(crops) == 1 else f"{stem}_face{k}", photo, crop))
  summary.faces = len(groups)
  batches = [groups] if multi_frame and groups else [[g] for g in groups]
  for batch in batches:
    crops = [crop for _, _, crop in batch]
    targets = fit_targets(crops, identity_params)
    init = None if predictor is None else inference.fit_init(
        predictor, model, np.asarray(targets.images), np.asarray(targets.landmarks),
        np.asarray(targets.masks))
    result = fit.fit(model, targets, config=config,
                     identity_fn=dlib_identity if use_identity else None,
                     identity_params=identity_params, topology=topology, init=init)
    folder = pathlib.Path(tempfile.mkdtemp(prefix=".jaxface-", dir=out_dir))
    try:
      textures = []
      for t, (stem, photo, crop) in enumerate(batch):
        params = _frame(result.params, t)
        texture, rendered = _texture(model, params, crop, photo, topology)
        textures.append(texture)
        predicted, reprojection = landmark_reprojection(model, params, crop)
        summary.reprojection.append(reprojection)
        cosine = None
        if identity_params is not None:
          cosine = float(identity_cosine(identity_params, targets.identity[t:t + 1],
                                          targets.images[t:t + 1], targets.landmarks[t:t + 1],
                                          rendered, targets.masks[t:t + 1]))
          summary.identity_cosine.append(cosine)
        _write_mesh_set(folder, stem, model, params["shape"], params["expression"][0], texture)
        export.write_text(folder / f"{stem}_params.json",
                          _params_json(model, result.params, crop, result, predicted,
                                       reprojection, cosine, t))
        export.write_png(folder / f"{stem}_overlay.png",
                         overlay_image(crop, rendered, predicted))
        identity_note = "" if cosine is None else f", identity cosine {cosine:.3f}"
        log(f"  {stem}: landmark error {100 * reprojection:.2f}% of the inter-ocular "
            f"distance{identity_note}, fit {result.seconds:.1f} s "
            f"(+{result.compile_seconds:.1f} s compile)")
      if multi_frame:  # the shared identity takes the first frame's texture
        _write_mesh_set(folder, "identity", model, result.params["shape"],
                        jnp.zeros(model.num_expression), textures[0])
      _commit(folder, out_dir)
    finally:
      shutil.rmtree(folder, ignore_errors=True)
  summary.seconds = time.perf_counter() - start
  return summary


def main_summary_line(summary: Summary) -> str:
  per_image = summary.seconds / max(summary.images, 1)
  return (f"jaxface: {summary.images} images, {summary.faces} faces reconstructed, "
          f"{summary.failures} failed, {per_image:.1f} s per image")

