"""`rosetta train` throughput beside busy processes, at the old and the new start-up defaults.

    python -m benchmarks.busy --out results --reps 3        # ~30 min on 2 shared cores (make bench-busy)

Each run is `rosetta train` (H=256, L=2, a few dozen steps, --log) in a fresh process; its speed
is the median chars/s of the logged steps after the first five. Runs are interleaved: in every
repetition, for each load (idle, 1 and 2 processes running `while True: pass`), every
implementation at every setting, so a slow spell of a shared machine hits all of them alike.
Settings:

    default   the start-up before common/runtime.py: the frameworks' own threads and waiting,
              glibc's own allocator thresholds
    free      threads = the free cores and the steady allocator, the frameworks' own waiting
    new       what `rosetta train` does now (common/runtime.py: free cores, OpenBLAS threads that
              sleep at once, steady allocator; results/busy.md says which waiting it measured)
    new-t1    the same with --threads 1 (the goal's reference: idle 1-thread throughput)

Beside each figure: the load average before and after, and the busy share of the machine's
cores (all processes, /proc/stat) during the run. Writes busy.csv (a row per run) and busy.md.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import cpu_model
from common.runtime import cpu_times

ROOT = Path(__file__).resolve().parents[1]
IMPLS = {"numpy-cell": ["--framework", "numpy", "--path", "cell"],
         "numpy-fast": ["--framework", "numpy", "--path", "fast"],
         "torch-layer": ["--framework", "torch", "--path", "layer"],
         "keras-cell@tensorflow": ["--framework", "keras", "--path", "cell", "--backend", "tensorflow"]}
# The old start-up: common.runtime's settings replaced by nothing before the command line runs
OLD = ("import sys; from common import runtime; runtime.set_passive_waiting = lambda *a, **k: []; "
       "runtime.prepare = lambda threads=None, malloc='steady', environ=None: threads; "
       "from common.cli import main; sys.exit(main(sys.argv[1:]))")
FREE = ("import sys; from common import runtime; runtime.set_passive_waiting = lambda *a, **k: []; "
        "from common.cli import main; sys.exit(main(sys.argv[1:]))")
SETTINGS = {"default": ["-c", OLD], "free": ["-c", FREE], "new": ["-m", "common.cli"],
            "new-t1": ["-m", "common.cli"]}
PLAN = {0: ("default", "free", "new", "new-t1"), 1: ("default", "new"), 2: ("default", "new")}
COLUMNS = ["rep", "busy_procs", "impl", "setting", "chars_per_s", "steps", "load1_before", "load1_after",
           "machine_busy_cores", "status"]


def run_one(impl, setting, iters, work):
    log = Path(work) / f"{impl}-{setting}.csv"
    log.unlink(missing_ok=True)
    cmd = [sys.executable, *SETTINGS[setting], "train", *IMPLS[impl], "--hidden-size", "256", "--num-layers", "2",
           "--iters", str(iters), "--val-every", "0", "--sample-every", "0", "--log-every", "10", "--log", str(log),
           *(["--threads", "1"] if setting == "new-t1" else [])]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MALLOC_", "MKL_", "TF_NUM"))}
    env.setdefault("ROSETTA_DATA_DIR", "/work/shared/data")
    load, before = os.getloadavg()[0], cpu_times()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    after = cpu_times()
    busy = (os.cpu_count() or 1) * (after[0] - before[0]) / max(1, after[1] - before[1])
    row = {"impl": impl, "setting": setting, "load1_before": round(load, 2),
           "load1_after": round(os.getloadavg()[0], 2), "machine_busy_cores": round(busy, 2)}
    if proc.returncode != 0 or not log.exists():
        return {**row, "status": f"failed: {proc.stderr.strip().splitlines()[-1:] }"}
    with open(log) as f:
        rates = [float(r["chars_per_s"]) for r in csv.DictReader(f) if r.get("chars_per_s")][5:]
    return {**row, "chars_per_s": round(statistics.median(rates), 1), "steps": len(rates), "status": "ok"}


def table(rows):
    """busy.md: per implementation and load, the median over repetitions of each setting, with the
    load, and the share of the idle new-t1 figure."""
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    cell = {}
    for r in rows:
        if r["status"] == "ok":
            cell.setdefault((r["impl"], r["busy_procs"], r["setting"]), []).append(r)
    lines = ["| implementation | busy processes | setting | chars/s (median) | of idle 1-thread | runs | "
             "load avg before | machine busy cores |", "|---|---|---|---|---|---|---|---|"]
    for impl in IMPLS:
        ref = med([r["chars_per_s"] for r in cell.get((impl, 0, "new-t1"), [])])
        for busy, settings in PLAN.items():
            for setting in settings:
                got = cell.get((impl, busy, setting), [])
                if not got:
                    continue
                rate = med([r["chars_per_s"] for r in got])
                share = f"{rate / ref:.2f}" if ref else ""
                loads = [r["load1_before"] for r in got]
                lines.append(f"| {impl} | {busy} | {setting} | {rate:,.0f} | {share} | {len(got)} | "
                             f"{min(loads):.1f}-{max(loads):.1f} | {med([r['machine_busy_cores'] for r in got]):.2f} |")
    return "\n".join(lines) + "\n"


def header(args, rows):
    """What busy.md measured, how, and on what: the command, the machine, the load before the runs."""
    idle = [r["load1_before"] for r in rows if r["busy_procs"] == 0 and "load1_before" in r]
    return "\n".join([
        "# `rosetta train` beside busy processes", "",
        f"`python -m benchmarks.busy --reps {args.reps} --iters {args.iters}` (`make bench-busy`), "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu_model()}); H=256, L=2, B=32, T=64; chars/s = "
        f"median of the logged steps after the first five. The 1-minute load average before the runs with no "
        f"busy process was {min(idle, default=0):.1f}-{max(idle, default=0):.1f} (a run's own load lingers in "
        f"the next one's figure). {args.reps} interleaved repetitions: in each, for each load (0, 1, 2 processes "
        f"running `while True: pass`), every implementation at every setting, one after the other. \"of idle "
        f"1-thread\" divides by the median of `new-t1` with no busy process (the goal: at least 0.80 with one busy "
        f"process, 0.50 with two). \"machine busy cores\" counts all processes, this one included.", "",
        "Settings: `default` = the frameworks' own threads and waiting, glibc's own allocator (the start-up "
        "before common/runtime.py); `free` = threads set to the cores other processes leave free, and the steady "
        "allocator; `new` = what `rosetta train` does: `free` plus OpenBLAS' shorter spin "
        "(common/runtime.py PASSIVE_WAITING); `new-t1` = `new` with --threads 1.", "", ""])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.busy", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default %(default)s)")
    p.add_argument("--iters", type=int, default=30, help="training steps per run (default %(default)s)")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, of %(default)s")
    p.add_argument("--out", default="results", help="folder for busy.csv and busy.md (default %(default)s)")
    args = p.parse_args(argv)
    impls = [i for i in args.impls.split(",") if i]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rosetta-busy-") as work:
        for rep in range(1, args.reps + 1):
            for busy, settings in PLAN.items():
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
                try:
                    time.sleep(1.0 if busy else 0)
                    for impl in impls:
                        for setting in settings:
                            row = {"rep": rep, "busy_procs": busy, **run_one(impl, setting, args.iters, work)}
                            rows.append(row)
                            print(" ".join(f"{k}={row.get(k)}" for k in COLUMNS), file=sys.stderr, flush=True)
                            with open(out / "busy.csv", "w", newline="") as f:
                                w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                                w.writeheader()
                                w.writerows(rows)
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
    (out / "busy.md").write_text(header(args, rows) + table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
