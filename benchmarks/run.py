"""The benchmark: every implementation trained on the same workload, each in its own process.

    python -m benchmarks.run                      # the reference run, about 15 minutes on 2 cores
    python -m benchmarks.run --quick --out bench-quick            # a few minutes (README)
    python -m benchmarks.run --frameworks torch --paths layer --iters 50 --hidden-size 512
    python -m benchmarks.report results           # then REPORT.md from the CSVs

An implementation is a framework and one of its paths (numpy-cell, numpy-fast, torch-layer,
torch-cell, torch-fast, keras-layer, keras-cell, keras-fast), and for Keras one of its backends
(keras-layer@jax: the same keras_impl code on JAX; "fast" is TensorFlow's only). Each runs in a
fresh `python -m benchmarks.worker` process with the same thread count, the same batches
(common.corpus + common.batches) and the same initial weights (common.weights.init_weights from the
config seed); run.py relays its progress and collects its JSON. One implementation failing (a
missing package, a crash, a non-finite loss, a timeout) is recorded in summary.csv's status and the
others still run. Two phases:

    main runs   every implementation trains the same 1 + warmup + iters steps, never cut by time:
                the losses, curves and the final validation (always at the last step) are compared
                there. Its final weights are then re-scored by numpy's forward and its sample tested
                against them (benchmarks/checks.py); a row that fails is "broken: <why>".
    rounds      throughput: every implementation that passed, again in a fresh process, `rounds`
                times, each round in an order shuffled with (--rounds-seed, round), the reference
                twice (NOISE: the noise floor); warmup + at most round_iters timed steps, cut after
                --budget seconds. Every throughput figure comes from here (benchmarks/stats.py).

Written to --out:

    steps.csv         one row per main-run training step: impl, framework, path, step, phase, loss,
                      step_time_s, val_loss (where measured)
    summary.csv       one row per implementation: the main run's losses, validation, checks, time to
                      first step, memory; the rounds' throughput, ratio to torch-layer with its 95 %
                      interval and verdict, timed steps per round
    sweep.csv         throughput against hidden size (short runs, throughput only)
    rounds.csv        one row per process of the rounds, in the order it ran (position); a ratio to
                      torch-layer is taken within each round, so a slow spell hits both sides

summary.csv, rounds.csv and sweep.csv carry the machine's load around each worker (LOAD_COLUMNS):
the load average before and after, and the cores other processes kept busy just before it started
and while it ran; the report flags a figure taken beside more than BUSY_CORES busy cores.
    gemm.csv          float32 (n, n) matrix-multiply GFLOP/s of each library (roofline.csv: all shapes)
    roofline.csv/json the CPU record, the FMA ceiling derived and measured, every library's matmul
                      (benchmarks/roofline.py); the peak is the best matmul measured
    environment.json  versions, CPU, threads, BLAS, git commit, devices, the config
    samples.txt       a short generated text from each implementation
"""

import argparse
import csv
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import random

from benchmarks import flops, roofline
from benchmarks.checks import self_check
from benchmarks.stats import again, throughput
from benchmarks.worker import MALLOC_CHOICES, malloc_env, thread_env
from common.batches import Batches, split
from common.config import Config, add_config_args
from common.errors import ConfigError, RosettaError
from common.frameworks import DEFAULT_KERAS_BACKEND, FRAMEWORKS, KERAS_BACKENDS, PATHS, check_framework, paths_on
from common.runtime import busy_cores, cpu_times

ROOT = Path(__file__).resolve().parents[1]

# Defaults of the reference run and of --quick; a flag given on the command line wins over both.
DEFAULTS = {  # reference run: ~15 min on 2 idle cores for its 11 rows; --quick: README: Benchmark options
    # main runs: 1 + warmup + iters steps each, all of them, whatever they cost (no time cap): the
    # losses, curves and final validation every row is compared at (about 5 min for the 11 rows)
    "iters": (300, 20), "warmup": (5, 2), "hidden_size": (256, 128), "num_layers": (2, 2),
    "batch_size": (32, 32), "seq_length": (64, 64), "val_every": (100, 10),
    "sweep_hidden": ("64,128,256,512", ""), "sweep_iters": (10, 5),
    # the rounds: every row's throughput, 5 fresh processes each (and the reference twice per round)
    # of warmup + at most round_iters timed steps, about 6 s a process: about 6 min for 12 a round
    "gemm_size": (2048, 512), "rounds": (5, 5), "round_iters": (20, 5),
    # seconds of timed steps after which a round's process stops (at least 3 steps): a slow row's
    # throughput is measured over fewer steps, so that the run does not grow with its slowest row;
    # the losses of the main runs are never cut (the report says how many steps each row timed)
    "budget": (5.0, 1.0), "sweep_budget": (4.0, 2.0),
    # char-rnn's rate, lower than the command line's 1e-2: Keras' Adam puts epsilon outside the bias
    # correction, and at 1e-2 that alone moves its loss 2e-3 from the others within 8 steps (1e-4 here)
    "learning_rate": (2e-3, 2e-3),
}
# The machine's load around each worker (LoadWatch): the 1-minute load average before and after,
# the cores other processes kept busy just before it started (a short /proc/stat window) and, on
# average, while it ran (all cores' busy time less the worker's own CPU time, over its wall time)
LOAD_COLUMNS = ["load1_before", "load1_after", "others_busy_cores_before", "others_busy_cores"]
BUSY_CORES = 0.3  # others kept more than this many cores busy: the figure was taken on a busy machine
SUMMARY_COLUMNS = [
    "impl", "framework", "path", "backend", "status", "chars_per_s", "step_ms_median", "time_to_first_step_s", "idle_rss_mb", "warm_rss_mb", "timed_peak_rss_mb",
    "peak_rss_mb", "page_faults_per_step", "system_ms_per_step", "flops_per_char", "peak_fraction", "first_loss",
    "final_loss", "final_val_loss", "final_step", "numpy_val_loss", "sample_nll", "sample_z", "check",
    "ratio", "ratio_lo", "ratio_hi", "verdict", "rounds_ok", "device", "vocab_size", "hidden_size",
    "num_layers", "batch_size", "seq_length", "dtype", "optimizer", "learning_rate", "clip_norm",
    "threads", "iters", "warmup", "timed_steps", "capped_by_budget", *LOAD_COLUMNS]
STEPS_COLUMNS = ["impl", "framework", "path", "step", "phase", "loss", "step_time_s", "val_loss"]
SWEEP_COLUMNS = ["impl", "framework", "path", "hidden_size", "chars_per_s", "step_ms_median",
                 "timed_steps", "status", "device", *LOAD_COLUMNS]  # the load of the worker that ran the sweep too
GEMM_COLUMNS = ["lib", "n", "threads", "reps", "median_s", "gflops", "status"]
ROUNDS_COLUMNS = ["round", "position", "impl", "chars_per_s", "step_ms_median", "ratio", "timed_steps",
                  "capped_by_budget", "status", "device", *LOAD_COLUMNS]
REFERENCE = "torch-layer"  # throughput ratios are against this implementation (here and in the report)
NOISE = again(REFERENCE)  # the reference's second process in each round: the noise floor


# ---------------------------------------------------------------------------------------------
# The command line

class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line and exit status 2, instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    parse.__name__ = "whole number"
    return parse


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def names(text):
    """'numpy, torch' -> ['numpy', 'torch'] (order kept, duplicates dropped)."""
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def sizes(text):
    """'64,128' -> [64, 128]; '' -> []."""
    out = []
    for part in names(text):
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers like 64,128,256, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"hidden sizes must be 1 or more, got {value}")
        out.append(value)
    return out


def build_parser():
    p = Parser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    q = lambda name: f"(default {DEFAULTS[name][0]}; with --quick {DEFAULTS[name][1]})"  # noqa: E731
    p.add_argument("--frameworks", type=names, default="numpy,torch,keras",
                   help=f"comma-separated frameworks, of {', '.join(FRAMEWORKS)} (default %(default)s)")
    p.add_argument("--paths", type=names, default="layer,cell,fast",
                   help="comma-separated paths: layer (the library's LSTM), cell (gates written out, the "
                        "lesson), fast (each framework's tuned fast.py); numpy has no layer (default %(default)s)")
    p.add_argument("--keras-backends", type=names, default=",".join(KERAS_BACKENDS),
                   help="comma-separated Keras 3 backends, a row each per path: "
                        f"{', '.join(KERAS_BACKENDS)}; fast runs on tensorflow only (default %(default)s)")
    p.add_argument("--iters", type=whole(1), default=None,
                   help=f"training steps of every main run after the first and warm-up steps, all run whatever "
                        f"they cost: the losses and final validation compared {q('iters')}")
    p.add_argument("--warmup", type=whole(0), default=None,
                   help=f"steps after the first one, left out of the timing (main runs and rounds) {q('warmup')}")
    p.add_argument("--hidden-size", type=whole(1), default=None, help=f"LSTM units per layer {q('hidden_size')}")
    p.add_argument("--num-layers", type=whole(1), default=None, help=f"stacked LSTM layers {q('num_layers')}")
    p.add_argument("--batch-size", type=whole(1), default=None, help=f"text streams per batch {q('batch_size')}")
    p.add_argument("--seq-length", type=whole(1), default=None, help=f"time steps per batch {q('seq_length')}")
    p.add_argument("--learning-rate", type=positive_float, default=None, help=f"optimizer step size {q('learning_rate')}")
    add_config_args(p, skip=("vocab_size", "hidden_size", "num_layers", "batch_size", "seq_length", "learning_rate"))
    p.add_argument("--threads", type=whole(1), default=2,
                   help="threads for every framework and BLAS (the same for all implementations) (default %(default)s)")
    p.add_argument("--malloc", choices=MALLOC_CHOICES, default="steady",
                   help="steady: every worker keeps the memory it frees for its next step (glibc's mmap and "
                        "trim thresholds fixed, benchmarks/worker.py); default: the machine's allocator, "
                        "whose page faults can halve a framework's speed from one process to the next "
                        "(default %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="where the torch rows run: cpu, cuda, cuda:1; Keras and numpy rows run where their backends "
                        "do, and every row records its device (default %(default)s)")
    p.add_argument("--corpus", default="tinyshakespeare", help="built-in corpus name or a UTF-8 text file (default %(default)s)")
    p.add_argument("--val-every", type=whole(0), default=None,
                   help=f"validation loss every K steps; 0 = at the end only (always) {q('val_every')}")
    p.add_argument("--val-batches", type=whole(1), default=8,
                   help="validation batches per measurement (the first ones, state carried from zeros) (default %(default)s)")
    p.add_argument("--sweep-hidden", type=sizes, default=None,
                   help=f"hidden sizes of the throughput-only sweep; empty = no sweep {q('sweep_hidden')}")
    p.add_argument("--sweep-iters", type=whole(1), default=None,
                   help=f"at most this many timed steps per sweep size {q('sweep_iters')}")
    p.add_argument("--sweep-budget", type=positive_float, default=None,
                   help=f"seconds of timed steps per sweep size after which it stops (at least 3 steps) {q('sweep_budget')}")
    p.add_argument("--budget", type=positive_float, default=None,
                   help=f"seconds of timed steps after which a round's process stops (at least 3 steps; the "
                        f"main runs, whose losses are compared, are never cut) {q('budget')}")
    p.add_argument("--rounds", type=whole(0), default=None,
                   help=f"interleaved throughput rounds after the main runs, every throughput figure's source; "
                        f"0 = none {q('rounds')}")
    p.add_argument("--round-iters", type=whole(1), default=None,
                   help=f"timed steps per implementation and round {q('round_iters')}")
    p.add_argument("--rounds-seed", type=whole(0), default=0,
                   help="seed of each round's shuffled order (recorded in environment.json) (default %(default)s)")
    p.add_argument("--gemm-size", type=whole(64), default=None,
                   help=f"n of the (n, n) float32 matrix product that measures the peak {q('gemm_size')}")
    p.add_argument("--sample-length", type=whole(0), default=300,
                   help="characters of generated text per implementation; 0 = none (default %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=1800.0,
                   help="seconds after which one implementation's process is stopped and recorded as failed (default %(default)s)")
    p.add_argument("--out", default="results", help="folder for the CSV files, environment.json and samples.txt (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="a configuration of a few minutes (smaller, fewer steps, short rounds, no sweep)")
    return p


def make_plan(args):
    """Everything a run needs, checked: implementations, config, corpus sizes. ConfigError on a bad value."""
    preset = 1 if args.quick else 0
    given = {name for name in DEFAULTS if getattr(args, name) is not None}
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            value = values[preset]
            setattr(args, name, sizes(value) if name == "sweep_hidden" else value)
    scale_to_the_run(args, given)
    impls = implementations(args.frameworks, args.paths, args.keras_backends)
    from common.corpus import load_corpus
    corpus = load_corpus(args.corpus)
    fields = {f: getattr(args, f) for f in ("hidden_size", "num_layers", "batch_size", "seq_length",
                                            "learning_rate", "optimizer", "clip_norm", "dtype", "seed")}
    config = Config.from_dict({"vocab_size": len(corpus.vocab),
                               **{k: v for k, v in fields.items() if v is not None}})
    train, val = split(corpus.data)
    Batches(train, config.batch_size, config.seq_length, "train")
    Batches(val, config.batch_size, config.seq_length, "validation")  # every main run ends validated
    return {"impls": impls, "config": config, "corpus": corpus, "args": args,
            "train_chars": len(train), "val_chars": len(val)}


def scale_to_the_run(args, given):
    """The rounds and the sweep scale with the run: no round or sweep size takes more timed steps than
    a main run, nor a sweep size more seconds than a round; a value given on the command line is kept."""
    for name, limit in (("round_iters", args.iters), ("sweep_iters", args.iters), ("sweep_budget", args.budget)):
        if name not in given:
            setattr(args, name, min(getattr(args, name), limit))


def backend_of(impl):
    """The Keras backend named in an implementation's tag ("keras-cell@jax" -> "jax"), or None."""
    return impl.split(" ")[0].partition("@")[2] or None


def implementations(frameworks, paths, keras_backends=(DEFAULT_KERAS_BACKEND,)):
    """[(impl, framework, path)]: every framework with each of its paths that was asked for, and Keras
    once per backend (impl "keras-<path>@<backend>"); "fast" is Keras on TensorFlow only."""
    if not frameworks:
        raise ConfigError(f"--frameworks is empty; give one or more of {', '.join(FRAMEWORKS)}.")
    known = sorted({p for ps in PATHS.values() for p in ps})
    for path in paths:
        if path not in known:
            raise ConfigError(f"unknown path {path!r}; choose from {', '.join(known)}.")
    impls = []
    for framework in frameworks:
        check_framework(framework)
        if framework != "keras":
            impls += [(f"{framework}-{p}", framework, p) for p in PATHS[framework] if p in paths]
            continue
        if not keras_backends:
            raise ConfigError(f"--keras-backends is empty; give one or more of {', '.join(KERAS_BACKENDS)}.")
        for backend in keras_backends:  # paths_on checks the backend's name
            impls += [(f"keras-{p}@{backend}", framework, p) for p in paths_on(framework, backend) if p in paths]
    if not impls:
        raise ConfigError(
            f"no implementation has the path(s) {', '.join(paths)} in framework(s) {', '.join(frameworks)}; "
            f"numpy has cell and fast, torch and keras layer, cell and fast.")
    return impls


# ---------------------------------------------------------------------------------------------
# Running one worker

def run_worker(spec, workdir, threads, timeout, malloc="steady"):
    """Run benchmarks.worker on `spec` in a fresh process, with `threads` threads and the allocator
    `malloc` (worker.malloc_env); its result dict (status says what failed)."""
    name = spec.get("impl") or f"{spec['mode']}-{spec.get('lib')}"
    out = workdir / f"{spec['mode']}-{name}.json"
    out.unlink(missing_ok=True)
    spec = {**spec, "threads": threads, "out": str(out)}
    env = {**os.environ, **thread_env(threads, backend_of(name) or spec.get("backend")), **malloc_env(malloc),
           "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    load = LoadWatch()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", "--spec", json.dumps(spec)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    tail = []  # the worker's other output (library warnings, a traceback): shown only if it fails

    def relay():
        for line in proc.stdout:
            if line.startswith("["):  # the worker's progress lines
                sys.stderr.write("  " + line)
                sys.stderr.flush()
            elif line.strip():
                tail[:] = (tail + [line.rstrip()])[-30:]

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    started = time.perf_counter()
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    except BaseException:  # Ctrl-C: stop the worker we started, then stop
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    result = json.loads(out.read_text()) if out.exists() else {"steps": [], "val": [], "sweep": []}
    result["load"] = load.done()
    if timed_out:
        message = f"failed: timeout after {time.perf_counter() - started:.0f} s (--timeout {timeout:g})"
        result["sweep_status" if result.get("main_done") else "status"] = message
    elif not out.exists() or proc.returncode != 0 and result.get("status", "").startswith("ok"):
        last = tail[-1].strip() if tail else "no output"
        result["status"] = f"failed: worker exited with code {proc.returncode}: {last[:300]}"
    if result.get("status") != "ok" and tail:
        sys.stderr.write("".join(f"    {line}\n" for line in tail[-15:]))
    return result


class LoadWatch:
    """The machine's load around one worker (LOAD_COLUMNS): made just before the worker starts,
    done() after it was reaped."""

    def __init__(self):
        self.load1_before = os.getloadavg()[0]
        self.others_before = busy_cores(0.05)  # run.py sleeps in this window: all of it is others' work
        self.cpu, self.children, self.wall = cpu_times(), children_cpu_s(), time.perf_counter()

    def done(self):
        wall, cpu = time.perf_counter() - self.wall, cpu_times()
        out = {"load1_before": round(self.load1_before, 2), "load1_after": round(os.getloadavg()[0], 2),
               "others_busy_cores_before": None if self.others_before is None else round(self.others_before, 2),
               "others_busy_cores": None}
        if cpu and self.cpu and wall > 0:
            busy_s = (cpu[0] - self.cpu[0]) / os.sysconf("SC_CLK_TCK")
            own_s = children_cpu_s() - self.children  # the worker's CPU time, its threads and children
            out["others_busy_cores"] = round(max(0.0, (busy_s - own_s) / wall), 2)
        return out


def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy(row):
    """Whether a row's figure was taken while other processes kept more than BUSY_CORES cores busy."""
    values = [row.get(k) for k in ("others_busy_cores", "others_busy_cores_before")]
    return any(v is not None and v != "" and float(v) > BUSY_CORES for v in values)


# ---------------------------------------------------------------------------------------------
# From worker results to rows

def smoothed_final(losses):
    """Mean of the last 10 % of the losses (at least 1, at most 20): the final loss, less noisy."""
    window = max(1, min(20, len(losses) // 10))
    return float(np.mean(losses[-window:]))


def summary_row(impl, framework, path, result, plan):
    """summary.csv's row of one main run: losses, validation, memory, start-up, checked; its
    throughput comes from the rounds afterwards (add_throughput)."""
    config, args = plan["config"], plan["args"]
    row = {"impl": impl, "framework": framework, "path": path, "backend": backend_of(impl) or "",
           "status": result.get("status", "failed"),
           "device": result.get("device", ""), "threads": args.threads, "iters": args.iters,
           "warmup": args.warmup, **{k: v for k, v in config.to_dict().items() if k != "seed"},
           **result.get("load", {})}
    row["flops_per_char"] = flops.flops_per_char(config.vocab_size, config.hidden_size, config.num_layers)
    row["time_to_first_step_s"] = result.get("time_to_first_step_s")
    for key in ("idle_rss_mb", "warm_rss_mb", "timed_peak_rss_mb", "peak_rss_mb", "page_faults_per_step",
                "system_ms_per_step"):
        row[key] = result.get(key)
    losses = [s["loss"] for s in result.get("steps", [])]
    if result.get("val"):
        row["final_val_loss"], row["final_step"] = result["val"][-1]["val_loss"], result["val"][-1]["step"]
    if losses:
        row["first_loss"], row["final_loss"] = losses[0], smoothed_final(losses)
    if row["status"] != "ok":
        return row
    # The loss is checked before a figure is written: finite, and falling.
    if not np.all(np.isfinite(losses)):
        row["status"] = "failed: non-finite loss"
        return row
    if not row["final_loss"] < row["first_loss"]:
        row["status"] = (f"failed: loss did not fall (first {row['first_loss']:.4f}, "
                         f"final smoothed {row['final_loss']:.4f})")
    return row


def add_throughput(summary, rounds, plan, peak_gflops):
    """Each summary row's throughput from the rounds (benchmarks/stats.py), the one set of figures:
    median chars/s and step, the ratio to REFERENCE with its 95 % interval and verdict, the rounds
    it finished, its median timed steps per round and how many rounds the budget capped."""
    figures, _ = throughput(rounds, REFERENCE)
    for row in summary:
        t = figures.get(row["impl"])
        if t is None or row["status"] != "ok":
            continue
        row.update(chars_per_s=t.chars_per_s, step_ms_median=t.step_ms, ratio=t.ratio, ratio_lo=t.lo,
                   ratio_hi=t.hi, verdict=t.verdict, rounds_ok=t.rounds, timed_steps=t.timed_steps,
                   capped_by_budget=f"{t.capped} of {t.rounds}")
        row["peak_fraction"] = flops.peak_fraction(t.chars_per_s, row["flops_per_char"],
                                                   peak_gflops * 1e9 if peak_gflops else None)


def steps_rows(impl, framework, path, result):
    vals = {v["step"]: v["val_loss"] for v in result.get("val", [])}
    return [{"impl": impl, "framework": framework, "path": path, **s, "val_loss": vals.get(s["step"])}
            for s in result.get("steps", [])]


def sweep_rows(impl, framework, path, result, config, asked):
    rows, chars = [], config.batch_size * config.seq_length
    done = {r["hidden_size"]: r for r in result.get("sweep", [])}
    for H in asked:
        not_run = result.get("sweep_status") or (result.get("status") if result.get("status") != "ok"
                                                 else "failed: not reached")
        r = done.get(H, {"status": not_run, "step_times_s": [], "losses": []})
        row = {"impl": impl, "framework": framework, "path": path, "hidden_size": H,
               "timed_steps": len(r["step_times_s"]), "status": r["status"], "device": result.get("device"),
               **result.get("load", {})}
        if r["status"] == "ok" and not (r["losses"] and np.all(np.isfinite(r["losses"]))):
            row["status"] = "failed: non-finite loss"
        if row["status"] == "ok" and r["step_times_s"]:
            median = float(np.median(r["step_times_s"]))
            row.update(chars_per_s=chars / median, step_ms_median=1e3 * median)
        elif row["status"] == "ok":
            row["status"] = "failed: no timed step"
        rows.append(row)
    return rows


def round_rows(rnd, results, config, round_iters=None):
    """rounds.csv rows of one round, in the order they ran: each implementation's median step, its
    timed steps (capped_by_budget: fewer than round_iters), and its ratio to REFERENCE in this same
    round (None when either side failed)."""
    chars, rows = config.batch_size * config.seq_length, []
    for position, (impl, r) in enumerate(results.items(), 1):
        times = [s["step_time_s"] for s in r.get("steps", []) if s["phase"] == "timed"]
        ok = r.get("status") == "ok" and times and all(np.isfinite([s["loss"] for s in r["steps"]]))
        median = float(np.median(times)) if ok else None
        rows.append({"round": rnd, "position": position, "impl": impl, "status": r.get("status") if not ok else "ok",
                     "chars_per_s": chars / median if median else None, "timed_steps": len(times),
                     "capped_by_budget": ("yes" if len(times) < round_iters else "no") if round_iters else None,
                     "step_ms_median": 1e3 * median if median else None, "device": r.get("device"),
                     **r.get("load", {})})
    reference = next((row["chars_per_s"] for row in rows if row["impl"] == REFERENCE), None)
    for row in rows:
        row["ratio"] = row["chars_per_s"] / reference if row["chars_per_s"] and reference else None
    return rows


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def write_samples(path, samples):
    with open(path, "w", encoding="utf-8") as f:
        for impl, text in samples.items():
            f.write(f"--- {impl} ---\n{text}\n\n")


# ---------------------------------------------------------------------------------------------
# The environment record

def package_versions():
    out = {}
    for name in ("numpy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "pandas", "matplotlib",
                 "threadpoolctl", "safetensors"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    def git(*cmd):
        r = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))
            if commit else None}


def blas_info(threads):
    from threadpoolctl import threadpool_info, threadpool_limits
    with threadpool_limits(limits=threads):
        pools = [{k: v for k, v in pool.items() if k != "filepath"} for pool in threadpool_info()]
    try:
        build = np.show_config(mode="dicts").get("Build Dependencies", {})
    except Exception:  # older numpy prints instead of returning
        build = {}
    # OPENBLAS_CORETYPE pins OpenBLAS to one kernel (some shared machines set it); the threadpool's
    # "architecture" says which kernel numpy's matrix products really ran on
    pinned = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    return {"threadpools": pools, "numpy_build": build, "openblas_env": pinned}


def environment(plan, results, gemm):
    args, corpus = plan["args"], plan["corpus"]
    run = {k: getattr(args, k) for k in ("frameworks", "paths", "iters", "warmup", "threads", "corpus",
                                         "val_every", "val_batches", "sweep_hidden", "sweep_iters",
                                         "sweep_budget", "gemm_size", "sample_length", "quick",
                                         "rounds", "round_iters", "budget", "rounds_seed")}
    run["busy_before_run"] = plan.get("busy_before_run")
    shas = {r.get("data_sha256") for r in results.values() if r.get("data_sha256")}
    wshas = {r.get("weights_sha256") for r in results.values() if r.get("weights_sha256")}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "packages": package_versions(),
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(),
                "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                **roofline.run_record(plan.get("roofline"))},  # flags, cores, clock, steal over the run, pins
        "roofline": {k: v for k, v in (plan.get("roofline") or {}).items() if k not in ("cpu", "stat")},
        "threads": args.threads, "thread_env": thread_env(args.threads),
        "malloc": args.malloc, "malloc_env": malloc_env(args.malloc),
        "blas": blas_info(args.threads), "git": git_commit(),
        "devices": {impl: r.get("device") for impl, r in results.items()},
        "framework_versions": {impl: r.get("framework_version") for impl, r in results.items()},
        "config": plan["config"].to_dict(), "run": run,
        "data": {"corpus": corpus.name, "chars": len(corpus.data), "vocab_size": len(corpus.vocab),
                 "train_chars": plan["train_chars"], "val_chars": plan["val_chars"],
                 "same_batches_in_every_worker": len(shas) <= 1, "batches_sha256": sorted(shas),
                 "same_weights_in_every_worker": len(wshas) <= 1},
        "flops_formula": flops.FORMULA,
        "peak_gflops": (plan.get("roofline") or {}).get("ceilings", {}).get("matmul", (None,))[0],
        "validation": "mean loss over the first val_batches validation batches, the LSTM state carried "
                      "through them from zeros; measured outside the step timing",
    }


# ---------------------------------------------------------------------------------------------
# The run

def run(plan):
    args, config = plan["args"], plan["config"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rosetta-bench-") as work:  # the workers' JSON files
        return run_all(plan, out, Path(work))


def run_all(plan, out, work):
    args, config = plan["args"], plan["config"]
    base = {"corpus": args.corpus, "config": config.to_dict(), "device": args.device}  # worker.model_options
    timeout = args.timeout
    started = time.perf_counter()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    impls = plan["impls"]
    plan["busy_before_run"] = busy_cores(0.5)  # the machine before anything of ours ran
    say(f"benchmark: {', '.join(i for i, _, _ in impls)} | V={config.vocab_size} H={config.hidden_size} "
        f"L={config.num_layers} B={config.batch_size} T={config.seq_length} {config.dtype} "
        f"{config.optimizer} | main runs: {1 + args.warmup + args.iters} steps each, compared | "
        f"{args.rounds} rounds of {args.warmup} + {args.round_iters} steps (at most {args.budget:g} s) | "
        f"{args.threads} threads | -> {out}")

    # The roofline (benchmarks/roofline.py): before the workers, never beside one. gemm.csv keeps each
    # library's square product; the peak is the best matrix multiply of any library and shape.
    roof = plan["roofline"] = roofline.measure(out, args.threads, config, args.gemm_size, args.quick, say)
    gemm = roofline.gemm_rows(roof)
    peak = roof["ceilings"].get("matmul", (None,))[0]
    write_csv(out / "gemm.csv", GEMM_COLUMNS, gemm)

    results, summary, steps, samples, sweep = {}, [], [], {}, []
    val_batches, num_val = validation_batches(plan)

    def write_all():
        write_csv(out / "summary.csv", SUMMARY_COLUMNS, summary)
        write_csv(out / "steps.csv", STEPS_COLUMNS, steps)
        write_csv(out / "sweep.csv", SWEEP_COLUMNS, sweep)
        write_samples(out / "samples.txt", samples)
        (out / "environment.json").write_text(json.dumps(environment(plan, results, gemm), indent=2))

    for n, (impl, framework, path) in enumerate(impls, 1):
        say(f"[{n}/{len(impls)}] {impl}")
        weights = work / f"weights-{impl}.safetensors"
        spec = {**base, "mode": "train", "impl": impl, "framework": framework, "path": path,
                "iters": args.iters, "warmup": args.warmup, "val_every": args.val_every, "final_val": True,
                "val_batches": args.val_batches, "sample_length": args.sample_length, "weights_out": str(weights)}
        if args.sweep_hidden:  # run by the same worker after the main run: no second start-up
            spec["sweep"] = {"hidden_sizes": args.sweep_hidden, "iters": args.sweep_iters, "warmup": 1,
                             "budget_s": args.sweep_budget}
        results[impl] = r = run_worker(spec, work, args.threads, timeout, args.malloc)
        row = summary_row(impl, framework, path, r, plan)
        if row["status"] == "ok":  # the self-check before any figure of it is published
            row.update(self_check(r, weights, val_batches, num_val, args.warmup + args.iters))
            if row["check"] != "ok":
                row["status"] = row["check"]
        summary.append(row)
        steps += steps_rows(impl, framework, path, r)
        if r.get("sample"):
            samples[impl] = r["sample"]
        if args.sweep_hidden:
            sweep += sweep_rows(impl, framework, path, r, config, args.sweep_hidden)
        say(f"  {impl}: {row['status']}" + (f", final validation {row['final_val_loss']:.4f} at step "
                                            f"{row['final_step']} (numpy's {row['numpy_val_loss']:.4f}), first step "
                                            f"{row['time_to_first_step_s']:.1f} s" if row["status"] == "ok" else "")
            + (f" (busy machine: other processes kept {row['others_busy_cores']} cores busy)" if busy(row) else ""))
        write_all()
    rounds = run_rounds(plan, [impl for impl, row in zip(impls, summary) if row["status"] == "ok"], base, out, work)
    add_throughput(summary, rounds, plan, peak)
    write_all()
    ok = sum(row["status"] == "ok" for row in summary)
    say(f"done in {time.perf_counter() - started:.0f} s: {ok}/{len(summary)} implementations ok; "
        f"results in {out} (next: python -m benchmarks.report {out})")
    return 0


def validation_batches(plan):
    """The validation batches every worker validates on, and how many it reads (worker.load_data)."""
    from common.batches import split
    config = plan["config"]
    val = Batches(split(plan["corpus"].data)[1], config.batch_size, config.seq_length, "validation")
    return val, min(plan["args"].val_batches, len(val))


def round_order(impls, rnd, seed):
    """The order of one round: every implementation and the reference's second process (NOISE),
    shuffled by a generator seeded with (seed, rnd), so the order is random and recorded."""
    order = list(impls)
    reference = [i for i in impls if i[0] == REFERENCE]
    order += [(NOISE, *reference[0][1:])] if reference else []
    random.Random(f"{seed}-{rnd}").shuffle(order)
    return order


def run_rounds(plan, impls, base, out, work):
    """The interleaved rounds (rounds.csv): every implementation that ran and passed its checks,
    again in a fresh process, in a shuffled order (round_order), args.rounds times; written after
    each round. Returns the rows."""
    args, config = plan["args"], plan["config"]
    rounds = []
    for rnd in range(1, args.rounds + 1) if impls else ():
        order = round_order(impls, rnd, args.rounds_seed)
        print(f"round {rnd}/{args.rounds}: {', '.join(i for i, _, _ in order)}, {args.round_iters} timed steps "
              f"each", file=sys.stderr, flush=True)
        got = {}
        for impl, framework, path in order:
            spec = {**base, "mode": "train", "impl": f"{impl} round {rnd}", "framework": framework, "path": path,
                    "iters": args.round_iters, "warmup": args.warmup, "val_every": 0, "sample_length": 0,
                    "budget_s": args.budget}
            got[impl] = run_worker(spec, work, args.threads, args.timeout, args.malloc)
        rows = round_rows(rnd, got, config, args.round_iters)
        print("  " + ", ".join(f"{r['impl']} {r['ratio']:.2f}x" for r in rows if r["ratio"]), file=sys.stderr, flush=True)
        rounds += rows
        write_csv(out / "rounds.csv", ROUNDS_COLUMNS, rounds)
    return rounds


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        plan = make_plan(args)
    except RosettaError as e:
        print(f"python -m benchmarks.run: error: {e}", file=sys.stderr)
        return 2
    try:
        return run(plan)
    except KeyboardInterrupt:
        print("interrupted; the files written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
