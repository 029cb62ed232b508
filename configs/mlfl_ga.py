"""MLFL-GA coarse stage (seed 001): prior-information encoder with RGA + FPN, multi-level losses.

Run (the `train` command is wired by the CLI):

  jaxface train --config configs/mlfl_ga.py --workdir DIR
  jaxface train --config configs/mlfl_ga.py:smoke --workdir DIR   # CPU, about a minute

Sections: `input` (the input pipeline's `config.input`, data_pipelines/input_pipeline.py;
`frames` >= 2 for the shape-consistency term), `model` (the encoder), `morphable` (face
model spec), `render`, `loss_weights` (0 skips a term), `loss` (term options), `train`
(the loop, jaxface/train/loop.py), `eval`. Loss definitions: jaxface/train/mlfl_ga.py.
The detail stage (UV displacements, ID-MRF) is not implemented.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The MLFL-GA coarse-stage config.

  `arg="smoke"`: a CPU-minute variant (tests). `arg="cpu"`: the CPU learning run (2
  cores, about 22 minutes with its evaluations): a 64-px tiny encoder that also reads
  the landmark coordinates, trained on the synthetic data's supervised shape and
  expression plus the landmark term. The render-based terms are off: on a 2-core CPU
  the renderer costs ~55 ms per 64-px image forward+backward (benchmarks/
  train_bench.py), 20x the tiny encoder.
  """
  if arg not in (None, "", "smoke", "cpu"):
    raise ValueError(f"unknown config variant {arg!r}: use none, 'smoke' or 'cpu'")
  config = ml_collections.ConfigDict()
  config.method = "mlfl_ga"
  config.parallelism = "shard_map"
  config.seed = 0
  config.distributed = False

  batch_size = ml_collections.FieldReference(18)  # the paper's batch; input and train share it
  config.input = ml_collections.ConfigDict({
      "data_dir": "",
      "batch_size": batch_size,
      "frames": 2,  # two images of one person per sample: shape consistency
      "image_size": 224,
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
      "landmark_channels": "heatmaps",  # 68 heatmaps + mask; "map": 1 channel + mask
      "heatmap_sigma": 3.0,  # pixels at 224, scaled with the crop
      "rga_stages": (1, 2, 3, 4),
      "fpn_width": 256,
      "hidden": 1024,
      "head_init_scale": 1e-4,
      "camera_scale_init": 0.01,  # normalised image units per mm
      "light_init": 1.0,
      "landmark_vector": False,  # also regress from the landmark coordinates (extension)
  })
  config.morphable = ml_collections.ConfigDict({"model": "bfm_sim_front"})
  config.render = ml_collections.ConfigDict({
      "edge_antialias": True,
      "on_overflow": "warn",
  })
  # DECA's coarse weights where the paper gives none (photometric, landmark, eye,
  # identity); the paper's new terms at 1.
  config.loss_weights = ml_collections.ConfigDict({
      "photometric": 2.0,
      "mask": 1.0,
      "landmark": 1.0,
      "eye_closure": 1.0,
      "ssim": 1.0,
      "identity": 0.2,
      "shape_consistency": 1.0,
      "shape_reg": 1e-4,
      "expression_reg": 1e-4,
      "albedo_reg": 1e-4,
      "supervised": 0.0,  # synthetic data only: MSE to the ground-truth coefficients
  })
  config.loss = ml_collections.ConfigDict({
      "identity_net": "dlib_resnet_v1",
      "consistency_albedo": True,  # roll albedo with shape in shape consistency
      "supervised_blocks": ("shape", "expression", "albedo"),  # what `supervised` fits
  })
  config.train = ml_collections.ConfigDict({
      "num_steps": 300_000,
      "batch_size": batch_size,
      "learning_rate": 1e-4,  # Adam (the paper's)
      "schedule": "constant",  # or "cosine": decayed to 0 at num_steps
      "log_every": 100,
      "checkpoint_every": 5_000,
      "keep_checkpoints": 3,
      "image_every": 5_000,
      "eval_every": 0,
  })
  config.eval = ml_collections.ConfigDict({
      "split": "validation",
      "batch_size": 16,
      "num_batches": 8,
  })

  if arg == "smoke":
    batch_size.set(8)
    config.input.image_size = 64
    config.input.shuffle_buffer = 16
    config.input.augment = False
    config.input.prefetch = 1
    config.model.backbone = "tiny"
    config.model.rga_stages = (3, 4)
    config.model.fpn_width = 16
    config.model.hidden = 32
    config.model.landmark_channels = "map"
    config.loss_weights.identity = 0.0  # the recognition net is slow on CPU
    config.loss_weights.supervised = 1.0
    config.train.num_steps = 4
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    config.train.keep_checkpoints = 2
    config.train.image_every = 0
    config.eval.batch_size = 8
    config.eval.num_batches = 1
  if arg == "cpu":
    batch_size.set(32)
    config.input.frames = 1
    config.input.image_size = 64
    config.input.shuffle_buffer = 512
    config.model.backbone = "tiny"
    config.model.rga_stages = (3, 4)
    config.model.fpn_width = 16
    config.model.hidden = 256
    config.model.landmark_channels = "map"
    config.model.landmark_vector = True
    for name in config.loss_weights:
      config.loss_weights[name] = 0.0
    config.loss_weights.landmark = 1.0
    config.loss_weights.supervised = 1.0
    config.loss.supervised_blocks = ("shape", "expression")
    config.train.learning_rate = 1e-3
    config.train.schedule = "cosine"
    config.train.num_steps = 8_000
    config.train.log_every = 500
    config.train.checkpoint_every = 2_000
    config.train.image_every = 2_000
    config.train.eval_every = 2_000
    config.eval.batch_size = 16
    config.eval.num_batches = 2
  return config
