"""Evaluation protocols: NoW, MICC Florence, AFLW2000-3D NME, synthetic ground truth.

  proximity   exact closest points on a triangle mesh (libigl AABB tree)
  alignment   Umeyama similarity on landmarks; refinement on scan-to-mesh distances
  mesh_files  OBJ/PLY meshes and .pp/.txt/.npy landmark files, one-line errors
  now         NoW crop, alignment and scan-to-mesh distances; the NoW folder layout
  micc        MICC Florence: 95 mm crop, ICP with scale, point-to-plane RMSE
  aflw2000    AFLW2000-3D 68-landmark NME per yaw bin
  synthetic   NoW-style error against known meshes (`jaxface synth` layout)
  report      `Report`, JSON, text table, cumulative error PNG
"""

from jaxface.eval.aflw2000 import evaluate_aflw2000, nme, read_annotation, yaw_bin
from jaxface.eval.alignment import RefineInfo, Similarity, refine, umeyama
from jaxface.eval.mesh_files import (
    NOW_LANDMARKS_FROM_68,
    now_landmarks,
    read_landmarks,
    read_mesh,
    read_now_landmarks,
    read_obj,
    read_pp,
)
from jaxface.eval.micc import MiccResult, evaluate_micc, micc_rmse
from jaxface.eval.now import (
    NowResult,
    crop_indices,
    crop_sphere,
    evaluate_now,
    now_align,
    now_distances,
)
from jaxface.eval.proximity import MeshProximity, closest_points, scan_to_mesh_distances
from jaxface.eval.report import (
    Report,
    format_table,
    plot_cumulative,
    to_json,
    write_report,
)
from jaxface.eval.synthetic import evaluate_synthetic

PROTOCOLS = {"now": evaluate_now, "micc": evaluate_micc, "aflw2000": evaluate_aflw2000,
             "synthetic": evaluate_synthetic}

__all__ = [
    "NOW_LANDMARKS_FROM_68", "PROTOCOLS", "MeshProximity", "MiccResult", "NowResult",
    "RefineInfo", "Report", "Similarity", "closest_points", "crop_indices", "crop_sphere",
    "evaluate_aflw2000", "evaluate_micc", "evaluate_now", "evaluate_synthetic", "format_table",
    "micc_rmse", "nme", "now_align", "now_distances", "now_landmarks", "plot_cumulative",
    "read_annotation", "read_landmarks", "read_mesh", "read_now_landmarks", "read_obj",
    "read_pp", "refine", "scan_to_mesh_distances", "to_json", "umeyama", "write_report",
    "yaw_bin",
]
