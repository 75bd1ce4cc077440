"""Loss curves as a PNG, drawn headless.

    from common.plotting import plot_loss_curves
    plot_loss_curves({"numpy": (steps, losses, val_steps, val_losses),
                      "torch": (...)}, "results/loss.png", title="tinyshakespeare, H=256")

Each curve is drawn three ways in one colour: the raw training loss per step (thin, faint), its
smoothed trend (`smooth`, the 0.999 moving average that min-char-rnn prints) and the validation
loss as points. The figure is a matplotlib Figure with the Agg canvas, never pyplot, so no GUI
backend is touched and the caller's own matplotlib state is left alone. The PNG is written to a
temporary file in the same folder and renamed over `path`: a reader never sees half an image.
"""

import os
import secrets
from pathlib import Path

import numpy as np


def smooth(losses, beta=0.999):
    """Exponential moving average of `losses` (N,) -> float64 (N,), with bias correction.

    s_t = m_t / (1 - beta^t),  m_t = beta * m_{t-1} + (1 - beta) * loss_t,  m_0 = 0.
    That is the average of loss_1..loss_t weighted by beta^(t-i): a short run is not dragged
    towards the zero m_0 starts from, and the first value is loss_1 itself (as in Adam's moments).
    """
    losses = np.asarray(losses, dtype=np.float64)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    out = np.empty_like(losses)
    m, correction = 0.0, 1.0
    for t, loss in enumerate(losses):
        m = beta * m + (1 - beta) * loss
        correction *= beta  # beta^t
        out[t] = m / (1 - correction)
    return out


def write_png(fig, path):
    """Save `fig` to `path` through a temporary file in the same folder, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def plot_loss_curves(curves, path, title="Training loss", beta=0.999):
    """Write a PNG of loss against step: curves maps a label -> (steps, losses, val_steps, val_losses).

    val_steps and val_losses may be empty. Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: common/ stays light
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, (label, (steps, losses, val_steps, val_losses)) in enumerate(curves.items()):
        colour = f"C{k % 10}"
        ax.plot(steps, losses, color=colour, linewidth=0.5, alpha=0.25)
        ax.plot(steps, smooth(losses, beta), color=colour, linewidth=1.8, label=f"{label} (train, smoothed)")
        if len(val_steps):
            ax.plot(val_steps, val_losses, "o", color=colour, markersize=5, markeredgecolor="black",
                    markeredgewidth=0.5, label=f"{label} (validation)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats per character)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return write_png(fig, path)


def read_log(path):
    """(steps, losses, val_steps, val_losses) of a `rosetta train --log` CSV, or a ConfigError."""
    import csv

    from common.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no training log at {path}; write one with rosetta train --log {path}.")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in rows]
        losses = [float(r["loss"]) for r in rows]
        val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, csv.Error):
        raise ConfigError(f"{path} is not a training log of rosetta train --log (columns step, epoch, loss, "
                          f"val_loss, chars_per_s, elapsed); pass the CSV that --log wrote.") from None
    if not rows:
        raise ConfigError(f"{path} holds no steps yet; plot it once the run has trained a step.")
    return steps, losses, [s for s, _ in val], [v for _, v in val]


def plot_logs(paths, out=None, title="Training loss"):
    """Draw the runs of one or more --log CSVs (labelled by file name) into `out` (default: the first
    log with .png); returns the path written."""
    from common.errors import ConfigError

    curves = {}
    for path in paths:
        label = Path(path).stem
        while label in curves:
            label += "'"
        curves[label] = read_log(path)
    out = Path(out) if out else Path(paths[0]).with_suffix(".png")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out} must name a .png file.")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {out / 'loss.png'}.")
    if any(out.resolve() == Path(p).resolve() for p in paths):
        raise ConfigError(f"--out {out} is one of the logs; choose another name.")
    try:
        return plot_loss_curves(curves, out, title=title, beta=0.9)
    except OSError as e:
        raise ConfigError(f"cannot write {out} ({e.strerror or e}); choose a writable path.") from None
