"""The analytic memory bound (benchmarks/flops.py) against the arrays numpy_impl.fast really keeps,
the worker's idle-memory reading, and the report's memory table from hand-written CSVs."""

import math

import numpy as np
import pytest

from benchmarks import worker
from benchmarks.flops import activation_bytes, activation_cache_bytes, parameter_state_bytes
from benchmarks.report import write_report
from benchmarks.run import SUMMARY_COLUMNS, write_csv
from common.config import Config
from common.weights import init_weights, weight_shapes
from numpy_impl.fast import CharLSTM  # the tuned numpy: its kept arrays are what the bound counts

SMALL = dict(vocab_size=11, hidden_size=8, num_layers=2, batch_size=3, seq_length=5)


def batch(config, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, config.vocab_size, (config.batch_size, config.seq_length))
    return x, np.roll(x, -1, axis=1)


def array_bytes(obj):
    """Bytes of every numpy array among obj's attributes, looking inside dicts, lists and tuples."""
    def walk(v):
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, dict):
            v = v.values()
        if isinstance(v, (list, tuple, type({}.values()))):
            return sum(walk(u) for u in v)
        return 0
    return walk(list(vars(obj).values()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_activation_part_is_what_numpy_keeps_for_backward(dtype, num_layers):
    """numpy's caches (hs, cs, gates, tanh_cs per layer, and dlogits, where the softmax is written)
    plus the logits, alive next to the softmax while the loss is computed."""
    config = Config(**{**SMALL, "num_layers": num_layers}, dtype=dtype)
    model = CharLSTM(config, init_weights(config))
    x, y = batch(config)
    _, _, (dlogits, caches, _) = model.loss(x, y, None)  # (dlogits, caches, masks)
    assert len(caches) == num_layers
    kept = sum(a.nbytes for cache in caches for a in cache) + dlogits.nbytes
    logits, _ = model.forward(x)
    assert kept + logits.nbytes == activation_cache_bytes(config)


@pytest.mark.parametrize("optimizer, slots", [("sgd", 0), ("adagrad", 1), ("adam", 2)])
def test_parameter_part_is_numpys_weights_gradients_and_optimizer_state(optimizer, slots):
    config = Config(**SMALL, optimizer=optimizer, dtype="float32")
    model = CharLSTM(config, init_weights(config))
    x, y = batch(config)
    grads = model.gradients(x, y)
    model.train_step(x, y)  # the optimizer makes its state on the first step
    params = sum(p.nbytes for p in model.params.values())
    held = params + sum(g.nbytes for g in grads.values()) + array_bytes(model.optimizer)
    assert array_bytes(model.optimizer) == slots * params
    assert held == parameter_state_bytes(config)
    assert activation_bytes(config) == activation_cache_bytes(config) + held


# ---------------------------------------------------------------------------------------------
# The worker's idle reading

def test_idle_reading_is_the_current_resident_memory_not_the_peak():
    before = worker.current_rss_mb()
    big = np.ones(100 * 2 ** 20 // 8)  # 100 MB, every page touched
    during = worker.current_rss_mb()
    del big  # numpy gives a block this large back to the system at once
    after = worker.current_rss_mb()
    assert during - before > 90 and during - after > 90
    assert after <= worker.peak_rss_mb()


def test_peak_restart_forgets_an_earlier_peak():
    big = np.ones(100 * 2 ** 20 // 8)  # a peak at least 100 MB above what follows
    del big
    if not worker.restart_peak_rss():
        pytest.skip("this kernel cannot reset the peak (/proc/self/clear_refs)")
    now = worker.current_rss_mb()
    assert worker.peak_rss_since_restart_mb() == pytest.approx(now, abs=5)
    small = np.ones(30 * 2 ** 20 // 8)  # 30 MB: the new peak follows
    assert worker.peak_rss_since_restart_mb() - now > 25
    del small


def test_idle_reading_falls_back_to_the_peak_without_proc(monkeypatch):
    missing = worker.Path("/no/such/proc/statm")
    monkeypatch.setattr(worker, "Path", lambda _: missing)
    assert worker.current_rss_mb() == pytest.approx(worker.peak_rss_mb(), rel=0.01)


# ---------------------------------------------------------------------------------------------
# The report's memory table

REFERENCE = dict(vocab_size=65, hidden_size=256, num_layers=2, batch_size=32, seq_length=64,
                 dtype="float32", optimizer="adam")


def write_summary(out, rows, columns=SUMMARY_COLUMNS):
    base = {"framework": "x", "path": "y", "status": "ok", "flops_per_char": 1, **REFERENCE}
    write_csv(out / "summary.csv", columns, [{**base, **r} for r in rows])


def memory_table(text):
    part = text.split("## Time to first step and memory")[1].split("\n## ")[0]
    return {line.split(" | ")[0].strip("| `"): line.strip("| ").split(" | ")[1:]
            for line in part.splitlines() if line.startswith("| `")}


def test_report_holds_peak_minus_idle_against_the_bound(tmp_path):
    bound = activation_bytes(Config(**REFERENCE)) / 2 ** 20
    write_summary(tmp_path, [
        {"impl": "numpy-cell", "idle_rss_mb": 100.0, "warm_rss_mb": 110.0, "timed_peak_rss_mb": 110 + bound / 2,
         "peak_rss_mb": 100.0 + 1.5 * bound},
        {"impl": "torch-layer", "idle_rss_mb": 400.0, "peak_rss_mb": 400.0 + 3 * bound},
        {"impl": "keras-layer", "peak_rss_mb": 700.0},  # an old result: no idle_rss_mb
    ])
    text = write_report(tmp_path).read_text(encoding="utf-8")
    rows = memory_table(text)
    assert rows["numpy-cell"] == ["100", "110", f"{110 + bound / 2:,.0f}", f"{100 + 1.5 * bound:,.0f}",
                                  f"{bound:,.1f}", "1.50", "yes", "0.50"]
    assert rows["torch-layer"][5:] == ["3.00", "no", "n/a"]
    assert rows["keras-layer"] == ["n/a", "n/a", "n/a", "700", f"{bound:,.1f}", "n/a", "n/a", "n/a"]
    assert "idle MB" in text and "within 2x" in text and "7T + 2" in text


def test_report_of_an_old_summary_without_the_idle_column(tmp_path):
    write_summary(tmp_path, [{"impl": "numpy-cell", "peak_rss_mb": 150.0}],
                  columns=[c for c in SUMMARY_COLUMNS if c != "idle_rss_mb"])
    rows = memory_table(write_report(tmp_path).read_text(encoding="utf-8"))
    assert rows["numpy-cell"][0] == "n/a" and rows["numpy-cell"][3] == "150"
    # the reference config's bound, from the row's config: 4 bytes x (2 * 450 * 32 * 256 activations
    # + 2 * 64 * 32 * 65 logits and softmax + 4 * 871,745 parameters, gradients, m, v) = 42.4 MB
    assert rows["numpy-cell"][4] == "42.4"
