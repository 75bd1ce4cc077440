"""benchmarks/levers.py: the numpy and keras "before" variants compute the shipped numbers by other
code, a tiny run of the numpy and torch levers end to end, and the report's sections from its CSVs.

The numpy and keras variants are tried in this process (monkeypatch puts the module back); torch
runs only inside the levers' worker processes.
"""

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import levers
from benchmarks.flops import flops_per_char
from benchmarks.report import write_report
from benchmarks.run import SUMMARY_COLUMNS, SWEEP_COLUMNS, write_csv
from common.config import Config
from common.errors import ConfigError
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def numpy_model(monkeypatch):
    """numpy_impl.fast (the numpy levers' module) with everything a variant may replace restored after the test."""
    import numpy_impl.fast as m
    for name in ("lstm_forward", "lstm_backward", "activate_gates", "gate_derivatives"):
        monkeypatch.setattr(m, name, getattr(m, name))
    monkeypatch.setattr(m.CharLSTM, "backward", m.CharLSTM.backward)
    monkeypatch.setattr(m, "levers_scatter_add_rows", None, raising=False)
    return m


@pytest.mark.parametrize("variant", ["numpy_scatter_dW_x", "numpy_dot_out", "numpy_plain_gates"])
def test_numpy_before_variants_change_the_code_not_the_numbers(numpy_model, variant):
    m = numpy_model
    config = Config(vocab_size=11, hidden_size=8, num_layers=2, batch_size=3, seq_length=5, dtype="float64")
    weights = init_weights(config)
    x = np.random.default_rng(0).integers(0, 11, (3, 5))
    y = np.roll(x, 1, axis=1)
    shipped = m.CharLSTM(config, weights).gradients(x, y)
    code = {name: getattr(m, name).__code__ for name in ("lstm_forward", "lstm_backward", "activate_gates")}
    backward = m.CharLSTM.backward
    assert getattr(levers, variant)("numpy", "fast", {}) is None  # no extra CharLSTM arguments
    if variant == "numpy_scatter_dW_x":
        calls = []
        m.levers_scatter_add_rows = lambda *a: calls.append(1) or levers.scatter_add_rows(*a)
        assert m.CharLSTM.backward is not backward
    elif variant == "numpy_dot_out":
        assert all(getattr(m, n).__code__ is not code[n] for n in ("lstm_forward", "lstm_backward"))
    else:
        assert m.activate_gates is levers.plain_activate_gates
    grads = m.CharLSTM(config, weights).gradients(x, y)
    if variant == "numpy_scatter_dW_x":
        assert calls == [1]  # layer 0's dW_x came from np.add.at, once per backward
    for name in shipped:
        np.testing.assert_allclose(grads[name], shipped[name], rtol=1e-9, atol=1e-12, err_msg=name)


def nested_code(function, name):
    """The code object of the function `name` defined inside `function`."""
    return next(c for c in function.__code__.co_consts if getattr(c, "co_name", None) == name)


@pytest.mark.parametrize("variant", ["keras_w_h_in_loop", "keras_tensorarray_write"])
def test_keras_before_variants_change_the_code_not_the_numbers(monkeypatch, variant):
    import keras_impl.fast as m
    monkeypatch.setattr(m.LSTMLayer, "call", m.LSTMLayer.call)  # put back after the test
    config = Config(vocab_size=11, hidden_size=8, num_layers=2, batch_size=3, seq_length=5, dtype="float64")
    weights = init_weights(config)
    x = np.random.default_rng(0).integers(0, 11, (3, 5))
    y = np.roll(x, 1, axis=1)
    shipped = m.CharLSTM(config, weights, path="fast").gradients(x, y)
    step = nested_code(m.LSTMLayer.call, "step")
    assert "W_h" in step.co_freevars and "write_row" in step.co_names  # the shipped loop body
    assert getattr(levers, variant)("keras", "fast", {}) is None
    step = nested_code(m.LSTMLayer.call, "step")
    if variant == "keras_w_h_in_loop":  # the variable itself, read in the body
        assert "W_h" in step.co_names and "self" in step.co_freevars
    else:
        assert "write" in step.co_names and "write_row" not in step.co_names
    grads = m.CharLSTM(config, weights, path="fast").gradients(x, y)
    for name in shipped:
        np.testing.assert_allclose(grads[name], shipped[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_patch_source_refuses_a_pattern_that_is_gone(numpy_model):
    with pytest.raises(ConfigError, match="lstm_forward no longer contains .*update the variant"):
        levers.patch_source(numpy_model, "lstm_forward", [(r"np\.einsum\(", "np.dot(")])


def test_scatter_add_rows_sums_repeated_ids():
    dz = np.arange(12, dtype=np.float32).reshape(4, 3)
    got = levers.scatter_add_rows(np.array([2, 0, 2, 2]), dz, 4)
    np.testing.assert_array_equal(got, [dz[1], [0, 0, 0], dz[0] + dz[2] + dz[3], [0, 0, 0]])


def test_help_and_a_bad_framework():
    def levers_cli(*args):
        return subprocess.run([sys.executable, "-m", "benchmarks.levers", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    shown = levers_cli("--help")
    assert shown.returncode == 0 and "--hidden-size" in shown.stdout and "--repeats" in shown.stdout
    bad = levers_cli("--frameworks", "jax", "--out", "/nonexistent/never-written")
    assert bad.returncode == 2 and "unknown framework 'jax'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("levers")
    words = "the quick brown fox jumps over a lazy dog and then it sleeps under old trees".split()
    rng = np.random.default_rng(0)
    corpus = out / "corpus.txt"
    corpus.write_text("".join(" ".join(rng.choice(words, size=8)) + ".\n" for _ in range(100)))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.levers", "--out", str(out), "--frameworks", "numpy,torch",
         "--corpus", str(corpus),
         "--hidden-size", "16", "--batch-size", "4", "--seq-length", "8", "--iters", "3", "--warmup", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stderr


def test_tiny_run_writes_one_row_per_lever(tiny_run):
    out, stderr = tiny_run
    rows = read_csv(out / "levers.csv")
    assert list(rows[0]) == levers.LEVERS_COLUMNS
    asked = [(name, impl) for name, impl, *_ in levers.LEVERS if impl.split("-")[0] in ("numpy", "torch")]
    assert [(r["lever"], r["impl"]) for r in rows] == asked
    for r in rows:
        before, after = float(r["before_chars_per_s"]), float(r["after_chars_per_s"])
        assert before > 0 and after > 0
        assert float(r["ratio"]) == pytest.approx(after / before)
        assert r["kept"] in (("bench",) if r["lever"].startswith("steady allocator") else ("yes", "no"))
        assert "early losses agree" in r["note"], r["note"]
        assert re.search(r"page faults per step [\d,]+ before, [\d,]+ after", r["note"]), r["note"]
    notes = {r["impl"]: r["note"] for r in rows}
    assert "oneDNN LSTM kernels with the default flags: yes (" in notes["torch-layer"]
    assert "with mkldnn off: no" in notes["torch-layer"]
    assert "compiling: " in notes["torch-cell"]
    assert "[torch-cell+torch_compile_step 2t] step" in stderr
    assert "[numpy-fast+numpy_new_arrays default-malloc 2t] step" in stderr  # a side with its own allocator  # the worker's progress was relayed


def test_tiny_run_measures_every_implementation_at_1_and_2_threads(tiny_run):
    rows = read_csv(tiny_run[0] / "threads.csv")
    assert [(r["impl"], r["threads"]) for r in rows] == [
        (impl, n) for n in ("1", "2") for impl, framework, _ in levers.IMPLS if framework in ("numpy", "torch")]
    assert {"numpy-cell", "numpy-fast", "torch-layer", "torch-cell"} <= {r["impl"] for r in rows}
    assert all(r["status"] == "ok" and float(r["chars_per_s"]) > 0 for r in rows)


def write_bench_files(out, V=65, L=2):
    """A summary, a sweep with a cliff in torch-layer only, levers.csv and threads.csv."""
    base = {"framework": "x", "path": "y", "status": "ok", "chars_per_s": 2048 / 2e-3, "step_ms_median": 2.0,
            "step_ms_p10": 1.9, "step_ms_p90": 2.1, "vocab_size": V, "hidden_size": 256, "num_layers": L,
            "batch_size": 32, "seq_length": 64, "flops_per_char": flops_per_char(V, 256, L)}
    write_csv(out / "summary.csv", SUMMARY_COLUMNS, [{**base, "impl": i} for i in ("numpy-cell", "torch-layer")])
    grow = flops_per_char(V, 512, L) / flops_per_char(V, 256, L)
    sweep = [("numpy-cell", 256, 9000.0), ("numpy-cell", 512, 9000.0 / grow),  # exactly the FLOPs
             ("torch-layer", 256, 13000.0), ("torch-layer", 512, 1200.0)]     # 10.8x: a cliff
    write_csv(out / "sweep.csv", SWEEP_COLUMNS, [
        {"impl": i, "hidden_size": H, "chars_per_s": s, "status": "ok"} for i, H, s in sweep])
    write_csv(out / "levers.csv", levers.LEVERS_COLUMNS, [
        {"lever": "fast thing", "impl": "numpy-cell", "before_chars_per_s": 500.0, "after_chars_per_s": 1500.0,
         "ratio": 3.0, "kept": "yes", "note": "early losses agree"}])
    write_csv(out / "threads.csv", levers.THREADS_COLUMNS, [
        {"impl": "numpy-cell", "threads": n, "chars_per_s": s, "status": "ok"} for n, s in ((1, 800.0), (2, 1200.0))])
    return grow


def test_report_renders_levers_threads_and_the_reading_of_the_sweep(tmp_path):
    grow = write_bench_files(tmp_path)
    text = write_report(tmp_path).read_text()
    levers_part = text.split("## What made it fast")[1]
    assert "| fast thing | `numpy-cell` | 500 | 1,500 | 3.00x | yes | early losses agree |" in levers_part
    threads_part = text.split("## Throughput at 1 and 2 threads")[1]
    assert "| `numpy-cell` | 800 | 1,200 | 1.50x |" in threads_part
    reading = text.split("## Throughput against hidden size: reading the curve")[1].split("\n## ")[0]
    assert f"| `torch-layer` | 256 → 512 | {13000 / 1200:.2f}x | {grow:.2f}x |" in reading
    assert f"`torch-layer` falls {13000 / 1200:.1f}x from 256 to 512 where the FLOPs grow {grow:.1f}x" in reading
    assert "`numpy-cell` falls" not in reading  # its slowdown is the FLOPs' growth: no cliff


def test_report_leaves_the_sections_out_without_their_files(tmp_path):
    write_bench_files(tmp_path)
    for name in ("levers.csv", "threads.csv", "sweep.csv"):
        (tmp_path / name).unlink()
    text = write_report(tmp_path).read_text()
    for title in ("What made it fast", "Throughput at", "reading the curve"):
        assert title not in text


def test_a_run_with_its_own_allocator_keeps_kerass_backend():
    """The allocator in a run's tag is not read as a Keras backend (keras-layer@default once failed
    with "Unable to import backend : default")."""
    from benchmarks.run import backend_of
    for impl, _, _ in levers.IMPLS:  # Keras' levers run on its default backend, TensorFlow
        for malloc in ("default", "steady", ""):
            tag = levers.run_tag(impl, "keras_xla_off", malloc, 2)
            assert malloc in tag and backend_of(tag) is None
