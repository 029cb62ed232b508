"""Config files: `configs/<method>.py[:variant]` + `--config.a.b=value` overrides.

A config file is a Python module with `get_config(arg=None) -> ml_collections.ConfigDict`
(DESIGN.md §6). Overrides take the type of the field they replace.
"""

import ast
import importlib.util
import json
import pathlib

import ml_collections

from jaxface.errors import JaxfaceError

CONFIG_JSON = "config.json"  # the resolved config, saved in every workdir


def load_config(spec: str, overrides=()) -> ml_collections.ConfigDict:
  """Loads `path.py` or `path.py:variant` and applies `config.a.b=value` overrides.

  Args:
    spec: a config file, optionally with `:variant` passed to `get_config`.
    overrides: strings "config.train.batch_size=8" (a leading "--" is allowed).
  Raises:
    JaxfaceError: a missing file, a file without `get_config`, an unknown variant or
      field, or a value of the wrong type; one line naming it.
  """
  path, _, variant = spec.partition(":")
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxfaceError(f"{path}: no such config file")
  module_spec = importlib.util.spec_from_file_location(f"jaxface_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # a user's file: report, don't trace back
    raise JaxfaceError(f"{path}: cannot load ({type(e).__name__}: {e})") from None
  if not hasattr(module, "get_config"):
    raise JaxfaceError(f"{path}: defines no get_config()")
  try:
    config = module.get_config(variant or None)
  except ValueError as e:
    raise JaxfaceError(f"{path}: {e}") from None
  for override in overrides:
    apply_override(config, override)
  return config


def _parse_value(text: str, old):
  if isinstance(old, bool):
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"expected true/false, got {text!r}")
  if isinstance(old, str) or old is None:
    return text
  value = ast.literal_eval(text)
  if isinstance(old, float) and isinstance(value, int):
    value = float(value)
  if isinstance(old, (tuple, list)) and isinstance(value, (tuple, list)):
    return type(old)(value)
  if not isinstance(value, type(old)):
    raise ValueError(f"expected {type(old).__name__}, got {text!r}")
  return value


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Sets one `config.a.b=value` (the value parsed as the field's current type)."""
  key, sep, text = override.lstrip("-").partition("=")
  if not sep or not key.startswith("config."):
    raise JaxfaceError(f"{override}: overrides look like --config.train.batch_size=8")
  *parents, name = key[len("config."):].split(".")
  node = config
  for part in parents:
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise JaxfaceError(f"{override}: the config has no section {part!r}")
    node = node[part]
  if name not in node:
    raise JaxfaceError(f"{override}: the config has no field {key[len('config.'):]!r}")
  try:
    node[name] = _parse_value(text, node[name])
  except (ValueError, SyntaxError) as e:
    raise JaxfaceError(f"{override}: {e}") from None


def save_config(config: ml_collections.ConfigDict, workdir) -> None:
  """Writes the resolved config as `workdir/config.json` (for export and inspection)."""
  from jaxface import files  # pylint: disable=import-outside-toplevel
  files.write_json(pathlib.Path(workdir) / CONFIG_JSON, json.loads(config.to_json_best_effort()))


def read_config(workdir) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (`save_config`)."""
  path = pathlib.Path(workdir) / CONFIG_JSON
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except (OSError, json.JSONDecodeError) as e:
    raise JaxfaceError(f"{path}: not a jaxface training workdir ({e})") from None
