"""`jaxface train` / `export` / `reconstruct --checkpoint`: a smoke run end to end, bad configs."""

import json
import pathlib

import numpy as np
import skimage.data
from PIL import Image

import pytest

from data_pipelines import synthetic
from jaxface import cli, morphable, preprocess, reconstruct, synth
from jaxface.train import checkpoints, inference

ROOT = pathlib.Path(__file__).resolve().parents[2]
GAN = str(ROOT / "configs" / "gan3dmm.py") + ":smoke"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("synth")
  synthetic.write_split(out, identities=8, config=synth.SynthConfig(image_size=32, frames=1),
                        seed=3, workers=1, log=lambda _: None)
  return out


def smoke_args(data_dir, workdir, *extra):
  return ["train", "--config", GAN, "--workdir", str(workdir),
          f"--config.input.data_dir={data_dir}", "--config.input.image_size=32",
          "--config.render.edge_antialias=false", *extra]


def test_train_then_export(data_dir, tmp_path, capsys):
  # (Exact resume is tested on the loop itself: tests/train/test_loop.py.)
  workdir = tmp_path / "run"
  assert cli.main(smoke_args(data_dir, workdir, "--config.train.num_steps=2")) == 0
  assert "trained to step 2" in capsys.readouterr().out
  assert (workdir / "config.json").exists() and list(workdir.glob("events.out.tfevents.*"))
  # Asking for no more steps than the checkpoint holds resumes and does nothing.
  assert cli.main(smoke_args(data_dir, workdir, "--config.train.num_steps=2")) == 0
  out, err = capsys.readouterr()
  assert "trained to step 2" in out and "starting from scratch" not in err
  assert cli.main(["export", "--checkpoint", str(workdir), "--out", str(tmp_path / "g.msgpack")]) == 0
  exported = checkpoints.load_exported(tmp_path / "g.msgpack")
  assert set(exported["params"]) >= {"generator"}
  assert exported["metadata"]["method"] == "gan3dmm"

  # The export drives reconstruct: with --steps 0 the network's estimate is the result.
  out, photo = tmp_path / "out", tmp_path / "astronaut.png"
  Image.fromarray(skimage.data.astronaut()).save(photo)
  assert cli.main(["reconstruct", str(photo), "--checkpoint", str(tmp_path / "g.msgpack"),
                   "--steps", "0", "--no-identity", "--out", str(out)]) == 0
  params = json.loads((out / "astronaut_params.json").read_text())
  targets = reconstruct.fit_targets(preprocess.detect_and_align(preprocess.load_image(photo)),
                                    None)
  expected = inference.fit_init(inference.load_predictor(tmp_path / "g.msgpack"),
                                morphable.default_model("front"), *(
                                    np.asarray(x) for x in (targets.images, targets.landmarks,
                                                            targets.masks)))
  np.testing.assert_allclose(params["shape"], expected["shape"], atol=2e-5)
  np.testing.assert_allclose(params["rotation_euler_xyz_rad"], expected["rotation"][0], atol=2e-5)
  assert (out / "astronaut_neutral.obj").exists()


@pytest.mark.parametrize("extra, message", [
    (["--config.method=prnet"], "unknown method 'prnet'"),
    (["--config.train.batch_size=12"], "not divisible by the 8 devices"),
    (["--config.train.nmu_steps=3"], "no field 'train.nmu_steps'"),
    (["--config.train.num_steps=many"], "num_steps=many"),
])
def test_bad_configs_fail_at_start_with_one_line(data_dir, tmp_path, capsys, extra, message):
  assert cli.main(smoke_args(data_dir, tmp_path / "run", *extra)) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("jaxface: error:") and message in err and "\n" not in err
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_dataset_and_config_file(tmp_path, capsys):
  assert cli.main(smoke_args(tmp_path / "nothing", tmp_path / "run")) == 2
  assert "input.data_dir=" in capsys.readouterr().err
  assert cli.main(["train", "--config", str(tmp_path / "nope.py"), "--workdir", "w"]) == 2
  assert "no such config file" in capsys.readouterr().err
  assert cli.main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
  assert "not a jaxface training workdir" in capsys.readouterr().err
