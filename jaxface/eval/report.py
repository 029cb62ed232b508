"""Evaluation reports: the `Report` record, its JSON, a readable table, cumulative curves.

`write_report` writes `report.json`, `table.txt` and `cumulative_error.png` (the
cumulative error curve people compare methods with: % of errors below x), each to a
temporary file renamed into place.
"""

import dataclasses
import pathlib

import numpy as np

from jaxface.files import atomic_path, write_json

STAT_ORDER = ("count", "median", "mean", "std")
MAX_LISTED_FAILURES = 50  # in the table; report.json lists them all


@dataclasses.dataclass
class Report:
  """The outcome of one protocol run.

  Attributes:
    protocol: "now", "micc", "aflw2000" or "synthetic".
    title: one line describing the run (protocol, variant, units).
    unit: unit of every statistic ("mm", or "% of sqrt(w*h)" for NME).
    results: {metric: {group: {stat: value}}}, stats from `STAT_ORDER`.
    items: one JSON-ready dict per evaluated prediction.
    failures: [{"item": name, "reason": text}] for predictions that could not be used.
    curves: {label: [N] errors} for the cumulative error plot (not written to JSON).
    curve_label: the plot's x-axis label. curve_max: its x-axis limit.
    settings: protocol constants used (crop radius, variant, units), for the JSON.
  """
  protocol: str
  title: str
  unit: str
  results: dict
  items: list
  failures: list
  curves: dict = dataclasses.field(default_factory=dict)
  curve_label: str = "error [mm]"
  curve_max: float = 8.0
  settings: dict = dataclasses.field(default_factory=dict)


def statistics(values, *, median: bool = True) -> dict:
  """{"count", "median", "mean", "std"} of a 1-D array (population std, like numpy)."""
  values = np.asarray(values, np.float64).ravel()
  if len(values) == 0:
    out = {"count": 0, "median": None, "mean": None, "std": None}
  else:
    out = {"count": len(values), "median": float(np.median(values)),
           "mean": float(np.mean(values)), "std": float(np.std(values))}
  if not median:
    del out["median"]
  return out


def _rounded(value):
  if isinstance(value, float):
    return round(value, 6)
  if isinstance(value, dict):
    return {k: _rounded(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_rounded(v) for v in value]
  return value


def to_json(report: Report) -> dict:
  """The report as a JSON-ready dict (floats rounded to 1e-6)."""
  return _rounded({
      "protocol": report.protocol, "title": report.title, "unit": report.unit,
      "num_evaluated": len(report.items), "num_failed": len(report.failures),
      "results": report.results, "settings": report.settings,
      "failures": report.failures, "items": report.items})


def _cell(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, int):
    return str(value)
  return f"{value:.4f}"


def format_table(report: Report) -> str:
  """A fixed-width text table: one row per (metric, group), then the failures."""
  stats = [s for s in STAT_ORDER
           if any(s in g for groups in report.results.values() for g in groups.values())]
  rows = [(metric, group, *[_cell(values.get(s)) for s in stats])
          for metric, groups in report.results.items() for group, values in groups.items()]
  header = ("metric", "group", *stats)
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  lines = [report.title,
           f"{len(report.items)} evaluated, {len(report.failures)} failed; unit: {report.unit}"]

  def fmt(row):
    return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths)))
  lines.append(fmt(header))
  lines.append("  ".join("-" * w for w in widths))
  lines += [fmt(r) for r in rows]
  if report.failures:
    lines.append(f"failures ({len(report.failures)}):")
    lines += [f"  {f['item']}: {f['reason']}" for f in report.failures[:MAX_LISTED_FAILURES]]
    if len(report.failures) > MAX_LISTED_FAILURES:
      lines.append(f"  ... {len(report.failures) - MAX_LISTED_FAILURES} more in report.json")
  return "\n".join(lines) + "\n"


def plot_cumulative(curves: dict, path, *, xlabel: str = "error [mm]", xmax: float = 8.0,
                    title: str = "") -> None:
  """Writes a cumulative error plot (percentage of errors <= x) as PNG, atomically.

  Args:
    curves: {label: [N] errors}; empty arrays are skipped.
    path: the `.png` path. xlabel, xmax: x-axis label and upper limit. title: plot title.
  """
  # The Agg canvas directly: no pyplot, no global backend switch, no display needed.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  figure = Figure(figsize=(6.4, 4.8), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(111)
  for label, values in curves.items():
    values = np.sort(np.asarray(values, np.float64).ravel())
    if len(values) == 0:
      continue
    # The empirical CDF sampled on a fine grid: exact at each x, cheap for millions of points.
    x = np.linspace(0.0, xmax, 2001)
    percent = 100.0 * np.searchsorted(values, x, side="right") / len(values)
    axes.plot(x, percent, label=f"{label} (n={len(values)})")
  axes.set_xlim(0, xmax)
  axes.set_ylim(0, 100)
  axes.set_yticks(np.arange(0, 101, 20))
  axes.set_xlabel(xlabel)
  axes.set_ylabel("percentage [%]")
  axes.grid(True, alpha=0.3)
  if title:
    axes.set_title(title, fontsize=10)
  if curves:
    axes.legend(loc="lower right", fontsize=8)
  with atomic_path(path) as tmp:
    figure.savefig(tmp, format="png")


def write_report(report: Report, out_dir) -> dict:
  """Writes report.json, table.txt and cumulative_error.png under `out_dir` (created).

  Returns:
    {"json": path, "table": path, "plot": path}.
  """
  out_dir = pathlib.Path(out_dir)
  paths = {"json": out_dir / "report.json", "table": out_dir / "table.txt",
           "plot": out_dir / "cumulative_error.png"}
  write_json(paths["json"], to_json(report))
  with atomic_path(paths["table"]) as tmp:
    tmp.write_text(format_table(report), encoding="utf-8")
  plot_cumulative(report.curves, paths["plot"], xlabel=report.curve_label,
                  xmax=report.curve_max, title=report.title.split(":")[0])
  return paths
