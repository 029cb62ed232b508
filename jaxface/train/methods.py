"""Training methods by name: a small explicit dict (DESIGN.md §6).

`METHODS[name]` is a `Method` (a named tuple): `init_state(config, rng) -> TrainState`,
`make_train_step(config, model=None, topology=None) -> step(state, batch, rng) ->
(state, metrics)` (pure, per device), `predict(config, state, images, landmarks, mask)
-> {coefficient block: [N, ...]}`, `layout(config)` (the coefficient layout `predict`
returns), `camera(config, blocks, (H, W)) -> render.Camera` (how the blocks project) and
`terms` (the loss names `config.loss_weights` may set). The config file of
method `name` is `configs/<name>.py` (`config_module`).

Typical use (what `jaxface train` does):

  method = methods.get(config.method)
  jaxface.train.run(config, workdir,
                    init_state=functools.partial(method.init_state, config),
                    train_step=method.make_train_step(config), batches=...)
"""

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxface.train import gan3dmm, mlfl_ga


class Method(NamedTuple):
  """One training method's entry points (see the module docstring)."""
  init_state: Callable[..., Any]
  make_train_step: Callable[..., Any]
  predict: Callable[..., Any]
  layout: Callable[..., Any]
  camera: Callable[..., Any]
  terms: tuple


METHODS: dict[str, Method] = {
    "gan3dmm": Method(gan3dmm.init_state, gan3dmm.make_train_step, gan3dmm.predict,
                      gan3dmm.layout, gan3dmm.camera, gan3dmm.TERMS),
    "mlfl_ga": Method(mlfl_ga.init_state, mlfl_ga.make_train_step, mlfl_ga.predict,
                      mlfl_ga.layout, mlfl_ga.camera, mlfl_ga.TERMS),
}


def get(name: str) -> Method:
  """The method called `name`; a one-line ValueError listing the known ones otherwise."""
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; known methods: {sorted(METHODS)}")
  return METHODS[name]


def config_module(name: str):
  """The `configs.<name>` module (its `get_config(arg=None)` builds the config)."""
  get(name)
  return importlib.import_module(f"configs.{name}")
