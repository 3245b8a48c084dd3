"""Loss and accuracy curves from metrics.jsonl records."""

from __future__ import annotations

import functools
import io
import threading

from cnn_lab import paths


@functools.cache
def pyplot():
  """matplotlib's pyplot on the file-only Agg backend, imported on first use: every
  entry point imports this module (through the loop), and matplotlib is 0.45 s of 2.0 s
  of imports; the tools that draw nothing (face, predict, ...) no longer pay it, and a
  training run imports it in the background while it trains
  (`import_pyplot_in_background`)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def import_pyplot_in_background() -> None:
  """Starts `pyplot()` in a daemon thread. The loop calls it as its steps begin, so the
  import overlaps them instead of delaying the closing figure (the quick start's closing
  phase 0.4 -> 0.1-0.2 s with the same training time: README "Start-up")."""
  threading.Thread(target=pyplot, daemon=True, name="import-pyplot").start()


def series(records: list[dict], key: str, transform=lambda v: v) -> list[tuple]:
  """`(step, transform(value))` for the records that carry `key`."""
  return [(r["step"], transform(r[key])) for r in records if key in r]


def plot_curves(records: list[dict], path: str, title: str = "",
                metric: str = "accuracy") -> str:
  """Two panels, the loss and `metric` (a fraction), train and eval against step;
  writes a PNG at `path`."""
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for ax, metric in zip(axes, ("loss", metric)):
    for split, style, label in (("train", "-", "train (training objective)"),
                                ("eval", "o-", "eval")):
      points = series(records, f"{split}/{metric}")
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
  losses = [v for _, v in series(records, "train/loss") + series(records, "eval/loss")]
  if losses and min(losses) > 0 and max(losses) / min(losses) > 50:
    axes[0].set_yscale("log")  # detection losses fall by orders of magnitude
  axes[1].set_ylim(top=1.0)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return save_figure(fig, path)


def save_figure(fig, path: str, dpi: int = 110) -> str:
  """Writes `fig` as a PNG to a local path or a bucket URL, then closes it."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  pyplot().close(fig)
  return paths.write_atomic(path, buffer.getvalue())


def plot_training_error(runs: dict[str, list[dict]], path: str, title: str = "") -> str:
  """He et al.'s Figure 6 style: training error (1 - train accuracy, thin) and test error
  (thick, markers) against step, one colour per network."""
  fig, ax = pyplot().subplots(figsize=(7, 4.2))
  for i, (name, records) in enumerate(runs.items()):
    colour = f"C{i}"
    train = series(records, "train/accuracy", lambda a: 1 - a)
    test = series(records, "eval/accuracy", lambda a: 1 - a)
    if train:
      ax.plot(*zip(*train), "--", color=colour, linewidth=1, label=f"{name} train")
    if test:
      ax.plot(*zip(*test), "o-", color=colour, linewidth=2, markersize=3,
              label=f"{name} test")
  ax.set_xlabel("step")
  ax.set_ylabel("error")
  ax.set_ylim(0, None)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return save_figure(fig, path)
