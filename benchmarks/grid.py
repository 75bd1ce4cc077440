"""The workloads users run: training throughput over batch size, hidden size, sequence length and
threads; generation latency per character; start-up split into import, model build and first step.

    python -m benchmarks.grid --out results           # make bench-grid: at most 30 min on 2 cores
    python -m benchmarks.grid --quick --out /tmp/g    # tiny shapes, well under a minute
    python -m benchmarks.grid --report results        # GRID.md and its plots again from the CSVs

Not every combination is run (5 x 3 x 3 x 2 shapes would not fit the time): batch x hidden size
at the reference sequence length, sequence length at the reference batch and hidden size, and
1 thread against all threads at the reference shape (B=32, H=256, T=64, L=2, float32, Adam).
Each implementation runs in fresh `python -m benchmarks.worker` processes (mode "grid"), with the
same threads, batches and initial weights as in benchmarks/run.py: per repetition one process at
all threads (start-up split at the reference shape, then every other shape in random order, then
generation latency at batch 1 and 32) and one at 1 thread (the reference shape and generation).
The repetitions are interleaved: each runs every implementation once, in a random order.

Each shape is budgeted by time: its first step (tracing, compiling) is left out, then steps are
timed until BUDGET seconds have passed once MIN_STEPS are timed (at most MAX_STEPS); the
process's median step gives its figure. Written to --out: grid.csv (training, a row per process
and shape), generation.csv, startup.csv, grid.json (settings, machine, duration); then
benchmarks/grid_report.py writes GRID.md and grid_*.png from them (medians over the processes
with 95 % bootstrap intervals, where throughput stops growing, the findings).
"""

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.run import (LOAD_COLUMNS, Parser, cpu_model, git_commit, names, package_versions, positive_float,
                            run_worker, sizes, whole, write_csv)
from benchmarks.grid_report import GAIN, LEVEL, write_report
from benchmarks.worker import MALLOC_CHOICES
from common.config import Config
from common.errors import ConfigError, RosettaError
from common.frameworks import check_device, check_framework, paths_on

# The implementations of `make bench-grid`: each framework's library LSTM and its lesson or tuned
# path, and Keras on the two backends where it is fastest (keras-cell and Keras on the torch
# backend are left out: at 2-3x torch-layer's time per shape they would not fit 30 minutes).
IMPLS = ("numpy-cell", "numpy-fast", "torch-layer", "torch-cell", "keras-layer@tensorflow",
         "keras-fast@tensorflow", "keras-layer@jax")
# Each setting: (make bench-grid, --quick)
DEFAULTS = {
    "impls": (",".join(IMPLS), "numpy-cell,numpy-fast,torch-layer"),
    "batch_sizes": ("1,8,32,128,512", "1,4,16"), "hidden_sizes": ("128,256,512", "16,32"),
    "seq_lengths": ("16,64,256", "8,16,32"), "reference": ("32,256,64", "4,16,16"), "num_layers": (2, 1),
    "reps": (3, 3), "budget": (0.5, 0.05), "min_steps": (2, 2), "max_steps": (60, 4),
    "gen_batches": ("1,32", "1,4"), "gen_chars": (200, 8), "gen_warmup": (5, 2), "gen_budget": (1.0, 0.05),
}
GRID_COLUMNS = ["rep", "impl", "framework", "path", "backend", "device", "threads", "batch_size", "hidden_size",
                "seq_length", "chars_per_s", "step_ms_median", "timed_steps", "build_s", "first_step_s", "status",
                *LOAD_COLUMNS]
GENERATION_COLUMNS = ["rep", "impl", "device", "threads", "batch_size", "hidden_size", "ms_per_char_median",
                      "ms_per_char_p90", "chars", "status", *LOAD_COLUMNS]
STARTUP_COLUMNS = ["rep", "impl", "device", "threads", "import_s", "build_s", "first_step_s", "total_s", "status",
                   *LOAD_COLUMNS]


# ---------------------------------------------------------------------------------------------
# The plan

def parse_impl(tag):
    """'keras-layer@jax' -> ('keras', 'layer', 'jax'); a ConfigError naming the tag if it does not exist."""
    name, _, backend = tag.partition("@")
    framework, _, path = name.partition("-")
    try:
        check_framework(framework, path or None)
        if framework == "keras" and (not backend or path not in paths_on("keras", backend)):
            raise ConfigError(f"keras has no path {path!r} on backend {backend or '(none)'!r}")
    except ConfigError as e:
        raise ConfigError(f"unknown implementation {tag!r} ({e}); give names like "
                          f"{', '.join(IMPLS[:3])} or keras-layer@jax.") from None
    if framework != "keras" and backend:
        raise ConfigError(f"unknown implementation {tag!r}: only keras takes a backend (keras-layer@jax).")
    return framework, path, backend or None


def shape(text):
    """'32,256,64' -> (32, 256, 64): the reference B, H, T."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected three whole numbers B,H,T like 32,256,64, got {text!r}")
    return tuple(int(p) for p in parts)


def cells(batch_sizes, hidden_sizes, seq_lengths, reference):
    """The shapes of an all-threads process: the reference first, then batch x hidden at the
    reference sequence length and sequence length at the reference batch and hidden size."""
    B, H, T = reference
    shapes = [(B, H, T)] + [(b, h, T) for h in hidden_sizes for b in batch_sizes] + [(B, H, t) for t in seq_lengths]
    return [{"batch_size": b, "hidden_size": h, "seq_length": t} for b, h, t in dict.fromkeys(shapes)]


def usable_cores():
    """The cores this process may run on (its affinity where the system says), 'all threads'."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build_parser():
    p = Parser(prog="python -m benchmarks.grid", description=__doc__.split("\n\n")[0])
    q = lambda name: f"(default {DEFAULTS[name][0]}; with --quick {DEFAULTS[name][1]})"  # noqa: E731
    p.add_argument("--impls", type=names, default=None, help=f"implementations {q('impls')}")
    p.add_argument("--batch-sizes", type=sizes, default=None, help=f"batch sizes at the reference T {q('batch_sizes')}")
    p.add_argument("--hidden-sizes", type=sizes, default=None, help=f"hidden sizes at the reference T {q('hidden_sizes')}")
    p.add_argument("--seq-lengths", type=sizes, default=None, help=f"sequence lengths at the reference B and H {q('seq_lengths')}")
    p.add_argument("--reference", type=shape, default=None, help=f"the reference shape B,H,T {q('reference')}")
    p.add_argument("--num-layers", type=whole(1), default=None, help=f"stacked LSTM layers {q('num_layers')}")
    p.add_argument("--reps", type=whole(1), default=None, help=f"fresh processes per figure, interleaved {q('reps')}")
    p.add_argument("--budget", type=positive_float, default=None,
                   help=f"seconds of timed steps per shape and process, after MIN_STEPS {q('budget')}")
    p.add_argument("--min-steps", type=whole(1), default=None, help=f"timed steps per shape at least {q('min_steps')}")
    p.add_argument("--max-steps", type=whole(1), default=None, help=f"timed steps per shape at most {q('max_steps')}")
    p.add_argument("--gen-batches", type=sizes, default=None, help=f"batch sizes of generation {q('gen_batches')}")
    p.add_argument("--gen-chars", type=whole(3), default=None, help=f"characters timed per generation at most {q('gen_chars')}")
    p.add_argument("--gen-warmup", type=whole(0), default=None, help=f"characters drawn before the timing {q('gen_warmup')}")
    p.add_argument("--gen-budget", type=positive_float, default=None,
                   help=f"seconds of generation per batch size and process (at least 3 characters) {q('gen_budget')}")
    p.add_argument("--threads", type=whole(1), default=usable_cores(),
                   help="'all threads' (1 thread is always run beside it) (default: this machine's usable cores, %(default)s)")
    p.add_argument("--device", default="cpu", help="where the torch rows run: cpu, cuda, cuda:1; the other rows run "
                                                   "where their backends do; every row records its device (default cpu)")
    p.add_argument("--malloc", choices=MALLOC_CHOICES, default="steady", help="the workers' allocator, as in "
                                                                            "benchmarks.run (default steady)")
    p.add_argument("--corpus", default="tinyshakespeare", help="built-in corpus name or a UTF-8 text file (default %(default)s)")
    p.add_argument("--seed", type=whole(0), default=0, help="the order of implementations and shapes (default 0)")
    p.add_argument("--timeout", type=positive_float, default=900.0, help="seconds per process (default %(default)s)")
    p.add_argument("--out", default="results", help="folder for the CSVs, GRID.md and plots (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny shapes and budgets: an end-to-end check, not figures")
    p.add_argument("--report", action="store_true", help="only write GRID.md and the plots from the CSVs in --out")
    return p


def make_plan(args):
    """The checked settings: --quick's defaults for what was not given; ConfigError on a bad value."""
    for name, values in DEFAULTS.items():
        if getattr(args, name) is None:
            value = values[1 if args.quick else 0]
            parse = {"impls": names, "reference": shape}.get(name, sizes)
            setattr(args, name, parse(value) if isinstance(value, str) else value)
    impls = {tag: parse_impl(tag) for tag in args.impls}
    for framework, _, _ in impls.values():
        check_device(framework, "cpu")
    if args.device != "cpu" and not any(f == "torch" for f, _, _ in impls.values()):
        raise ConfigError(f"--device {args.device} applies to torch only and no torch implementation is in "
                          f"--impls; add torch-layer or leave out --device.")
    from common.corpus import load_corpus
    corpus = load_corpus(args.corpus)
    B, H, T = args.reference
    config = Config.from_dict({"vocab_size": len(corpus.vocab), "hidden_size": H, "batch_size": B, "seq_length": T,
                               "num_layers": args.num_layers})
    return {"args": args, "impls": impls, "config": config, "corpus": corpus,
            "cells": cells(args.batch_sizes, args.hidden_sizes, args.seq_lengths, args.reference)}


# ---------------------------------------------------------------------------------------------
# The run

def run(plan):
    args, out = plan["args"], Path(plan["args"].out)
    out.mkdir(parents=True, exist_ok=True)
    started, rows = time.perf_counter(), {"grid": [], "generation": [], "startup": []}
    thread_counts = [args.threads] + ([1] if args.threads > 1 else [])
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"grid: {', '.join(plan['impls'])} | {len(plan['cells'])} shapes at {args.threads} threads, the reference "
        f"at 1 | {args.reps} repetitions | -> {out}")
    with tempfile.TemporaryDirectory(prefix="rosetta-grid-") as work:
        for rep in range(1, args.reps + 1):
            rng = random.Random(args.seed * 1000 + rep)
            jobs = [(impl, threads) for impl in plan["impls"] for threads in thread_counts]
            rng.shuffle(jobs)
            for n, (impl, threads) in enumerate(jobs, 1):
                shapes = plan["cells"] if threads == args.threads else plan["cells"][:1]
                shapes = shapes[:1] + rng.sample(shapes[1:], len(shapes) - 1)  # the reference first: start-up
                say(f"[rep {rep}/{args.reps}, {n}/{len(jobs)}] {impl} at {threads} thread(s), "
                    f"{time.perf_counter() - started:.0f} s so far")
                result = run_worker(worker_spec(plan, impl, shapes, rep, threads), Path(work), threads,
                                    args.timeout, args.malloc)
                add_rows(rows, rep, impl, plan["impls"][impl], threads, result, plan["config"])
                write_csv(out / "grid.csv", GRID_COLUMNS, rows["grid"])
                write_csv(out / "generation.csv", GENERATION_COLUMNS, rows["generation"])
                write_csv(out / "startup.csv", STARTUP_COLUMNS, rows["startup"])
            if rep == 1 and args.reps > 1:
                say(f"repetition 1 took {time.perf_counter() - started:.0f} s: the run will take about "
                    f"{args.reps * (time.perf_counter() - started) / 60:.0f} minutes in all")
    seconds = time.perf_counter() - started
    (out / "grid.json").write_text(json.dumps(run_record(plan, seconds), indent=2))
    say(f"done in {seconds:.0f} s; {write_report(out)}")
    return 0


def worker_spec(plan, impl, shapes, rep, threads):
    args, config = plan["args"], plan["config"]
    framework, path, _ = plan["impls"][impl]
    return {"mode": "grid", "impl": f"{impl} rep {rep} t{threads}", "framework": framework, "path": path,
            "corpus": args.corpus, "config": config.to_dict(), "device": args.device, "cells": shapes,
            "budget_s": args.budget, "min_steps": args.min_steps, "max_steps": args.max_steps,
            "generation": {"batch_sizes": args.gen_batches, "hidden_size": config.hidden_size,
                           "chars": args.gen_chars, "warmup": args.gen_warmup, "budget_s": args.gen_budget}}


def add_rows(rows, rep, impl, parsed, threads, result, config):
    """The CSV rows of one process: a row per shape, per generation batch size, and its start-up."""
    framework, path, backend = parsed
    common = {"rep": rep, "impl": impl, "device": result.get("device", ""), "threads": threads, **result.get("load", {})}
    failed = result.get("status") if result.get("status") != "ok" else "failed: not reached"
    for cell in result.get("cells") or []:
        times = cell.get("step_times_s") or []
        row = {**common, "framework": framework, "path": path, "backend": backend or "", "status": cell["status"],
               "timed_steps": len(times), "build_s": cell.get("build_s"), "first_step_s": cell.get("first_step_s"),
               **{k: cell[k] for k in ("batch_size", "hidden_size", "seq_length")}}
        if cell["status"] == "ok" and times:
            median = float(np.median(times))
            row.update(chars_per_s=cell["batch_size"] * cell["seq_length"] / median, step_ms_median=1e3 * median)
        rows["grid"].append(row)
    if not result.get("cells"):
        rows["grid"].append({**common, "framework": framework, "path": path, "backend": backend or "",
                             "status": failed, **{k: v for k, v in config.to_dict().items()
                                                  if k in ("batch_size", "hidden_size", "seq_length")}})
    for gen in result.get("generation") or []:
        times = np.asarray(gen.get("times_s") or [])
        row = {**common, "batch_size": gen["batch_size"], "hidden_size": gen["hidden_size"], "status": gen["status"],
               "chars": len(times)}
        if gen["status"] == "ok" and len(times):
            row.update(ms_per_char_median=1e3 * float(np.median(times)), ms_per_char_p90=1e3 * float(np.percentile(times, 90)))
        rows["generation"].append(row)
    startup = result.get("startup") or {}
    first = (result.get("cells") or [{"status": failed}])[0]["status"]  # the start-up is the first shape's
    row = {**common, **startup, "status": "ok" if "first_step_s" in startup else first}
    if row["status"] == "ok":
        row["total_s"] = startup["import_s"] + startup["build_s"] + startup["first_step_s"]
    rows["startup"].append(row)


def run_record(plan, seconds):
    args = plan["args"]
    settings = {k: getattr(args, k) for k in (*DEFAULTS, "threads", "device", "malloc", "corpus", "seed", "quick")}
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "settings": settings, "config": plan["config"].to_dict(),
            "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores()},
            "packages": package_versions(), "git": git_commit(), "gain": GAIN, "level": LEVEL}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.report:
            print(write_report(Path(args.out)), file=sys.stderr)
            return 0
        return run(make_plan(args))
    except RosettaError as e:
        print(f"python -m benchmarks.grid: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the files written so far are kept (--report writes GRID.md from them)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
