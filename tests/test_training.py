"""common/training.py: exact resume in every framework through the command line (each run in its
own process), the files a run must not touch, every way a run ends, the memory check, --minutes,
--log and `rosetta plot`."""

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_checkpoint, save_checkpoint, training_state_shapes
from common.config import Config
from common.corpus import Vocabulary
from common.errors import CheckpointError, ConfigError
from common.frameworks import PATHS, make_model
from common.training import (Log, check_memory, check_save_path, divergence, duration, last_path, memory_needed)
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)
TINY = ["--hidden-size", "8", "--num-layers", "2", "--batch-size", "4", "--seq-length", "8",
        "--learning-rate", "0.01", "--seed", "3", "--sample-every", "0"]


def rosetta(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def log_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def losses_printed(stdout):
    """The loss and val loss of every progress line, as printed (the timing columns left out)."""
    return re.findall(r"^step +(\d+)/\d+  loss (\S+) .*?(?:val loss (\S+))?", stdout, flags=re.M)


def same_checkpoint(a, b):
    a, b = load_checkpoint(a), load_checkpoint(b)
    assert a.weights.keys() == b.weights.keys() and a.training.keys() == b.training.keys()
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
    for name in a.training:
        np.testing.assert_array_equal(a.training[name], b.training[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# Exact resume: 6 steps + a resume to 12 equal 12 steps, bit for bit (weights, state, every loss)

RUNS = [(f, p, "tensorflow" if f == "keras" else None) for f in PATHS for p in PATHS[f]] + [("keras", "layer", "jax")]


@pytest.mark.parametrize("framework,path,backend", RUNS, ids=[f"{f}-{p}" + (f"@{b}" if b else "") for f, p, b in RUNS])
def test_resume_is_bit_for_bit_the_uninterrupted_run(framework, path, backend, corpus, tmp_path):
    model = ["--framework", framework, "--path", path, *(["--backend", backend] if backend else []), "--threads", 1]
    common = ["train", "--corpus", corpus, *model, *TINY, "--val-every", 3, "--log-every", 2]
    whole = rosetta(*common, "--iters", 12, "--save", tmp_path / "whole.safetensors", "--log", tmp_path / "whole.csv")
    assert whole.returncode == 0, whole.stderr
    first = rosetta(*common, "--iters", 6, "--save", tmp_path / "part.safetensors", "--log", tmp_path / "part.csv")
    assert first.returncode == 0, first.stderr
    rest = rosetta(*common, "--iters", 12, "--resume", tmp_path / "part.safetensors",
                   "--save", tmp_path / "part.safetensors", "--log", tmp_path / "part.csv")
    assert rest.returncode == 0, rest.stderr
    assert "resumed from" in rest.stdout.splitlines()[0] and "weights only" not in rest.stdout.splitlines()[0]
    assert [int(s) for s, _, _ in losses_printed(rest.stdout)] == [8, 9, 10, 12]  # steps 7..12 only
    assert losses_printed(first.stdout + rest.stdout) == losses_printed(whole.stdout)
    columns = ("step", "epoch", "loss", "val_loss")
    assert [[r[c] for c in columns] for r in log_rows(tmp_path / "part.csv")] == \
           [[r[c] for c in columns] for r in log_rows(tmp_path / "whole.csv")]
    same_checkpoint(tmp_path / "whole.safetensors", tmp_path / "part.safetensors")
    same_checkpoint(tmp_path / "whole.last.safetensors", tmp_path / "part.last.safetensors")


@pytest.mark.parametrize("framework,path,optimizer", [(f, p, o) for f in ("numpy", "torch") for p in PATHS[f]
                                                     for o in ("sgd", "adagrad", "adam")])
def test_training_state_round_trip_continues_exactly(framework, path, optimizer):
    """In process, every numpy and torch path: three steps, the weights and training state into a new
    model, three more == six steps."""
    config = Config(vocab_size=7, hidden_size=8, num_layers=2, batch_size=3, seq_length=5, optimizer=optimizer,
                    learning_rate=0.01)
    xs = [np.random.default_rng(k).integers(0, 7, (3, 6)) for k in range(6)]
    whole = make_model(framework, config, init_weights(config), path=path)
    losses = [whole.train_step(x[:, :5], x[:, 1:]) for x in xs]
    part = make_model(framework, config, init_weights(config), path=path)
    part.set_training_state(part.get_training_state())  # before the first step: zeros, step 0
    resumed_losses = [part.train_step(x[:, :5], x[:, 1:]) for x in xs[:3]]
    assert set(part.get_training_state()) == set(training_state_shapes(config))
    resumed = make_model(framework, config, part.get_weights(), path=path)
    resumed.set_training_state(part.get_training_state())
    resumed_losses += [resumed.train_step(x[:, :5], x[:, 1:]) for x in xs[3:]]
    assert resumed_losses == losses
    for name, w in whole.get_weights().items():
        np.testing.assert_array_equal(resumed.get_weights()[name], w, err_msg=name)
    bad = resumed.get_training_state()
    bad["state.h/0"] = np.zeros((2, 8))
    with pytest.raises(CheckpointError, match="state.h/0"):
        resumed.set_training_state(bad)


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_resume_after_sigterm_is_bit_for_bit(framework, corpus, tmp_path):
    """Stopped by SIGTERM somewhere in the middle, then resumed: the same run as one without a stop."""
    iters = 3000 if framework == "numpy" else 1500
    common = ["train", "--corpus", corpus, "--framework", framework, "--threads", 1, *TINY, "--iters", iters,
              "--val-every", 500, "--log-every", 1, "--keep", "last"]
    whole = rosetta(*common, "--save", tmp_path / "whole.safetensors", "--log", tmp_path / "whole.csv")
    assert whole.returncode == 0, whole.stderr
    log = tmp_path / "part.csv"
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", *map(str, common), "--save",
                             str(tmp_path / "part.safetensors"), "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 30):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    stopped = int(re.search(r"stopped by SIGTERM after step (\d+) of", stderr).group(1))
    assert 0 < stopped < iters
    rest = rosetta(*common, "--resume", tmp_path / "part.safetensors", "--save", tmp_path / "part.safetensors",
                   "--log", log)
    assert rest.returncode == 0, rest.stderr
    assert f"after step {stopped}" in rest.stdout.splitlines()[0]
    columns = ("step", "epoch", "loss", "val_loss")
    assert [[r[c] for c in columns] for r in log_rows(log)] == [[r[c] for c in columns] for r in log_rows(tmp_path / "whole.csv")]
    same_checkpoint(tmp_path / "whole.safetensors", tmp_path / "part.safetensors")


def test_numpy_run_resumed_in_torch_agrees_to_float32_rounding(corpus, tmp_path):
    common = ["train", "--corpus", corpus, "--threads", 1, *TINY, "--val-every", 10, "--log-every", 5]
    whole = rosetta(*common, "--iters", 20, "--save", tmp_path / "whole.safetensors", "--log", tmp_path / "whole.csv")
    first = rosetta(*common, "--iters", 10, "--save", tmp_path / "part.safetensors", "--log", tmp_path / "part.csv")
    rest = rosetta(*common, "--framework", "torch", "--iters", 20, "--resume", tmp_path / "part.safetensors",
                   "--save", tmp_path / "part.safetensors", "--log", tmp_path / "part.csv")
    assert whole.returncode == first.returncode == rest.returncode == 0, rest.stderr
    assert "weights only" not in rest.stdout.splitlines()[0]  # Adam's moments and step carried across
    a, b = log_rows(tmp_path / "whole.csv"), log_rows(tmp_path / "part.csv")
    np.testing.assert_allclose([float(r["loss"]) for r in b], [float(r["loss"]) for r in a], rtol=1e-5)
    wa, wb = load_checkpoint(tmp_path / "whole.safetensors"), load_checkpoint(tmp_path / "part.safetensors")
    assert wb.framework == "torch"
    for name in wa.weights:
        np.testing.assert_allclose(wb.weights[name], wa.weights[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_iters_is_the_total_and_a_finished_run_says_so(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 4, "--save", ckpt).returncode == 0
    again = rosetta("train", "--corpus", corpus, *TINY, "--iters", 4, "--resume", ckpt)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"rosetta: error: {ckpt} is already at step 4; ask for more with --iters above 4 (--iters counts every step of the run)."]


def test_changed_settings_resume_the_weights_only_and_say_so(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 4, "--save", ckpt).returncode == 0
    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 6, "--resume", ckpt, "--learning-rate", "0.001",
                   "--save", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert "weights only (learning_rate changed" in proc.stdout.splitlines()[0]
    assert re.search(r"^step 6/6", proc.stdout, flags=re.M)


def test_a_checkpoint_with_training_state_still_loads_everywhere(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 3, "--save", ckpt).returncode == 0
    loaded = load_checkpoint(ckpt, vocab=Vocabulary.from_text(TEXT))
    assert set(loaded.weights) == set(init_weights(loaded.config))  # the training state set apart
    assert set(loaded.training) == set(training_state_shapes(loaded.config))
    assert loaded.run["step"] == 3 and loaded.run["corpus"] == "tiny"
    sample = rosetta("sample", ckpt, "--length", 20, "--framework", "torch")
    info = rosetta("info", ckpt)
    assert sample.returncode == 0 and info.returncode == 0, sample.stderr + info.stderr
    assert "optim." not in info.stdout


# ---------------------------------------------------------------------------------------------
# Files a run must not touch

def test_save_refuses_what_is_not_its_own_before_training(corpus, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    foreign = tmp_path / "foreign.safetensors"
    import safetensors.numpy

    safetensors.numpy.save_file({"a": np.zeros(2)}, foreign)
    folder = tmp_path / "out"
    folder.mkdir()
    before = {p: p.read_bytes() for p in (corpus, text, foreign)}
    cases = {corpus: "is the corpus file", text: "which is not a checkpoint",
             foreign: "a safetensors file that lstm-rosetta did not write", folder: "names a folder",
             f"{folder}/": "names a folder", f"{tmp_path}/new/": "names a folder"}
    for save, message in cases.items():
        start = time.monotonic()
        proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 100000, "--save", save)
        assert proc.returncode == 2 and time.monotonic() - start < 60, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rosetta: error: ") and message in lines[0], lines
        assert proc.stdout == ""  # refused before the model was built
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.safetensors", "notes.txt", "out"]


def test_replacing_another_runs_checkpoint_needs_force(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 2, "--save", ckpt).returncode == 0
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 2, "--save", ckpt).returncode == 0  # the same run
    before = ckpt.read_bytes()
    other = rosetta("train", "--corpus", corpus, *TINY, "--hidden-size", 12, "--iters", 2, "--save", ckpt)
    assert other.returncode == 2 and ckpt.read_bytes() == before
    assert other.stderr.strip() == (f"rosetta: error: {ckpt} holds a checkpoint of another run (hidden_size 8 (now 12)); "
                                    f"add --force to replace it, or choose a fresh --save name.")
    forced = rosetta("train", "--corpus", corpus, *TINY, "--hidden-size", 12, "--iters", 2, "--save", ckpt, "--force")
    assert forced.returncode == 0 and load_checkpoint(ckpt).config.hidden_size == 12


def test_check_save_path_in_process(tmp_path):
    check_save_path(None)
    check_save_path(tmp_path / "new.safetensors")
    assert last_path("a/m.safetensors") == Path("a/m.last.safetensors") and last_path("m") == Path("m.last.safetensors")
    (tmp_path / "m.last.safetensors").write_text("not mine")
    with pytest.raises(CheckpointError, match=r"m\.last\.safetensors \(a text file\), which is not a checkpoint"):
        check_save_path(tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="--save and --log both name"):
        check_save_path(tmp_path / "x.csv", log=tmp_path / "x.csv")


# ---------------------------------------------------------------------------------------------
# Every way a run ends

def test_a_diverging_run_stops_and_keeps_the_better_checkpoint(corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 10, "--save", ckpt).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 200, "--resume", ckpt, "--save", ckpt,
                   "--learning-rate", "1e6", "--val-every", 5)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"rosetta: error: the training loss at step \d+ (is nan|is inf|rose to \S+ \(the mean of the last \d+ steps\), "
        r"more than 2 times the first step's \S+), so the run is diverging \(.*\); lower --learning-rate \(now 1e\+06\) "
        r"or set --clip-norm\.", lines[0]), lines
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_divergence_rule():
    assert divergence(3.0, [4.0, 3.0], 4.0) is None
    assert divergence(float("nan"), [4.0], 4.0) == "is nan"
    assert divergence(9.0, [8.0, 9.0], 4.0).startswith("rose to 8.5 (the mean of the last 2 steps), more than 2 times")


class Scripted:
    """A stand-in CharLSTM whose weights carry, in head.b, the step they were trained to (validation
    is scripted by the test)."""

    def __init__(self, config, weights):
        self.config, self.weights, self.steps = config, dict(weights), 0

    def train_step(self, x, y):
        self.steps += 1
        self.weights["head.b"] = np.full_like(self.weights["head.b"], self.steps)
        return 2.0

    def reset_state(self):
        pass

    def get_weights(self):
        return dict(self.weights)


def test_keep_best_keeps_the_best_validation_and_the_last_state_beside(monkeypatch, corpus, tmp_path, capsys):
    import common.cli as cli
    import common.training as training

    vals = iter([3.0, 2.0, 2.5, 2.7])  # best at the second validation point (step 4)
    monkeypatch.setattr(training, "validation_loss", lambda model, batches: next(vals))
    monkeypatch.setattr(cli, "make_model", lambda framework, config, weights, path=None: Scripted(config, weights))
    ckpt = tmp_path / "m.safetensors"
    assert cli.main(["train", "--corpus", str(corpus), *TINY, "--iters", "8", "--val-every", "2", "--save", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "val loss 2.0000  saved" in out and "kept" in out and f"(best 2.0000 at step 4)" in out
    assert load_checkpoint(ckpt).weights["head.b"][0] == 4 and load_checkpoint(ckpt).run["weights"] == "best"
    assert load_checkpoint(last_path(ckpt)).weights["head.b"][0] == 8 and load_checkpoint(last_path(ckpt)).run["step"] == 8

    vals = iter([3.0, 2.0, 2.5, 2.7])
    monkeypatch.setattr(training, "validation_loss", lambda model, batches: next(vals))
    last = tmp_path / "l.safetensors"
    assert cli.main(["train", "--corpus", str(corpus), *TINY, "--iters", "8", "--val-every", "2", "--save", str(last),
                     "--keep", "last"]) == 0
    assert load_checkpoint(last).weights["head.b"][0] == 8 and not last_path(last).exists()


# ---------------------------------------------------------------------------------------------
# Sizes that cannot fit, threads

def test_memory_estimate_and_refusal():
    small = Config(vocab_size=65, hidden_size=256, num_layers=2)
    assert memory_needed(small) < memory_needed(small.replace(hidden_size=512)) < 2 ** 30
    check_memory(small, available=2 ** 34)
    with pytest.raises(ConfigError) as e:
        check_memory(small.replace(hidden_size=100000), available=8 * 2 ** 30)
    fits = int(re.search(r"at most --hidden-size (\d+) fits", str(e.value)).group(1))
    assert memory_needed(small.replace(hidden_size=fits)) <= 8 * 2 ** 30 < memory_needed(small.replace(hidden_size=fits + 1))
    assert "needs about" in str(e.value) and "8.0 GiB available" in str(e.value)


def test_an_absurd_size_is_one_sentence_before_anything_is_allocated(corpus):
    start = time.monotonic()
    proc = rosetta("train", "--corpus", corpus, "--hidden-size", 100000, "--iters", 1)
    assert proc.returncode == 2 and time.monotonic() - start < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"rosetta: error: training 1 layer\(s\) of 100000 units .* needs about "
                                        r"[\d,.]+ GiB of memory but this machine has .* available; at most "
                                        r"--hidden-size \d+ fits with these settings\.$", lines[0]), lines


def test_threads_above_the_cores_warn(corpus):
    import os

    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 1, "--threads", 4 * os.cpu_count())
    assert proc.returncode == 0
    assert f"rosetta: warning: --threads {4 * os.cpu_count()} is more than the {os.cpu_count()} cores" in proc.stderr


# ---------------------------------------------------------------------------------------------
# --minutes, time left, --log, rosetta plot

def test_minutes_stops_in_time_then_validates_and_saves(corpus, tmp_path):
    ckpt, log = tmp_path / "m.safetensors", tmp_path / "m.csv"
    start = time.monotonic()
    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 10 ** 8, "--minutes", 0.05, "--val-every", 0,
                   "--log-every", 1000, "--save", ckpt, "--log", log)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert took < 3 + 30, took  # 3 s of training, the rest start-up
    done = int(re.search(r"the --minutes 0.05 budget ran out after step (\d+) of 100000000\.", proc.stdout).group(1))
    rows = log_rows(log)
    assert len(rows) == done and rows[-1]["val_loss"] != ""  # validated at the stop
    assert 2.5 <= float(rows[-1]["elapsed"]) < 4.0
    assert load_checkpoint(ckpt).run["step"] == done


def test_progress_line_shows_time_left(corpus):
    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 40, "--log-every", 10, "--val-every", 0)
    lefts = re.findall(r"elapsed \d+\.\ds  left (\S+)", proc.stdout)
    assert len(lefts) == 4 and lefts[-1] == "0s"
    assert duration(5) == "5s" and duration(65) == "1m05s" and duration(3700) == "1h01m"


def test_log_has_a_row_per_step_and_the_validation_points(corpus, tmp_path):
    log = tmp_path / "run.csv"
    proc = rosetta("train", "--corpus", corpus, *TINY, "--iters", 7, "--val-every", 3, "--log", log)
    assert proc.returncode == 0, proc.stderr
    rows = log_rows(log)
    assert list(rows[0]) == ["step", "epoch", "loss", "val_loss", "chars_per_s", "elapsed"]
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    assert [int(r["step"]) for r in rows if r["val_loss"]] == [3, 6, 7]
    printed = [float(v) for v in re.findall(r"val loss (\d+\.\d+)", proc.stdout)]
    assert [round(float(r["val_loss"]), 4) for r in rows if r["val_loss"]] == printed
    assert all(float(r["chars_per_s"]) > 0 for r in rows)
    elapsed = [float(r["elapsed"]) for r in rows]
    assert elapsed == sorted(elapsed)
    notes = tmp_path / "notes.csv"
    notes.write_text("a,b\n1,2\n")
    refused = rosetta("train", "--corpus", corpus, *TINY, "--iters", 2, "--log", notes)
    assert refused.returncode == 2 and "is not a rosetta training log" in refused.stderr
    assert notes.read_text() == "a,b\n1,2\n"


def test_log_of_a_resumed_run_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "l.csv"
    log = Log(path, 0, False)
    for step in range(1, 6):
        log.row(step, 0, 1.0 / step, None, 10.0, step)
    log.close()
    log = Log(path, 3, True)  # a run saved at step 3 and killed at 5, resumed from 3
    log.row(4, 0, 0.5, 0.6, 10.0, 4.0)
    log.close()
    assert [(r["step"], r["val_loss"]) for r in log_rows(path)] == [("1", ""), ("2", ""), ("3", ""), ("4", "0.6")]


def test_plot_draws_one_or_more_runs(corpus, tmp_path):
    for name, lr in (("a", "0.01"), ("b", "0.003")):
        assert rosetta("train", "--corpus", corpus, *TINY, "--iters", 6, "--val-every", 3, "--learning-rate", lr,
                       "--log", tmp_path / f"{name}.csv").returncode == 0
    proc = rosetta("plot", tmp_path / "a.csv", tmp_path / "b.csv", "--out", tmp_path / "loss.png")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = rosetta("plot", tmp_path / "a.csv")
    assert single.returncode == 0 and (tmp_path / "a.png").exists()
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    for args, message in (([tmp_path / "none.csv"], "no training log at"), ([tmp_path / "bad.csv"], "is not a training log"),
                          ([tmp_path / "a.csv", "--out", tmp_path / "a.txt"], "must name a .png file")):
        bad = rosetta("plot", *args)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and message in lines[0] and lines[0].endswith("."), lines


def test_save_checkpoint_refuses_a_misshapen_training_state(tmp_path):
    config = Config(vocab_size=5, hidden_size=4, num_layers=1, batch_size=2)
    vocab = Vocabulary("abcde")
    state = {name: np.zeros(shape) for name, shape in training_state_shapes(config).items()}
    save_checkpoint(tmp_path / "ok.safetensors", init_weights(config), vocab, config, "numpy", state, {"step": 1})
    assert json.loads(load_checkpoint(tmp_path / "ok.safetensors").metadata["training"]) == {"step": 1}
    state["state.h/0"] = np.zeros((3, 4))
    with pytest.raises(CheckpointError, match=r"tensor 'state.h/0' of the training state has shape \(3, 4\)"):
        save_checkpoint(tmp_path / "bad.safetensors", init_weights(config), vocab, config, "numpy", state, {"step": 1})
