"""The scaling table of `rosetta train --workers N`: throughput with 1 and 2 workers per framework and
the time a step spends in the all-reduce of the gradients.

    python -m benchmarks.scaling                     # writes results/scaling.csv and results/scaling.md
    python -m benchmarks.scaling --iters 40 --hidden-size 256 --out /tmp/scaling

Each row is one `python -m common.cli train` run (the command line a user types) on tinyshakespeare,
with its --log CSV: characters per second is the median over the steps after the first WARMUP. The
all-reduce: numpy and torch time it inside the run (ROSETTA_ALLREDUCE_LOG: numpy around its one
MPI Allreduce, torch in a blocking DDP communication hook) and give seconds per step; Keras on jax
cannot, since XLA fuses the all-reduce into the compiled step, so its figure is a separate timed
all-reduce of as many float32 numbers as the model has weights over the same devices
(keras_impl.parallel.time_allreduce).

On a machine with 2 cores two workers share the cores one process already used (with one thread
each here, to be fair to both), so the table shows what each engine costs, not a speed-up. On a
machine with GPUs or many cores, run it with --workers-list 1,2,4,8.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 5
RUNS = {"numpy": ["--framework", "numpy"], "torch": ["--framework", "torch", "--path", "layer"],
        "keras@jax": ["--framework", "keras", "--backend", "jax", "--path", "layer"]}
COLUMNS = ("impl", "workers", "chars_per_s", "step_ms", "allreduce_ms", "allreduce_share", "allreduce_measured",
           "parameters", "hidden_size", "batch_size", "seq_length", "iters")


def parameters(V, H):
    return 4 * H * (V + H + 1) + H * V + V


def run(impl, workers, args, tmp):
    log, allreduce = Path(tmp) / f"{impl}-{workers}.csv", Path(tmp) / f"{impl}-{workers}.json"
    env = dict(os.environ, ROSETTA_ALLREDUCE_LOG=str(allreduce))
    cmd = [sys.executable, "-m", "common.cli", "train", *RUNS[impl], "--corpus", args.corpus,
           "--hidden-size", str(args.hidden_size), "--batch-size", str(args.batch_size),
           "--seq-length", str(args.seq_length), "--iters", str(args.iters), "--val-every", "0",
           "--sample-every", "0", "--threads", "1", "--log", str(log), "--workers", str(workers)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise SystemExit(f"{impl} --workers {workers} failed:\n{proc.stderr[-2000:]}")
    vocab = int(proc.stdout.split("V=")[1].split(",")[0])
    with open(log, newline="") as f:
        rates = [float(r["chars_per_s"]) for r in csv.DictReader(f)][WARMUP:]
    chars_per_s = float(np.median(rates))
    step = args.batch_size * args.seq_length / chars_per_s
    P = parameters(vocab, args.hidden_size)
    if workers == 1:
        seconds, measured = 0.0, "none (one worker)"
    elif allreduce.exists():
        report = json.loads(allreduce.read_text())
        seconds, measured = report["allreduce_seconds"] / report["steps"], "in the run"
    else:
        code = f"from keras_impl.parallel import time_allreduce; print(time_allreduce({P}, {workers}))"
        env = dict(os.environ, KERAS_BACKEND="jax",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={workers}")
        seconds = float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                       text=True, check=True).stdout.split()[-1])
        measured = "separately (XLA fuses it)"
    return {"impl": impl, "workers": workers, "chars_per_s": round(chars_per_s), "step_ms": round(1e3 * step, 3),
            "allreduce_ms": round(1e3 * seconds, 3), "allreduce_share": f"{seconds / step:.0%}",
            "allreduce_measured": measured, "parameters": P, "hidden_size": args.hidden_size,
            "batch_size": args.batch_size, "seq_length": args.seq_length, "iters": args.iters}


def markdown(rows):
    lines = ["| implementation | workers | chars/s | step (ms) | all-reduce per step (ms) | share of the step | all-reduce timed |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['workers']} | {r['chars_per_s']:,} | {r['step_ms']} | {r['allreduce_ms']} "
                     f"| {r['allreduce_share']} | {r['allreduce_measured']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="tinyshakespeare", help="corpus name or file (default tinyshakespeare)")
    parser.add_argument("--hidden-size", type=int, default=128, help="H (default 128)")
    parser.add_argument("--batch-size", type=int, default=32, help="B, divisible by every worker count (default 32)")
    parser.add_argument("--seq-length", type=int, default=32, help="T (default 32)")
    parser.add_argument("--iters", type=int, default=40, help="steps per run (default 40)")
    parser.add_argument("--impls", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--workers-list", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for scaling.csv and scaling.md")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for impl in args.impls.split(","):
            for workers in map(int, args.workers_list.split(",")):
                rows.append(run(impl, workers, args, tmp))
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "scaling.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "scaling.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
