"""TFDS builder for 300W-LP (manual download): PRNet crops, 68 landmarks, UV position maps.

Per labelled image the 3DDFA parameters (`ddfa.py`) give a mesh in image pixels; the
example holds (PRNet's recipe, Feng et al. 2018, deterministic here: augmentation
belongs to the input pipeline):
  - a square crop of side 1.5 x the mean side of the 68 projected landmarks' box,
    centred on that box, resampled to S x S (default 256);
  - the 68 landmarks (model landmark vertices) in crop pixels;
  - the UV position map [U, U, 3] float32 (default U = 256): x, y of every mesh point
    in crop pixels (centres at +0.5), z its depth towards the camera scaled like x
    and y and shifted so the farthest vertex is at 0; 0 outside the UV layout.

Model (`W300LPConfig.model`): the default BFM-sim truncates the labels to 40 shape and
10 expression components (approximate); BFM2009 with 3DDFA's expression model
(`ddfa_dir`) is exact. Either way each example stores `landmark_error`, the RMS
distance in original-image pixels between the mesh's landmarks and the dataset's own
`pts_3d`, and `info.metadata["landmark_error_px"]` summarises it, so the
approximation is measured on the user's data rather than assumed.
"""

import dataclasses
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.builders import common
from data_pipelines.builders import ddfa
from jaxface.render import uv_raster
from jaxface import preprocess

SUBSETS = ("AFW", "HELEN", "IBUG", "LFPW")
CROP_SCALE = 1.5  # PRNet: crop side = 1.5 x mean side of the landmarks' box
NO_ERROR = -1.0


@dataclasses.dataclass
class W300LPConfig(tfds.core.BuilderConfig):
  """Crop side S and UV map side U (pixels), the label model, flipped subsets.

  Attributes:
    size: crop side S, pixels.
    uv_size: position map side U, pixels.
    model: "bfm_sim" / "bfm_sim_front" or a path to BFM2009's 01_MorphableModel.mat.
    ddfa_dir: with BFM2009, the folder of 3DDFA's model_info.mat and Model_Expression.mat.
    include_flips: also read the *_Flip folders (no pts_3d there to check against).
  """
  size: int = 256
  uv_size: int = 256
  model: str = "bfm_sim"
  ddfa_dir: str = ""
  include_flips: bool = False


def crop_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
  """PRNet's crop around 68 landmarks as a [2, 3] affine (image pixels -> crop pixels).

  Args:
    landmarks: [68, 2] landmarks in image pixels.
    size: crop side S, pixels.
  Returns:
    [2, 3] float64: the square of side 1.5 x (box width + height) / 2 centred on the
    landmarks' bounding box maps onto [0, S] x [0, S].
  """
  low, high = landmarks.min(axis=0), landmarks.max(axis=0)
  side = CROP_SCALE * float(np.sum(high - low)) / 2.0
  if not side > 0:
    raise ValueError("degenerate landmarks: their box has no extent")
  scale = size / side
  centre = (low + high) / 2.0
  return np.array([[scale, 0.0, size / 2 - scale * centre[0]],
                   [0.0, scale, size / 2 - scale * centre[1]]])


class W300LP(common.ManualBuilder):
  """300W-LP: face crops with 68 landmarks and UV position maps (PRNet training data)."""

  name = "jaxface_300w_lp"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [W300LPConfig(name="bfm_sim_256")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download 300W-LP from the 3DDFA project page (Zhu et al.,
http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm; research use) and
unzip 300W-LP.zip into manual_dir:

  <manual_dir>/300W_LP/AFW/AFW_134212_1_0.jpg + AFW_134212_1_0.mat
  <manual_dir>/300W_LP/{HELEN,IBUG,LFPW}/...   (and *_Flip, read with include_flips)
  <manual_dir>/300W_LP/landmarks/AFW/AFW_134212_1_0_pts.mat   (pts_3d, for the check)

Position maps come from the 3DMM parameters in each .mat. The default model
(bfm_sim) is approximate (40 of 199 shape and 10 of 29 expression components); for
exact maps pass model=<path>/01_MorphableModel.mat (Basel Face Model 2009, from the
University of Basel) and ddfa_dir=<path>/3DDFA_Release/Matlab (model_info.mat and
Model_Expression.mat from the 3DDFA download), e.g.
  W300LP(config=W300LPConfig(name="bfm2009_256", model=".../01_MorphableModel.mat",
                             ddfa_dir=".../3DDFA_Release/Matlab"))
"""

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    size, uv = config.size, config.uv_size
    return tfds.core.DatasetInfo(
        builder=self,
        description="300W-LP face crops with 68 landmarks and PRNet UV position maps "
                    "computed from the dataset's 3DDFA parameters.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(
                shape=(size, size, 3), encoding_format="jpeg",
                doc="[S, S, 3] uint8 PRNet-style crop around the face."),
            "landmarks": tfds.features.Tensor(
                shape=(68, 2), dtype=np.float32,
                doc="[68, 2] iBUG landmarks (the model's landmark vertices) in crop "
                    "pixels, pixel (i, j) centred at (j + 0.5, i + 0.5)."),
            "position_map": tfds.features.Tensor(
                shape=(uv, uv, 3), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB,
                doc="[U, U, 3] float32 UV position map: x, y in crop pixels, z depth "
                    "towards the camera in crop pixels, min over vertices 0; 0 outside "
                    "the model's UV layout (`position_map_basis(config).uv`)."),
            "landmark_error": tfds.features.Scalar(
                dtype=np.float32,
                doc="RMS distance (original-image pixels) between the mesh landmarks "
                    "and the dataset's pts_3d; -1 where there is no pts_3d file."),
            "pose": tfds.features.Tensor(
                shape=(3,), dtype=np.float32, doc="(pitch, yaw, roll) in degrees (Pose_Para)."),
            "name": tfds.features.Text(doc="Image file name, e.g. AFW_134212_1_0.jpg."),
            "subset": tfds.features.Text(doc="Source folder, e.g. AFW or AFW_Flip."),
        }),
        homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
        citation="Zhu et al., Face Alignment Across Large Poses: A 3D Solution, CVPR 2016; "
                 "Feng et al., Joint 3D Face Reconstruction and Dense Alignment with "
                 "Position Map Regression Network, ECCV 2018.",
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = common.require_dir(pathlib.Path(dl_manager.manual_dir) / "300W_LP",
                              "the unzipped 300W_LP folder")
    subsets = [s for s in SUBSETS if (root / s).is_dir()]
    if self.builder_config.include_flips:
      subsets += [f"{s}_Flip" for s in SUBSETS if (root / f"{s}_Flip").is_dir()]
    if not subsets:
      raise common.DatasetLayoutError(f"{root}: none of the folders {', '.join(SUBSETS)}")
    return {"train": self._generate_examples(root, subsets)}

  def _generate_examples(self, root, subsets):
    """Yields (subset/name, example) per image with readable labels."""
    config = self.builder_config
    basis = position_map_basis(config)
    raster = uv_raster.rasterize_uv(basis.uv, basis.triangles, config.uv_size)
    skips = common.SkipCounter(self.name)
    errors = []
    for subset in subsets:
      for path in common.list_images(root / subset):
        example = self._example(path, root / "landmarks" / subset / f"{path.stem}_pts.mat",
                                basis, raster, skips)
        if example is not None:
          if example["landmark_error"] >= 0:
            errors.append(example["landmark_error"])
          yield f"{subset}/{path.name}", dict(example, subset=subset)
    common.record_skips(self.info, "train", skips)
    self.info.metadata["model"] = {"name": basis.name, "exact": basis.exact,
                                   "vertices": len(basis.mean)}
    if errors:
      summary = {"median": float(np.median(errors)), "p95": float(np.percentile(errors, 95)),
                 "max": float(np.max(errors)), "count": len(errors)}
      self.info.metadata["landmark_error_px"] = summary
      logging.getLogger(__name__).info("%s: landmark error vs pts_3d %s", self.name, summary)

  def _example(self, path, pts_path, basis, raster, skips):
    """One example, or None (counted) when the labels or the image cannot be read."""
    config = self.builder_config
    labels = ddfa.read_mat(path.with_suffix(".mat"), ("Pose_Para", "Shape_Para", "Exp_Para"))
    if labels is None:
      skips.skip("bad_label", path.with_suffix(".mat"), "missing or unreadable")
      return None
    try:
      pose = ddfa.Pose.from_params(labels["Pose_Para"])
    except ValueError as e:
      skips.skip("bad_label", path.with_suffix(".mat"), str(e))
      return None
    image = common.read_image(path, skips)
    if image is None:
      return None
    points = ddfa.project(basis.vertices(labels["Shape_Para"], labels["Exp_Para"]), pose,
                          image.shape[0])
    landmarks = points[basis.landmarks, :2]
    error = NO_ERROR
    reference = ddfa.read_mat(pts_path, ("pts_3d",)) if pts_path.is_file() else None
    if reference is not None and reference["pts_3d"].shape == (68, 2):
      difference = landmarks - ddfa.to_pixels(reference["pts_3d"])
      error = float(np.sqrt(np.mean(np.sum(difference ** 2, axis=1))))
    transform = crop_transform(landmarks, config.size)
    scale = transform[0, 0]
    position = np.concatenate([preprocess.apply_transform(transform, points[:, :2]),
                               scale * (points[:, 2:] - points[:, 2].min())], axis=1)
    return {
        "image": common.to_uint8(preprocess.warp_crop(image, transform, config.size)),
        "landmarks": position[basis.landmarks, :2].astype(np.float32),
        "position_map": uv_raster.interpolate(raster, position),
        "landmark_error": np.float32(error),
        "pose": np.rad2deg(pose.angles).astype(np.float32),
        "name": path.name,
    }


def position_map_basis(config: W300LPConfig) -> ddfa.Basis:
  """The model behind a config's position maps: its `uv` and `triangles` define the map.

  Training code reads landmarks and regions off position maps through this basis'
  `uv` (e.g. landmark k sits at `uv_raster.uv_to_pixels(basis.uv[basis.landmarks[k]], U)`).
  """
  return ddfa.load_basis(config.model, config.ddfa_dir)
