"""rosetta train --workers 2 against --workers 1, through the command line, each run in its own
processes: per-step losses and final weights equal within float32 rounding (numpy over MPI, torch
over DistributedDataParallel, Keras on two jax devices); checkpoints, resume and stop requests
with workers; a batch size the workers cannot share is one sentence."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from tests.conftest import ROOT

TINY = ["--hidden-size", "12", "--batch-size", "4", "--seq-length", "8", "--sample-every", "0", "--threads", "1"]
RUNS = {  # name: (flags, steps)
    "numpy": (["--framework", "numpy"], 10),
    "torch-layer": (["--framework", "torch", "--path", "layer"], 8),
    "torch-cell": (["--framework", "torch", "--path", "cell"], 5),
    "keras-jax": (["--framework", "keras", "--backend", "jax"], 6),
}
LOSS_TOLERANCE = 1e-5    # float32: the sum of two shards' gradients is not rounded as the sum of all rows
WEIGHT_TOLERANCE = 1e-5


def rosetta(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ["the ", "quick ", "brown ", "fox ", "jumps ", "over ", "a ", "lazy ", "dog", ". ", ", ", "\n"]
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("".join(rng.choice(words, 3000)), encoding="utf-8")
    return path


def losses(log):
    with open(log, newline="") as f:
        return np.array([float(row["loss"]) for row in csv.DictReader(f)])


def train(corpus, tmp_path, name, flags, steps, workers, *more):
    save, log = tmp_path / f"{name}.{workers}.safetensors", tmp_path / f"{name}.{workers}.csv"
    proc = rosetta("train", "--corpus", corpus, *flags, *TINY, "--iters", steps, "--val-every", steps // 2,
                   "--keep", "last", "--save", save, "--log", log, "--workers", workers, *more)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, losses(log), load_checkpoint(save)


@pytest.mark.parametrize("name", RUNS)
def test_two_workers_equal_one_process(name, corpus, tmp_path):
    if name == "numpy" and shutil.which("mpiexec", path=os.path.dirname(sys.executable)) is None:
        pytest.fail("mpiexec is missing: pip install -r requirements.txt installs the mpich wheel")
    flags, steps = RUNS[name]
    one, losses1, ckpt1 = train(corpus, tmp_path, name, flags, steps, 1)
    two, losses2, ckpt2 = train(corpus, tmp_path, name, flags, steps, 2)
    assert "2 workers of 2 streams" in two.stdout
    assert two.stdout.count(f"step {steps}/{steps}") == 1  # rank 0 prints, the other worker does not
    assert len(losses1) == len(losses2) == steps
    np.testing.assert_allclose(losses2, losses1, rtol=0, atol=LOSS_TOLERANCE)
    assert losses1[-1] < losses1[0]  # it trained
    for weight in ckpt1.weights:
        np.testing.assert_allclose(ckpt2.weights[weight], ckpt1.weights[weight], rtol=0, atol=WEIGHT_TOLERANCE,
                                   err_msg=weight)
    for tensor in ckpt1.training:  # the optimizer's slots and every stream's carried state, gathered
        np.testing.assert_allclose(ckpt2.training[tensor], ckpt1.training[tensor], rtol=0, atol=WEIGHT_TOLERANCE,
                                   err_msg=tensor)


def test_resume_with_workers_continues_the_run(corpus, tmp_path):
    flags = RUNS["numpy"][0]
    _, whole, _ = train(corpus, tmp_path, "whole", flags, 10, 2)
    _, first, _ = train(corpus, tmp_path, "part", flags, 5, 2)
    save = tmp_path / "part.2.safetensors"
    shutil.copy(save, tmp_path / "at5.safetensors")
    proc = rosetta("train", "--corpus", corpus, *flags, *TINY, "--iters", 10, "--val-every", 5, "--keep", "last",
                   "--save", save, "--resume", save, "--log", tmp_path / "part.2.csv", "--workers", 2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_array_equal(losses(tmp_path / "part.2.csv"), whole)  # the same workers: bit for bit
    # a checkpoint of 2 workers holds all B streams' state: one process resumes it too
    proc = rosetta("train", "--corpus", corpus, *flags, *TINY, "--iters", 10, "--val-every", 5, "--keep", "last",
                   "--save", tmp_path / "one.safetensors", "--resume", tmp_path / "at5.safetensors",
                   "--log", tmp_path / "one.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(losses(tmp_path / "one.csv"), whole[5:], rtol=0, atol=LOSS_TOLERANCE)


def test_a_stop_request_stops_every_worker_and_saves(corpus, tmp_path):
    save = tmp_path / "stopped.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "train", "--corpus", str(corpus), *RUNS["numpy"][0],
                             *TINY, "--iters", "1000000", "--val-every", "0", "--log-every", "1", "--keep", "last",
                             "--save", str(save), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().startswith("numpy/cell")
    assert proc.stdout.readline().startswith("step")
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    ckpt = load_checkpoint(save)
    assert ckpt.run["step"] > 0 and ckpt.training["state.h/0"].shape == (4, 12)


def test_workers_that_do_not_divide_the_batch_is_one_sentence(corpus):
    proc = rosetta("train", "--corpus", corpus, "--framework", "numpy", *TINY, "--iters", 2, "--workers", 3)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 3 must divide --batch-size 4" in lines[0], proc.stderr


def test_keras_workers_on_tensorflow_is_one_sentence(corpus):
    proc = rosetta("train", "--corpus", corpus, "--framework", "keras", "--backend", "tensorflow", *TINY,
                   "--iters", 2, "--workers", 2)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "jax" in lines[0], proc.stderr
