"""common/plotting.py: the smoothing formula, and a real PNG written atomically."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.plotting import plot_loss_curves, smooth

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def weighted_average(losses, beta):
    """s_t = sum_i beta^(t-i) loss_i / sum_i beta^(t-i): what a bias-corrected EMA must equal."""
    losses = np.asarray(losses, dtype=np.float64)
    out = []
    for t in range(len(losses)):
        w = beta ** np.arange(t, -1, -1)  # beta^(t-i) for i = 0..t
        out.append(np.sum(w * losses[: t + 1]) / np.sum(w))
    return np.array(out)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.999])
def test_smooth_is_the_bias_corrected_moving_average(beta):
    losses = np.random.default_rng(0).uniform(1.0, 4.0, 300)
    np.testing.assert_allclose(smooth(losses, beta), weighted_average(losses, beta), rtol=1e-12)


def test_smooth_short_runs_are_not_dragged_to_zero():
    s = smooth([4.2] * 5)  # an uncorrected 0.999 average would give ~0.004 .. 0.02
    np.testing.assert_allclose(s, 4.2, rtol=1e-12)
    assert smooth([3.0, 1.0], beta=0.5)[0] == 3.0  # the first value is the first loss
    np.testing.assert_allclose(smooth([3.0, 1.0], beta=0.5)[1], (0.5 * 3.0 + 1.0) / 1.5)
    assert smooth([]).shape == (0,)
    with pytest.raises(ValueError):
        smooth([1.0], beta=1.0)


def curves():
    steps = np.arange(1, 201)
    rng = np.random.default_rng(1)
    return {
        "numpy": (steps, 4.2 * np.exp(-steps / 80) + 1.5 + rng.normal(0, 0.1, 200), [100, 200], [2.4, 1.9]),
        "torch": (steps, 4.2 * np.exp(-steps / 70) + 1.5 + rng.normal(0, 0.1, 200), [], []),
    }


def test_plot_writes_a_png_atomically(tmp_path):
    out = tmp_path / "plots" / "loss.png"  # the folder is created
    assert plot_loss_curves(curves(), out, title="tiny") == out
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temporary file left
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out).shape
    assert (width, height) == (960, 600)  # 8 x 5 inches at 120 dpi


def test_plot_replaces_an_existing_file_and_a_failure_leaves_it(tmp_path):
    out = tmp_path / "loss.png"
    out.write_bytes(b"old")
    plot_loss_curves(curves(), out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    before = out.read_bytes()
    with pytest.raises(Exception):
        plot_loss_curves({"bad": ([1, 2, 3], [1.0, 2.0], [], [])}, out)  # mismatched lengths
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def test_plotting_is_headless_and_leaves_pyplot_alone():
    code = ("import sys, tempfile, os; from common.plotting import plot_loss_curves; "
            "assert 'matplotlib' not in sys.modules; "
            "plot_loss_curves({'a': ([1, 2], [2.0, 1.0], [2], [1.5])}, os.path.join(tempfile.mkdtemp(), 'x.png')); "
            "print('matplotlib.pyplot' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "", "DISPLAY": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
