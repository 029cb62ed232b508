"""TFDS builders of the real datasets, each reading a manual download (`manual_dir`).

  vggface2      identity-grouped samples of T aligned crops (+ landmarks, masks)
  voxceleb2     T evenly spaced aligned frames of one clip (frames extracted by ffmpeg)
  300w_lp       PRNet crops, 68 landmarks and UV position maps from 3DDFA parameters
  aflw2000_3d   AFLW2000-3D images, 68 landmarks, head pose (evaluation)
  now           NoW photos with subject, challenge, box and scan paths (evaluation)
  micc          MICC Florence video frames with the scan path (evaluation)

Build one with `BUILDERS[name](data_dir=...).download_and_prepare(download_config=
tfds.download.DownloadConfig(manual_dir=...))`; each class documents its layout in
MANUAL_DOWNLOAD_INSTRUCTIONS. Helpers: `common` (image checks, skip counts, crops),
`ddfa` (3DDFA label conventions and shape bases), `uv_raster` (UV rasterisation).
"""

from data_pipelines.builders.aflw2000_3d import Aflw20003d
from data_pipelines.builders.micc import Micc, MiccConfig
from data_pipelines.builders.now import Now
from data_pipelines.builders.vggface2 import VggFace2, VggFace2Config
from data_pipelines.builders.voxceleb2 import VoxCeleb2, VoxCeleb2Config
from data_pipelines.builders.w300lp import W300LP, W300LPConfig

__all__ = ["BUILDERS", "W300LP", "Aflw20003d", "Micc", "MiccConfig", "Now", "VggFace2",
           "VggFace2Config", "VoxCeleb2", "VoxCeleb2Config", "W300LPConfig"]

BUILDERS = {
    "vggface2": VggFace2,
    "voxceleb2": VoxCeleb2,
    "300w_lp": W300LP,
    "aflw2000_3d": Aflw20003d,
    "now": Now,
    "micc": Micc,
}
