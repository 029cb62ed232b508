"""`jaxface evaluate` on tiny datasets laid out exactly like NoW, MICC, AFLW2000-3D, synth."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxface import cli
from jaxface.eval import now
from tests.eval import layouts


def _run(capsys, *argv):
  status = cli.main(["evaluate", *argv])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def _report(out_dir):
  return json.loads((out_dir / "report.json").read_text())


def test_now_official_and_jaxface_layouts_with_failures(tmp_path, capsys):
  pred, gt, expect = layouts.make_now(tmp_path)
  out = tmp_path / "out"
  status, stdout, stderr = _run(capsys, "--protocol", "now", "--pred", str(pred), "--gt", str(gt),
                                "--out", str(out))
  assert status == 1  # two predictions missing
  report = _report(out)
  assert report["num_evaluated"] == 6 and report["num_failed"] == 2
  assert sorted(f["item"] for f in report["failures"]) == expect["missing"]
  assert "has no landmarks" in json.dumps(report["failures"])
  groups = report["results"]["non_metrical"]
  assert list(groups) == ["all", *now.CHALLENGES]
  assert groups["multiview_neutral"]["count"] > 1000
  assert groups["all"]["count"] == sum(item["count"] for item in report["items"])
  for name in ("multiview_neutral", "multiview_expressions", "multiview_occlusions"):
    assert groups[name]["median"] < 1e-3, name  # exact shapes, in any pose and scale
  items = {item["item"]: item for item in report["items"]}
  assert items[expect["shape_error"]]["mean"] > 0.1  # the forehead bump
  assert groups["selfie"]["mean"] == pytest.approx(items[expect["shape_error"]]["mean"])
  assert items[expect["scaled"]]["scale"] == pytest.approx(1 / 1.1, rel=1e-4)
  # Readable table and progress on stderr; the table is also written.
  assert "multiview_occlusions" in stdout and "failures (2):" in stdout
  assert stdout == (out / "table.txt").read_text()
  assert "[1/8]" in stderr and "FAILED" in stderr
  with Image.open(out / "cumulative_error.png") as image:
    assert image.format == "PNG" and image.size == (640, 480)
  assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_now_metrical_penalises_the_scaled_prediction(tmp_path, capsys):
  pred, gt, expect = layouts.make_now(tmp_path)
  status, stdout, _ = _run(capsys, "--protocol", "now", "--pred", str(pred), "--gt", str(gt),
                           "--metrical", "--json")
  assert status == 1
  report = json.loads(stdout)
  items = {item["item"]: item for item in report["items"]}
  assert report["results"]["metrical"]["multiview_neutral"]["median"] < 1e-3
  assert items[expect["scaled"]]["median"] > 0.5
  assert items[expect["scaled"]]["scale"] == 1.0


def test_now_nested_layout_is_found(tmp_path):
  _, gt, _ = layouts.make_now(tmp_path)
  nested = tmp_path / "nested" / "NoW_Dataset" / "final_release_version"
  nested.mkdir(parents=True)
  for name in ("scans", "scans_lmks_onlypp", "imagepathsvalidation.txt"):
    (gt / name).rename(nested / name)
  image_list, scans, _ = now.dataset_paths(tmp_path / "nested")
  assert image_list.parent == nested and scans == nested / "scans"


def test_now_malformed_files_are_one_line_errors(tmp_path, capsys):
  pred, gt, _ = layouts.make_now(tmp_path)
  bad = pred / layouts.NOW_SUBJECTS[0] / "multiview_neutral" / "IMG_0101.obj"
  bad.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
  status, stdout, stderr = _run(capsys, "--protocol", "now", "--pred", str(pred), "--gt", str(gt))
  assert status == 2 and stdout == ""
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("jaxface: error: ") and f"{bad}:3: face index out of range" in last
  assert "Traceback" not in stderr
  pp = next((gt / "scans_lmks_onlypp").rglob("*.pp"))
  pp.write_text("<PickedPoints><point x='1' y='2' z='3'/></PickedPoints>")
  bad.unlink()
  status, _, stderr = _run(capsys, "--protocol", "now", "--pred", str(pred), "--gt", str(gt))
  assert status == 2 and f"{pp}: expected 7x3 landmarks, got 1x3" in stderr


def test_micc_per_video_pooling_and_failures(tmp_path, capsys):
  pred, gt = layouts.make_micc(tmp_path)
  out = tmp_path / "out"
  status, stdout, stderr = _run(capsys, "--protocol", "micc", "--pred", str(pred), "--gt", str(gt),
                                "--out", str(out))
  assert status == 1
  report = _report(out)
  assert [f["item"] for f in report["failures"]] == ["subject_02/PTZ-Indoor"]
  rmse = report["results"]["point_to_plane_rmse"]
  assert rmse["Indoor-Cooperative"]["count"] == 2 and rmse["Indoor-Cooperative"]["mean"] < 1e-3
  assert rmse["PTZ-Indoor"]["count"] == 1 and rmse["PTZ-Indoor"]["mean"] < 1e-3  # the average
  items = {item["item"]: item for item in report["items"]}
  assert items["subject_01/PTZ-Indoor"]["frames"] == 2
  assert items["subject_01/PTZ-Outdoor"]["rmse"] < 1e-3  # 5% too large: ICP has a scale
  assert items["subject_01/PTZ-Outdoor"]["scale"] == pytest.approx(1 / 1.05, rel=1e-4)
  assert items["subject_02/PTZ-Outdoor"]["rmse"] > 0.1  # the forehead bump
  assert "frontal2" in items["subject_02/Indoor-Cooperative"]["scan"]
  assert "PTZ-Outdoor" in stdout and "point-to-plane RMSE" in stderr


def test_micc_pools_only_one_topology(tmp_path, capsys):
  pred, gt = layouts.make_micc(tmp_path)
  frame = pred / "subject_01" / "PTZ-Indoor" / "frame_0002_neutral.obj"
  frame.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
  status, _, stderr = _run(capsys, "--protocol", "micc", "--pred", str(pred), "--gt", str(gt))
  assert status == 2 and f"{frame}: topology differs" in stderr


def test_micc_single_frame_of_a_pair_is_worse_than_their_average(tmp_path):
  from jaxface.eval import mesh_files, micc  # pylint: disable=import-outside-toplevel
  pred, gt = layouts.make_micc(tmp_path)
  scan = mesh_files.read_mesh(micc.scan_path(gt / "subject_01"))[0]
  vertices, triangles = mesh_files.read_mesh(pred / "subject_01" / "PTZ-Indoor" /
                                             "frame_0001_neutral.obj")
  assert micc.micc_rmse(vertices, triangles, scan).rmse > 0.05


def test_aflw2000_nme_per_yaw_bin(tmp_path, capsys):
  pred, gt, expected = layouts.make_aflw2000(tmp_path)
  out = tmp_path / "out"
  status, stdout, _ = _run(capsys, "--protocol", "aflw2000", "--pred", str(pred), "--gt", str(gt),
                           "--out", str(out))
  assert status == 1  # image00013 has no prediction
  report = _report(out)
  assert [f["item"] for f in report["failures"]] == ["image00013"]
  nme = report["results"]["nme_percent"]
  bins = {"0-30": ["image00002", "image00004"], "30-60": ["image00006"],
          "60-90": ["image00008", "image00010"]}
  for name, stems in bins.items():
    assert nme[name]["count"] == len(stems)
    assert nme[name]["mean"] == pytest.approx(np.mean([expected[s] for s in stems]), abs=1e-5)
  means = [np.mean([expected[s] for s in stems]) for stems in bins.values()]
  assert nme["mean_of_bins"]["mean"] == pytest.approx(np.mean(means), abs=1e-5)
  assert "mean_of_bins" in stdout


def test_synthetic_single_image_and_multi_frame(tmp_path, capsys):
  pred, multi, gt = layouts.make_synthetic(tmp_path)
  status, stdout, _ = _run(capsys, "--protocol", "synthetic", "--pred", str(pred), "--gt", str(gt),
                           "--json")
  assert status == 1
  report = json.loads(stdout)
  assert [f["item"] for f in report["failures"]] == ["00001_00"]
  loose, metrical = report["results"]["non_metrical"], report["results"]["metrical"]
  assert list(loose) == ["all", "expression", "neutral"]  # 00001_00 (large_pose, occluded) failed
  assert loose["neutral"]["count"] == metrical["neutral"]["count"] > 0
  assert loose["expression"]["median"] < 1e-3 and metrical["expression"]["median"] > 0.5
  assert metrical["neutral"]["median"] < 1e-3
  fitted, detected = (report["results"][f"landmark_nme_{k}"] for k in ("fitted", "detected"))
  assert fitted["all"]["count"] == 3 and fitted["all"]["mean"] == pytest.approx(100 / 60)
  assert detected["expression"]["median"] == pytest.approx(300 / 60)
  status, stdout, _ = _run(capsys, "--protocol", "synthetic", "--pred", str(multi), "--gt", str(gt),
                           "--multi-frame", "--json")
  assert status == 0
  report = json.loads(stdout)
  assert report["num_evaluated"] == 2 and list(report["results"]["metrical"]) == ["all"]
  assert report["results"]["metrical"]["all"]["median"] < 1e-3


def test_synthetic_baselines_mean_face_and_oracle(tmp_path, capsys, front_model):
  """Ground truth in the model's identity span: the oracle recovers it, the mean face
  does not; each identity's mesh is aligned once and scored for each of its frames."""
  from jaxface import morphable  # pylint: disable=import-outside-toplevel
  gt = tmp_path / "test"
  (gt / "ground_truth").mkdir(parents=True)
  shape = 1.5 * np.random.default_rng(0).normal(size=front_model.num_shape)
  truth = np.asarray(morphable.decode(front_model, shape, np.zeros(front_model.num_expression)))
  entries = [{"image": f"images/00000_0{t}.png", "identity": "00000", "tags": tags}
             for t, tags in enumerate([[], ["occluded"]])]
  (gt / "frames.json").write_text(json.dumps({"frames": entries}))
  np.savez(gt / "ground_truth" / "00000.npz", neutral_vertices=truth.astype(np.float32),
           triangles=np.asarray(front_model.triangles, np.int32),
           landmarks_3d=np.asarray(morphable.landmarks_3d(front_model, truth), np.float32),
           tags=np.array(["", "occluded"]))
  medians = {}
  for baseline in ("mean_face", "oracle"):
    status, stdout, _ = _run(capsys, "--protocol", "synthetic", "--baseline", baseline,
                             "--gt", str(gt), "--json")
    report = json.loads(stdout)
    assert status == 0 and report["num_evaluated"] == 2
    loose = report["results"]["non_metrical"]
    assert loose["occluded"]["median"] == loose["neutral"]["median"]  # one mesh, aligned once
    medians[baseline] = loose["all"]["median"]
  assert medians["oracle"] < 0.02 < 0.3 < medians["mean_face"]


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "micc", "--metrical"], "--metrical applies to --protocol now"),
    (["--protocol", "now", "--multi-frame"], "--multi-frame applies to --protocol synthetic"),
    (["--protocol", "now"], "not a NoW dataset folder"),
    (["--protocol", "aflw2000"], "no imageXXXXX.mat files"),
    (["--protocol", "synthetic"], "frames.json: no such file"),
    (["--protocol", "now", "--baseline", "oracle"], "--baseline applies to --protocol synthetic"),
    (["--protocol", "synthetic", "--baseline", "oracle"], "give --pred"),
])
def test_wrong_folders_and_flags(tmp_path, capsys, argv, message):
  status, _, stderr = _run(capsys, *argv, "--pred", str(tmp_path), "--gt", str(tmp_path))
  assert status == 2 and message in stderr and stderr.count("\n") == 1
