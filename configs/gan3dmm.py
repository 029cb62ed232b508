"""GAN-3DMM (seed 000): ResNet-50 coefficient regressor + prior discriminator.

Run (the `train` command is wired by the CLI):

  jaxface train --config configs/gan3dmm.py --workdir DIR
  jaxface train --config configs/gan3dmm.py:smoke --workdir DIR   # CPU, about a minute

Sections: `input` (the input pipeline's `config.input`, data_pipelines/input_pipeline.py),
`model` (networks), `morphable` (face model spec), `render`, `loss_weights` (0 skips a
term), `loss` (term options), `train` (the loop, jaxface/train/loop.py), `eval`.
See jaxface/train/gan3dmm.py for the loss definitions.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The GAN-3DMM config; `arg="smoke"` gives a CPU-minute variant."""
  if arg not in (None, "", "smoke"):
    raise ValueError(f"unknown config variant {arg!r}: use none or 'smoke'")
  config = ml_collections.ConfigDict()
  config.method = "gan3dmm"
  config.parallelism = "shard_map"
  config.seed = 0
  config.distributed = False

  batch_size = ml_collections.FieldReference(64)  # input and train share it
  config.input = ml_collections.ConfigDict({
      "data_dir": "",
      "batch_size": batch_size,
      "frames": 1,  # single-image method
      "image_size": 224,  # the paper's crops
      "shuffle_buffer": 1024,
      "seed": 0,
      "augment": True,
      "position_map": False,
      "ground_truth": True,
      "detail": False,
      "repeat": True,
      "prefetch": 2,
  })
  config.model = ml_collections.ConfigDict({
      "backbone": "resnet50",
      "norm": "batch",
      "head_init_scale": 1e-4,
      "discriminator_hidden": (512, 512),
      "discriminator_slope": 0.2,
      "light_init": 1.0,  # irradiance of the ambient SH light added to G's output
  })
  config.morphable = ml_collections.ConfigDict({"model": "bfm_sim_front"})
  config.render = ml_collections.ConfigDict({
      "edge_antialias": True,
      "on_overflow": "warn",
  })
  config.loss_weights = ml_collections.ConfigDict({
      "gan": 1.0,
      "identity": 1.0,
      "skin": 1.0,
      "landmark": 0.0,  # optional extra: 68-landmark L2 in 224-px units
      "prior": 0.0,  # optional extra: mean squared normalised coefficient
      "supervised": 0.0,  # synthetic data only: MSE to the ground-truth coefficients
  })
  config.loss = ml_collections.ConfigDict({
      "gan_kind": "non_saturating",  # or "minimax" (eq. 2 literally), "lsgan"
      "identity_net": "dlib_resnet_v1",
      "landmark_norm": "l2",
      "supervised_blocks": ("shape", "expression", "albedo"),  # what `supervised` fits
  })
  config.train = ml_collections.ConfigDict({
      "num_steps": 200_000,
      "batch_size": batch_size,
      "learning_rate": 1e-4,  # Adam, both networks (the paper's)
      "schedule": "constant",  # or "cosine": decayed to 0 at num_steps
      "log_every": 100,
      "checkpoint_every": 5_000,
      "keep_checkpoints": 3,
      "image_every": 5_000,
      "eval_every": 0,
  })
  config.eval = ml_collections.ConfigDict({
      "split": "validation",
      "batch_size": 32,
      "num_batches": 8,
  })

  if arg == "smoke":
    batch_size.set(8)
    config.input.image_size = 64
    config.input.shuffle_buffer = 16
    config.input.augment = False
    config.input.prefetch = 1
    config.model.backbone = "tiny"
    config.model.discriminator_hidden = (32, 32)
    config.loss_weights.identity = 0.0  # the recognition net is slow on CPU
    config.loss_weights.landmark = 0.02
    config.loss_weights.prior = 0.01
    config.loss_weights.supervised = 1.0
    config.train.num_steps = 4
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.keep_checkpoints = 2
    config.train.image_every = 0
    config.eval.batch_size = 8
    config.eval.num_batches = 1
  return config
