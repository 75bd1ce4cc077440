"""benchmarks/grid.py (make bench-grid): the quick grid end to end, the statistics GRID.md is made
of, the generation latency's path (the carried state, checked against numpy's full forward over
the prefix) and the --device option of the command line and the benchmarks."""

import csv
import inspect
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.grid_report import interval, stops_growing
from benchmarks.worker import carried_ids, generation_latency
from common.config import Config
from common.corpus import Vocabulary
from common.frameworks import make_model
from common.weights import init_weights
from numpy_impl.model import CharLSTM as NumpyLSTM

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 60)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(module, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# The quick grid, end to end

@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    corpus = tmp / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp / "out"
    proc = run("benchmarks.grid", "--quick", "--impls", "numpy-cell,torch-layer", "--threads", 2,
               "--corpus", corpus, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_quick_grid_writes_every_shape_from_three_processes(grid_dir):
    rows = read_csv(grid_dir / "grid.csv")
    shapes = {(r["impl"], r["threads"], r["batch_size"], r["hidden_size"], r["seq_length"]) for r in rows}
    # batch x hidden at T=16, T at B=4 H=16 (at 2 threads), the reference (4, 16, 16) at 1 thread
    expected = {(b, h, "16") for b in ("1", "4", "16") for h in ("16", "32")} | {("4", "16", t) for t in ("8", "16", "32")}
    for impl in ("numpy-cell", "torch-layer"):
        assert {s[2:] for s in shapes if s[:2] == (impl, "2")} == expected
        assert {s[2:] for s in shapes if s[:2] == (impl, "1")} == {("4", "16", "16")}
    for shape in shapes:
        mine = [r for r in rows if (r["impl"], r["threads"], r["batch_size"], r["hidden_size"], r["seq_length"]) == shape]
        assert sorted(r["rep"] for r in mine) == ["1", "2", "3"]  # one fresh process per repetition
    for r in rows:
        assert r["status"] == "ok", r
        assert r["device"] == "cpu"
        assert int(r["timed_steps"]) >= 2
        chars = int(r["batch_size"]) * int(r["seq_length"])
        assert float(r["chars_per_s"]) == pytest.approx(chars / (float(r["step_ms_median"]) / 1e3), rel=1e-9)


def test_generation_and_startup_rows(grid_dir):
    gen = read_csv(grid_dir / "generation.csv")
    assert {(r["impl"], r["threads"], r["batch_size"]) for r in gen} == {
        (i, t, b) for i in ("numpy-cell", "torch-layer") for t in ("1", "2") for b in ("1", "4")}
    for r in gen:
        assert r["status"] == "ok" and r["device"] == "cpu"
        assert 3 <= int(r["chars"]) <= 8
        assert 0 < float(r["ms_per_char_median"]) <= float(r["ms_per_char_p90"])
    for r in read_csv(grid_dir / "startup.csv"):
        assert r["status"] == "ok" and r["device"] == "cpu"
        parts = [float(r[c]) for c in ("import_s", "build_s", "first_step_s")]
        assert all(p >= 0 for p in parts) and float(r["total_s"]) == pytest.approx(sum(parts))


def test_grid_md_tables_come_from_the_csv(grid_dir):
    text = (grid_dir / "GRID.md").read_text()
    for heading in ("## Findings", "## Training throughput over batch size and hidden size",
                    "## Training throughput over sequence length", "## Threads",
                    "## Generation latency per character", "## Start-up: import, model build, first step"):
        assert heading in text
    assert "| implementation | H | B=1 | B=4 | B=16 | stops growing |" in text
    assert "| implementation | threads | device | B=1 median ms | B=1 p90 ms | B=1 chars/s |" in text
    rows = read_csv(grid_dir / "grid.csv")

    def medians(impl, H):
        return {b: interval([float(r["chars_per_s"]) for r in rows if (r["impl"], r["threads"], r["hidden_size"],
                                                                        r["seq_length"], r["batch_size"])
                             == (impl, "2", str(H), "16", str(b))]) for b in (1, 4, 16)}

    for impl in ("numpy-cell", "torch-layer"):
        for H in (16, 32):
            figs = medians(impl, H)
            stop = stops_growing(list(figs), [f[0] for f in figs.values()])
            line = next(l for l in text.splitlines() if l.startswith(f"| {impl} | {H} |"))
            cells = [c.strip() for c in line.strip("|").split("|")]
            for cell, fig in zip(cells[2:5], figs.values()):
                assert cell.startswith(f"{fig[0] / 1e3:,.1f}k [" if fig[0] >= 1e3 else f"{fig[0]:,.0f} [")
            assert cells[5] == (f"B={stop}" if stop else "still growing at B=16")
    for p in ("grid_batch.png", "grid_seq.png", "grid_generation.png", "grid_startup.png"):
        assert (grid_dir / p).stat().st_size > 1000 and f"![{p}]({p})" in text
    assert "Devices of the rows: " in text and "numpy-cell cpu" in text and "torch-layer cpu" in text


# ---------------------------------------------------------------------------------------------
# The statistics

def test_stops_growing_per_doubling_of_the_batch():
    B = [1, 8, 32, 128, 512]
    # 1 -> 8: 7x over three doublings (1.91 each); 8 -> 32: 1.69 per doubling; 32 -> 128: 1.14 < 1.15
    assert stops_growing(B, [100, 700, 2000, 2600, 2700]) == 32
    assert stops_growing(B, [100, 700, 2000, 2000 * 1.15 ** 2 * 1.001, 2700]) == 128  # 32 -> 128 just above 15 %
    assert stops_growing(B, [100, 800, 3200, 12800, 51200]) is None  # 2x per doubling all the way
    assert stops_growing(B, [100, 110, 120, 130, 140]) == 1
    assert stops_growing(B, [100, 700, 2000, 1500, 1400]) == 32  # a fall counts as not growing
    assert stops_growing(B[::-1], [2700, 2600, 2000, 700, 100]) == 32  # order of the input does not matter
    assert stops_growing(B, [100, 700, None, 2600, 2700]) == 128  # a missing figure is skipped: 8 -> 128 gains
    assert stops_growing(B, [100, 700, 2000, 2600, 2700], gain=0.10) == 128


def test_bootstrap_interval_of_the_median():
    values = np.random.default_rng(1).standard_normal(1000)
    median, low, high = interval(values)
    assert median == pytest.approx(float(np.median(values)))
    # the median's standard error for a normal sample: sqrt(pi / 2) / sqrt(n) = 0.0396; 95 %: about +-0.078
    assert 0.05 < (high - low) / 2 < 0.11
    assert low < median < high
    assert interval([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    m, lo, hi = interval([1.0, 2.0, 10.0])
    assert (m, lo, hi) == (2.0, 1.0, 10.0)  # three processes: the interval spans the middle values' range
    assert interval([3.0])[0] == 3.0 and math.isnan(interval([3.0])[1])  # one process: no interval


# ---------------------------------------------------------------------------------------------
# Generation latency: the carried state, one character at a time

class Recorder:
    """A CharLSTM whose forward calls are kept: (x, logits)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def forward(self, x, state=None):
        logits, state = self.model.forward(x, state)
        self.calls.append((np.asarray(x), np.asarray(logits, dtype=np.float64)))
        return logits, state


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("framework,path", [("numpy", "fast"), ("torch", "layer"), ("torch", "cell")])
def test_latency_path_carries_the_state_as_a_full_forward_would(framework, path):
    vocab = Vocabulary.from_text(TEXT)
    config = Config(vocab_size=len(vocab), hidden_size=16, num_layers=2, batch_size=1, seq_length=8)
    weights = init_weights(config)
    reference = NumpyLSTM(config, weights)
    model = Recorder(make_model(framework, config, weights, path=path))
    times, ids = generation_latency(model, vocab, 1, length=12, warmup=2, budget_s=1e9, seed=0)
    assert len(times) == 12 and len(ids) == 12 + 2 + 1  # the warm-up and the prime's draw are not timed
    prime = vocab.encode("\n")
    assert model.calls[0][0].tolist() == [prime.tolist()]  # the prime once, then one character a call
    assert [x.shape for x, _ in model.calls[1:]] == [(1, 1)] * (len(model.calls) - 1)
    text = np.concatenate([prime, ids])
    for n, (x, logits) in enumerate(model.calls):
        prefix = text[:len(prime) + n]
        assert x[0, -1] == prefix[-1]
        full, _ = reference.forward(prefix[None, :])  # the whole prefix from a zero state, in numpy
        np.testing.assert_allclose(softmax(logits[0, -1]), softmax(full[0, -1]), atol=2e-6)


def test_batched_latency_path_carries_each_stream():
    vocab = Vocabulary.from_text(TEXT)
    config = Config(vocab_size=len(vocab), hidden_size=16, num_layers=1, batch_size=3, seq_length=8)
    weights = init_weights(config)
    reference, model = NumpyLSTM(config, weights), Recorder(make_model("torch", config, weights, path="layer"))
    prime = vocab.encode("\n")
    draws = np.stack(list(carried_ids(model, prime, 3, 6, seed=0)), axis=1)  # (3, 6)
    assert draws.shape == (3, 6) and len(model.calls) == 6
    assert len({tuple(row) for row in draws}) > 1  # the streams draw apart
    text = np.concatenate([np.tile(prime, (3, 1)), draws], axis=1)
    for n, (x, logits) in enumerate(model.calls):
        full, _ = reference.forward(text[:, :len(prime) + n])
        np.testing.assert_allclose(softmax(logits[:, -1]), softmax(full[:, -1]), atol=2e-6)


# ---------------------------------------------------------------------------------------------
# --device

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device")
    corpus = tmp / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    ckpt = tmp / "m.safetensors"
    proc = run("common.cli", "train", "--framework", "numpy", "--corpus", corpus, "--iters", 2, "--save", ckpt,
               "--val-every", 0, "--sample-every", 0, "--threads", 1, "--hidden-size", 8, "--batch-size", 2,
               "--seq-length", 8)
    assert proc.returncode == 0, proc.stderr
    return corpus, ckpt


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
@pytest.mark.parametrize("framework,words", [
    ("numpy", "rosetta: error: numpy runs on the CPU only; leave out --device cuda (it applies to torch)."),
    ("keras", "rosetta: error: Keras places its work where its backend does"),
])
def test_device_other_than_cpu_is_one_sentence_for_numpy_and_keras(command, framework, words, checkpoint):
    corpus, ckpt = checkpoint
    target = ["--corpus", corpus] if command == "train" else [ckpt]
    proc = run("common.cli", command, *target, "--framework", framework, "--device", "cuda")
    assert proc.returncode == 2
    assert proc.stderr.startswith(words) and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_device_cpu_is_the_default_and_runs(checkpoint):
    _, ckpt = checkpoint
    for args in ([], ["--device", "cpu"]):
        proc = run("common.cli", "sample", ckpt, "--framework", "numpy", "--length", 5, *args)
        assert proc.returncode == 0, proc.stderr


def test_torch_device_that_is_missing_is_one_sentence(checkpoint):
    if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(make_model).parameters.values()):
        pytest.skip("make_model takes no device yet (the torch device change is merged separately)")
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    _, ckpt = checkpoint
    proc = run("common.cli", "sample", ckpt, "--framework", "torch", "--device", "cuda", "--length", 5)
    assert proc.returncode == 2 and proc.stderr.startswith("rosetta: error: ")
    assert "cuda" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_benchmarks_refuse_a_device_no_row_can_use(tmp_path):
    proc = run("benchmarks.grid", "--quick", "--impls", "numpy-cell", "--device", "cuda", "--out", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("python -m benchmarks.grid: error: --device cuda applies to torch only and no "
                                   "torch implementation is in --impls; add torch-layer or leave out --device.")
    assert not list(tmp_path.iterdir())  # nothing written
    proc = run("benchmarks.grid", "--quick", "--impls", "keras-fast@jax", "--out", tmp_path)
    assert proc.returncode == 2 and "unknown implementation 'keras-fast@jax'" in proc.stderr


def test_benchmark_rows_record_the_device_and_only_torch_is_asked_for_one():
    from benchmarks.run import ROUNDS_COLUMNS, SWEEP_COLUMNS, round_rows, sweep_rows
    from benchmarks.worker import model_options

    config = Config(vocab_size=10, hidden_size=8, batch_size=2, seq_length=4)
    result = {"status": "ok", "device": "cuda:0", "steps": [{"phase": "timed", "step_time_s": 0.1, "loss": 1.0}],
              "sweep": [{"hidden_size": 8, "status": "ok", "step_times_s": [0.1], "losses": [1.0]}]}
    assert "device" in ROUNDS_COLUMNS and "device" in SWEEP_COLUMNS
    assert round_rows(1, {"torch-layer": result}, config)[0]["device"] == "cuda:0"
    assert sweep_rows("torch-layer", "torch", "layer", result, config, [8])[0]["device"] == "cuda:0"
    assert model_options({"device": "cuda:1"}, "torch") == {"device": "cuda:1"}
    assert model_options({"device": "cpu"}, "torch") == {} and model_options({}, "torch") == {}
    assert model_options({"device": "cuda"}, "keras") == {} and model_options({"device": "cuda"}, "numpy") == {}
