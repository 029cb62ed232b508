"""Tiny fake datasets laid out exactly like the real ones (NoW, MICC, AFLW2000-3D, synth).

Each builder writes ground truth and predictions under a temporary folder and returns
what the predictions were built to score, so the tests can check the reports.
"""

import json

import numpy as np
import scipy.io
from PIL import Image

from jaxface.export import write_obj
from tests.eval import faces

NOW_SUBJECTS = ("FaMoS_180424_03335_TA", "FaMoS_180426_03336_TA")
NOW_IMAGES = (("multiview_neutral", "IMG_0101"), ("multiview_expressions", "IMG_0054"),
              ("multiview_occlusions", "IMG_0020"), ("selfie", "IMG_0303"))


def subject_face(k: int, step: float = 4.0):
  """A subject's face: the analytic face, a little wider or narrower per subject."""
  vertices, triangles = faces.face_mesh(step=step)
  stretch = np.array([1.0 + 0.04 * k, 1.0 - 0.02 * k, 1.0])
  return vertices * stretch, triangles, faces.landmarks68() * stretch


def _bump(vertices, height=3.0, centre=(0.0, 60.0), sigma=12.0):
  """The face with a forehead bump (a shape error the alignment cannot remove)."""
  d2 = np.sum((vertices[:, :2] - centre) ** 2, axis=1)
  return vertices + np.outer(height * np.exp(-d2 / (2 * sigma ** 2)), [0.0, 0.0, 1.0])


def _jpeg(path, size=(64, 48)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path, format="JPEG")


def make_now(root):
  """NoW validation layout (official evaluation folder) + mixed-layout predictions.

  Returns (pred_dir, gt_dir, expectations) where expectations names the items that are
  exact, shape-wrong (selfie of subject 0), 10% too large (occlusion of subject 1) and
  missing.
  """
  gt, pred = root / "now_dataset", root / "now_pred"
  lines = []
  for k, subject in enumerate(NOW_SUBJECTS):
    vertices, triangles, lmk68 = subject_face(k)
    scan = faces.random_similarity(10 + k)  # scans live in their own frame (mm)
    scan_name = "natural_head_rotation.000001"
    faces.write_obj(gt / "scans" / subject / f"{scan_name}.obj", scan.apply(vertices), triangles)
    faces.write_pp(gt / "scans_lmks_onlypp" / subject / f"{scan_name}_picked_points.pp",
                   scan.apply(lmk68[[36, 39, 42, 45, 33, 48, 54]]))
    for index, (challenge, image) in enumerate(NOW_IMAGES):
      lines.append(f"{subject}/{challenge}/{image}.jpg")
      _jpeg(gt / "NoW_Dataset" / "final_release_version" / "iphone_pictures" / subject /
            challenge / f"{image}.jpg")
      pose = faces.random_similarity(20 + 4 * k + index)
      folder = pred / subject / challenge
      folder.mkdir(parents=True, exist_ok=True)
      shape = vertices
      if (k, challenge) == (0, "selfie"):
        shape = _bump(vertices)
      if (k, challenge) == (1, "multiview_occlusions"):
        pose = faces.random_similarity(20 + 4 * k + index, scale=1.1)
      mesh, lmk = pose.apply(shape), pose.apply(lmk68)
      seven = lmk[[36, 39, 42, 45, 33, 48, 54]]
      if (k, challenge) == (1, "multiview_expressions"):
        continue  # missing prediction
      if challenge == "multiview_occlusions":  # `jaxface reconstruct` layout, 68 landmarks
        write_obj(folder / f"{image}_neutral.obj", mesh, triangles)
        faces.write_points(folder / f"{image}_lmk68.txt", lmk)
      elif (k, challenge) == (1, "selfie"):
        faces.write_obj(folder / f"{image}.obj", mesh, triangles)  # no landmarks: a failure
      elif (k, challenge) == (1, "multiview_neutral"):
        import trimesh  # pylint: disable=import-outside-toplevel
        trimesh.Trimesh(mesh, triangles, process=False).export(folder / f"{image}.ply")
        np.save(folder / f"{image}.npy", seven[None].astype(np.float32))
      elif challenge == "multiview_expressions":
        faces.write_obj(folder / f"{image}.obj", mesh, triangles)
        faces.write_points(folder / f"{image}.txt", seven)
      else:
        faces.write_obj(folder / f"{image}.obj", mesh, triangles)
        np.save(folder / f"{image}.npy", seven)
  (gt / "imagepathsvalidation.txt").write_text("\n".join(lines) + "\n")
  return pred, gt, {
      "missing": [f"{NOW_SUBJECTS[1]}/multiview_expressions/IMG_0054",
                  f"{NOW_SUBJECTS[1]}/selfie/IMG_0303"],
      "shape_error": f"{NOW_SUBJECTS[0]}/selfie/IMG_0303",
      "scaled": f"{NOW_SUBJECTS[1]}/multiview_occlusions/IMG_0020"}


MICC_SCANS = {"subject_01": ("frontal1", "110920150452"), "subject_02": ("frontal2", "110920151200")}


def make_micc(root):
  """MICC Florence layout (`Florence/subject_XX/Model/...`, `Video/...`) + predictions.

  subject_01: one mesh per video (exact), per-frame `_neutral` meshes whose average is
  exact (each frame alone is not), `identity_neutral.obj` 5% too large; subject_02
  (frontal2 only): exact, missing PTZ-Indoor, PTZ-Outdoor with a forehead bump.
  """
  gt, pred = root / "Florence", root / "micc_pred"
  for k, (subject, (model, stamp)) in enumerate(MICC_SCANS.items()):
    vertices, triangles, lmk68 = subject_face(k, step=3.0)
    offset = np.array([12.0, -30.0, 850.0])  # scanner frame: y up, z towards the viewer
    folder = gt / subject / "Model" / model / "obj"
    faces.write_obj(folder / f"{stamp}.obj", vertices + offset, triangles)
    (folder / f"{stamp}.mtl").write_text("newmtl material0\nmap_Kd texture.bmp\n")
    side = gt / subject / "Model" / "sidel" / "obj"
    faces.write_obj(side / "110920150613.obj", np.eye(3), [[0, 1, 2]])  # a side scan: unused
    (gt / subject / "Video").mkdir(parents=True)
    for setting in ("Indoor-Cooperative", "PTZ-Indoor", "PTZ-Outdoor"):
      (gt / subject / "Video" / f"{setting}.mjpg").write_bytes(b"\xff\xd8\xff\xe0 not a video")
    pose = _small_turn(k)
    out = pred / subject
    out.mkdir(parents=True)
    faces.write_obj(out / "Indoor-Cooperative.obj", pose(vertices), triangles)
    if k == 0:
      bump = _bump(vertices, height=2.0) - vertices
      frames = out / "PTZ-Indoor"
      for name, sign in (("frame_0001", 1.0), ("frame_0002", -1.0)):
        write_obj(frames / f"{name}_neutral.obj", pose(vertices + sign * bump), triangles)
        faces.write_points(frames / f"{name}_lmk68.txt", pose(lmk68))
        faces.write_obj(frames / f"{name}.obj", pose(vertices)[:3], [[0, 1, 2]])  # expression
      write_obj(out / "PTZ-Outdoor" / "identity_neutral.obj", pose(vertices * 1.05), triangles)
      faces.write_points(out / "PTZ-Outdoor" / "identity_lmk68.txt", pose(lmk68 * 1.05))
    else:
      faces.write_obj(out / "PTZ-Outdoor.obj", pose(_bump(vertices)), triangles)
  return pred, gt


def _small_turn(k):
  """A prediction's frame: a few degrees off frontal, elsewhere (mm)."""
  angle = np.radians(4.0 + k)
  c, s = np.cos(angle), np.sin(angle)
  rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
  return lambda points: points @ rotation.T + [3.0, 5.0, -40.0]


AFLW_YAWS = {"image00002": 10.0, "image00004": -25.0, "image00006": 45.0, "image00008": 70.0,
             "image00010": -80.0, "image00013": 5.0}
AFLW_OFFSETS = {"image00002": (3.0, 4.0), "image00004": (0.0, 1.0), "image00006": (6.0, 8.0),
                "image00008": (1.0, 0.0), "image00010": (0.0, 2.0)}  # image00013: no prediction


def make_aflw2000(root):
  """AFLW2000-3D layout (flat `imageXXXXX.jpg` + `.mat`) + predictions; returns expected NMEs."""
  gt, pred = root / "AFLW2000", root / "aflw_pred"
  pred.mkdir(parents=True)
  expected = {}
  for index, (stem, yaw) in enumerate(AFLW_YAWS.items()):
    _jpeg(gt / f"{stem}.jpg", size=(450, 450))
    rng = np.random.default_rng(index)
    xy = rng.uniform(100, 300, size=(68, 2))
    points = np.concatenate([xy, rng.uniform(-50, 50, size=(68, 1))], 1).T  # [3, 68]
    pose = np.array([[0.1, np.radians(yaw), -0.05, 220.0, 230.0, 10.0, 0.0012]])
    scipy.io.savemat(gt / f"{stem}.mat", {
        "pt3d_68": points, "Pose_Para": pose, "pt2d": xy[:21].T,
        "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    if stem in AFLW_OFFSETS:
      box = np.ptp(xy, axis=0)
      expected[stem] = 100 * np.hypot(*AFLW_OFFSETS[stem]) / np.sqrt(box[0] * box[1])
      predicted = xy + AFLW_OFFSETS[stem]
      if index % 2:
        np.save(pred / f"{stem}.npy", np.concatenate([predicted, np.zeros((68, 1))], 1))
      else:
        faces.write_points(pred / f"{stem}.txt", predicted)
  return pred, gt, expected


SYNTH_FRAMES = (("00000", 0, []), ("00000", 1, ["expression"]),
                ("00001", 0, ["large_pose", "occluded"]), ("00001", 1, []))


def make_synthetic(root):
  """`jaxface synth --eval-layout` split + single-image and multi-frame predictions.

  Single image: 00000_00 exact, 00000_01 10% too large, 00001_00 missing, 00001_01 exact.
  Multi-frame: both identities exact. Each frame's ground truth has 2D landmarks (a
  40 x 90 px box); each single-image prediction's params.json has fitted landmarks 1 px
  right of them and detected ones 3 px below (NME 100/60 and 300/60 %).
  """
  gt, pred, multi = root / "synth" / "test", root / "synth_pred", root / "synth_pred_mf"
  entries = []
  for identity, frame, tags in SYNTH_FRAMES:
    image = f"images/{identity}_{frame:02d}.png"
    (gt / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(gt / image)
    entries.append({"image": image, "identity": identity, "tags": tags})
  for k, identity in enumerate(("00000", "00001")):
    vertices, triangles, lmk68 = subject_face(k)
    (gt / "ground_truth").mkdir(parents=True, exist_ok=True)
    box = np.random.default_rng(k).uniform(0, 1, (2, 68, 2)) * [40.0, 90.0] + [50.0, 20.0]
    box[:, 0], box[:, 1] = [50.0, 20.0], [90.0, 110.0]  # the box's corners: exactly 40 x 90
    np.savez(gt / "ground_truth" / f"{identity}.npz",
             neutral_vertices=vertices.astype(np.float32), triangles=triangles.astype(np.int32),
             landmarks_3d=lmk68.astype(np.float32), landmarks_2d=box.astype(np.float32),
             tags=np.array(["", ""]))
    pose = faces.random_similarity(40 + k)
    write_obj(multi / identity / "identity_neutral.obj", pose.apply(vertices), triangles)
    faces.write_points(multi / identity / "identity_lmk68.txt", pose.apply(lmk68))
    for frame in (0, 1):
      if (identity, frame) == ("00001", 0):
        continue
      scale = 1.1 if (identity, frame) == ("00000", 1) else 1.0
      stem = f"{identity}_{frame:02d}"
      write_obj(pred / f"{stem}_neutral.obj", pose.apply(vertices) * scale, triangles)
      faces.write_points(pred / f"{stem}_lmk68.txt", pose.apply(lmk68) * scale)
      points = {"fitted": (box[frame] + [1.0, 0.0]).tolist(),
                "detected": (box[frame] + [0.0, 3.0]).tolist()}
      (pred / f"{stem}_params.json").write_text(json.dumps({"landmarks_68_photo_px": points}))
  (gt / "frames.json").write_text(json.dumps({"frames": entries}))
  return pred, multi, gt
