"""The benchmark harness end to end on a tiny configuration, and its refusal of bad flags.

One run of every implementation (each framework's paths, Keras once per backend: numpy-cell,
numpy-fast, torch-layer, ..., keras-cell@jax, keras-layer@torch) at H=16 on a small corpus the test
writes, then the report. Each implementation runs in its own worker process, so TensorFlow, JAX and
PyTorch never enter the pytest process.
"""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
from common.frameworks import KERAS_BACKENDS, PATHS, paths_on  # noqa: E402  (imports no framework)
REF = "torch-layer"  # benchmarks.run.REFERENCE: the ratios' denominator

IMPLS = ([f"{f}-{p}" for f in ("numpy", "torch") for p in PATHS[f]]
         + [f"keras-{p}@{b}" for b in KERAS_BACKENDS for p in paths_on("keras", b)])
H, L, B, T, ITERS, WARMUP, ROUNDS = 16, 2, 4, 16, 6, 1, 2
SUMMARY_COLUMNS = {"impl", "framework", "path", "chars_per_s", "step_ms_median", "ratio", "ratio_lo", "ratio_hi",
                   "verdict", "time_to_first_step_s", "idle_rss_mb", "peak_rss_mb", "flops_per_char",
                   "peak_fraction", "final_loss", "final_val_loss", "final_step", "numpy_val_loss", "check",
                   "status", "hidden_size"}
STEPS_COLUMNS = {"impl", "framework", "path", "step", "loss", "step_time_s", "val_loss"}


def write_corpus(path):
    """About 8,000 characters of text with some structure, so the loss can fall in a few steps."""
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over a lazy dog and then it sleeps under old trees".split()
    lines = [" ".join(rng.choice(words, size=8)) + ".\n" for _ in range(180)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    corpus = write_corpus(tmp / "corpus.txt")
    out = tmp / "out"
    proc = bench("--frameworks", "numpy,torch,keras", "--iters", ITERS, "--warmup", WARMUP,
                 "--hidden-size", H, "--num-layers", L, "--batch-size", B, "--seq-length", T,
                 "--val-every", 3, "--val-batches", 2, "--sweep-hidden", "8", "--sweep-iters", 2,
                 "--gemm-size", 128, "--sample-length", 40, "--rounds", ROUNDS, "--round-iters", 2,
                 "--corpus", corpus, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "benchmarks.report", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    return out, proc.stderr


def test_every_implementation_ran_and_said_so(run_dir):
    out, stderr = run_dir
    summary = read_csv(out / "summary.csv")
    assert [r["impl"] for r in summary] == IMPLS
    assert SUMMARY_COLUMNS <= set(summary[0])
    for r in summary:
        assert r["status"] == "ok", (r["impl"], r["status"])
        assert r["impl"] == f"{r['framework']}-{r['path']}" + (f"@{r['backend']}" if r["backend"] else "")
        assert int(r["hidden_size"]) == H
        assert float(r["time_to_first_step_s"]) > 0 and float(r["peak_rss_mb"]) > 10
        assert 10 < float(r["idle_rss_mb"]) <= float(r["peak_rss_mb"])  # read before the first step
        assert 10 < float(r["warm_rss_mb"]) <= float(r["peak_rss_mb"])  # after the warm-up
        assert float(r["warm_rss_mb"]) - 5 < float(r["timed_peak_rss_mb"]) <= float(r["peak_rss_mb"])
        assert r["device"] == "cpu"
        # every row trained all its steps and was checked: its final validation at the last step is
        # numpy's forward of its final weights on the same batches, and its sample what they write
        assert int(r["final_step"]) == WARMUP + ITERS and r["check"] == "ok"
        assert float(r["final_val_loss"]) == pytest.approx(float(r["numpy_val_loss"]), abs=1e-4)
        assert abs(float(r["sample_z"])) < 6
    for impl in IMPLS:  # progress was relayed: implementation, step/total, loss, chars/s, time left
        assert re.search(rf"\[{impl}\] step {1 + WARMUP + ITERS}/{1 + WARMUP + ITERS} loss \d+\.\d+ .*"
                         rf"chars/s \| \d+:\d\d left", stderr), impl


def test_same_batches_and_weights_give_the_same_losses(run_dir):
    out, _ = run_dir
    steps = read_csv(out / "steps.csv")
    assert STEPS_COLUMNS <= set(steps[0])
    losses = {impl: [float(r["loss"]) for r in steps if r["impl"] == impl] for impl in IMPLS}
    assert all(len(v) == 1 + WARMUP + ITERS for v in losses.values())
    table = np.array(list(losses.values()))  # (impls, steps)
    assert np.ptp(table, axis=0).max() < 1e-3, table
    V = json.loads((out / "environment.json").read_text())["config"]["vocab_size"]
    assert abs(table[0, 0] - math.log(V)) < 0.3  # small initial logits: close to a uniform guess
    assert table[:, -1].max() < table[:, 0].min()  # and it learns
    phases = [r["phase"] for r in steps if r["impl"] == "numpy-cell"]
    assert phases == ["first"] + ["warmup"] * WARMUP + ["timed"] * ITERS
    val_steps = [int(r["step"]) for r in steps if r["impl"] == "torch-layer" and r["val_loss"]]
    assert val_steps == [2, 5, 1 + WARMUP + ITERS - 1]  # every 3 steps and at the end


def test_summary_figures_follow_from_the_rounds(run_dir):
    """One set of throughput figures: summary.csv's are the rounds' medians and bootstrap ratios."""
    from benchmarks.stats import bootstrap_ratio
    out, _ = run_dir
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    rounds = [r for r in read_csv(out / "rounds.csv") if r["status"] == "ok"]
    matmul = read_csv(out / "roofline.csv")  # the peak: the best matmul of any library and shape
    peak = max(float(g["gflops"]) for g in matmul if g["status"] == "ok") * 1e9
    V = int(summary["numpy-cell"]["vocab_size"])
    forward = 2 * (V * 4 * H + H * 4 * H) + 2 * (H * 4 * H + H * 4 * H) + 2 * H * V
    speed = lambda impl: [float(r["chars_per_s"]) for r in rounds if r["impl"] == impl]  # noqa: E731
    for impl, r in summary.items():
        assert float(r["chars_per_s"]) == pytest.approx(np.median(speed(impl)))
        assert float(r["step_ms_median"]) == pytest.approx(
            np.median([float(x["step_ms_median"]) for x in rounds if x["impl"] == impl]))
        point, lo, hi = bootstrap_ratio(speed(impl), speed(REF))
        assert (float(r["ratio"]), float(r["ratio_lo"]), float(r["ratio_hi"])) == pytest.approx((point, lo, hi))
        assert int(r["flops_per_char"]) == 3 * forward
        assert float(r["peak_fraction"]) == pytest.approx(float(r["chars_per_s"]) * 3 * forward / peak)
        assert float(r["page_faults_per_step"]) >= 0 and float(r["system_ms_per_step"]) >= 0


def test_sweep_gemm_environment_and_samples(run_dir):
    out, _ = run_dir
    sweep = read_csv(out / "sweep.csv")
    assert {"impl", "hidden_size", "chars_per_s", "step_ms_median", "status"} <= set(sweep[0])
    assert [(r["impl"], r["hidden_size"], r["status"]) for r in sweep] == [(i, "8", "ok") for i in IMPLS]
    gemm = read_csv(out / "gemm.csv")
    assert [(g["lib"], g["status"]) for g in gemm] == [(lib, "ok") for lib in ("numpy", "torch", "tensorflow", "jax")]
    assert all(float(g["gflops"]) > 0 and g["n"] == "128" for g in gemm)
    env = json.loads((out / "environment.json").read_text())
    assert env["roofline"]["ceilings"]["matmul"][0] == max(float(g["gflops"]) for g in read_csv(out / "roofline.csv"))
    assert env["cpu"]["physical_cores"] >= 1 and env["cpu"]["steal"] is not None and "isa_flags" in env["cpu"]
    for key in ("python", "packages", "cpu", "threads", "blas", "git", "date", "devices", "config"):
        assert key in env, key
    assert env["threads"] == 2 and env["config"]["hidden_size"] == H
    assert env["malloc"] == "steady" and env["malloc_env"] == {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
                                                               "MALLOC_TRIM_THRESHOLD_": str(2**30)}
    assert set(env["devices"]) == set(IMPLS)
    assert env["data"]["same_batches_in_every_worker"] and env["data"]["same_weights_in_every_worker"]
    blocks = re.findall(r"^--- (\S+) ---$", (out / "samples.txt").read_text(encoding="utf-8"), re.M)
    assert blocks == IMPLS


def test_rows_with_the_same_arithmetic_write_the_same_sample(run_dir):
    """The regression of keras-cell@jax's "random symbols": rows that compute the same numbers
    (numpy's lesson and fast.py; Keras' layer and cell on JAX, bit-identical) stopped at different
    steps when a time cap cut their main runs, so one seeded draw came from other weights and read as
    a broken row. Every main run now trains the same steps: their samples are the same text."""
    from benchmarks.report import read_samples
    out, _ = run_dir
    samples = read_samples(out / "samples.txt")
    assert samples["numpy-cell"] == samples["numpy-fast"]
    assert samples["keras-layer@jax"] == samples["keras-cell@jax"]


def test_rounds_run_shuffled_with_the_reference_twice_and_ratios_within_the_round(run_dir):
    from benchmarks.run import NOISE, round_order
    out, _ = run_dir
    rows = read_csv(out / "rounds.csv")
    env = json.loads((out / "environment.json").read_text())
    impls = [(i, None, None) for i in IMPLS]
    for k in range(1, ROUNDS + 1):
        this = [r for r in rows if r["round"] == str(k)]
        assert [r["impl"] for r in this] == [i for i, _, _ in round_order(impls, k, env["run"]["rounds_seed"])]
        assert [int(r["position"]) for r in this] == list(range(1, len(IMPLS) + 2))
        assert sorted(r["impl"] for r in this) == sorted(IMPLS + [NOISE])
        reference = float(next(r for r in this if r["impl"] == REF)["chars_per_s"])
        for r in this:
            assert r["status"] == "ok"
            assert float(r["chars_per_s"]) == pytest.approx(B * T / (float(r["step_ms_median"]) / 1e3))
            assert float(r["ratio"]) == pytest.approx(float(r["chars_per_s"]) / reference)
            assert int(r["timed_steps"]) <= 2
    orders = {tuple(r["impl"] for r in rows if r["round"] == str(k)) for k in range(1, ROUNDS + 1)}
    assert len(orders) == ROUNDS  # shuffled anew each round (these seeds give different orders)
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    section = report.split("### Throughput in interleaved rounds")[1].split("\n## ")[0]
    ratios = [float(r["chars_per_s"]) / float(next(x for x in rows if x["round"] == r["round"] and x["impl"] == REF)
                                              ["chars_per_s"]) for r in rows if r["impl"] == "numpy-cell"]
    assert "| `numpy-cell` |" in section and f"{np.median(ratios):.2f}x (" in section
    assert f"| `{NOISE}` |" in section and "the noise floor" in section


def test_report_links_only_images_that_exist(run_dir):
    out, _ = run_dir
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"loss.png", "throughput.png", "sweep.png", "first_step.png", "memory.png"} <= set(images)
    for name in images:
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
    for impl in IMPLS:
        assert f"`{impl}`" in report
    assert "How to read this" in report and "sqrt(1 - b2^t)" in report and "1e-6" in report
    assert "What made it fast" not in report  # no levers.csv, no section
    assert "TODO" not in report and "| nan" not in report
    memory = report.split("## Time to first step and memory")[1].split("\n## ")[0]
    for impl in IMPLS:  # every run recorded its idle memory: a ratio against the bound, no n/a
        row = re.search(rf"^\| `{impl}` \| .*\| (\d+\.\d\d) \| (yes|no) \| -?\d+\.\d\d \|$", memory, re.M)
        assert row, (impl, memory)


def test_report_what_made_it_fast_from_levers_csv(run_dir, tmp_path):
    from benchmarks.report import write_report
    out, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "levers.csv").write_text(
        "lever,impl,before_chars_per_s,after_chars_per_s,note\n"
        "row gather instead of one-hot matmul,numpy-cell,1000,2000,layer 0 input\n")
    report = write_report(copy).read_text(encoding="utf-8")
    section = report.split("## What made it fast")[1].split("\n## ")[0]
    assert "row gather instead of one-hot matmul" in section and "2.00x" in section


def test_a_failing_implementation_is_recorded_and_the_others_run(tmp_path):
    """A torch that cannot be imported: torch-layer fails with the reason, numpy-cell still runs."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('simulated missing torch')\n")
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--frameworks", "numpy,torch", "--paths", "layer,cell",
         "--iters", "3", "--warmup", "0", "--hidden-size", "8", "--batch-size", "4", "--seq-length", "8",
         "--sweep-hidden", "", "--gemm-size", "64", "--sample-length", "0", "--rounds", "1", "--corpus", str(corpus),
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(fake)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    assert summary["numpy-cell"]["status"] == "ok"
    for impl in ("torch-layer", "torch-cell"):
        assert summary[impl]["status"].startswith("failed:") and "simulated missing torch" in summary[impl]["status"]
        assert summary[impl]["chars_per_s"] == ""
    gemm = {g["lib"]: g for g in read_csv(out / "gemm.csv")}
    assert gemm["numpy"]["status"] == "ok" and gemm["torch"]["status"].startswith("failed")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, words", [
    (["--iters", "0"], "--iters"),
    (["--hidden-size", "-1"], "--hidden-size"),
    (["--threads", "0"], "--threads"),
    (["--sweep-hidden", "x"], "--sweep-hidden"),
    (["--warmup", "two"], "--warmup"),
    (["--frameworks", "jax"], "unknown framework 'jax'"),
    (["--paths", "stacked"], "unknown path 'stacked'"),
    (["--frameworks", "numpy", "--paths", "layer"], "numpy has cell and fast"),
    (["--dtype", "float16"], "--dtype"),
    (["--malloc", "sometimes"], "--malloc"),
    (["--learning-rate", "-1"], "--learning-rate"),
        (["--clip-norm", "-1"], "clip_norm must be 0"),
    (["--corpus", "no/such/file.txt"], "no corpus file"),
])
def test_bad_flags_are_refused_in_one_line(args, words, tmp_path):
    if "--corpus" not in args:
        args = args + ["--corpus", str(write_corpus(tmp_path / "corpus.txt"))]
    proc = bench(*args, "--out", tmp_path / "out", timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and words in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_report_compares_keras_backends_and_the_lesson_with_the_tuned_code(run_dir):
    out, _ = run_dir
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    assert {summary[i]["backend"] for i in IMPLS if i.startswith("keras-")} == set(KERAS_BACKENDS)
    backends = report.split("## Keras 3 backends")[1].split("\n## ")[0]
    for impl in IMPLS:
        if impl.startswith("keras-"):
            backend = impl.split("@")[1]
            assert re.search(rf"\| `{re.escape(impl)}` \| {backend} \|", backends), impl
    assert "| `torch-layer` | (native) |" in backends and "what the idiomatic code costs" in backends
    lesson = report.split("## The lesson against the tuned code")[1].split("\n## ")[0]
    for framework in ("numpy", "keras"):
        assert re.search(rf"^\| {framework} \| [\d,]+ \| [\d,]+ \| [\d.]+x \|", lesson, re.M), framework


def test_the_budget_caps_the_rounds_never_the_compared_steps(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "out"
    proc = bench("--frameworks", "numpy", "--paths", "cell", "--iters", 40, "--warmup", 0, "--budget", 0.5,
                 "--hidden-size", 8, "--num-layers", 1, "--batch-size", 2, "--seq-length", 4, "--val-every", 0,
                 "--sweep-hidden", "", "--rounds", 1, "--round-iters", 100000, "--gemm-size", 64,
                 "--sample-length", 0, "--corpus", corpus, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = read_csv(out / "steps.csv")
    assert [int(s["step"]) for s in steps] == list(range(41))  # all of the main run, whatever the budget
    assert [int(s["step"]) for s in steps if s["val_loss"]] == [40]  # --val-every 0: validated at the end
    rnd = read_csv(out / "rounds.csv")[0]
    assert rnd["capped_by_budget"] == "yes" and 3 <= int(rnd["timed_steps"]) < 100000
    row = read_csv(out / "summary.csv")[0]
    assert row["final_step"] == "40" and row["capped_by_budget"] == "1 of 1" and row["check"] == "ok"
    report = subprocess.run([sys.executable, "-m", "benchmarks.report", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "every implementation trained the same 41 steps" in text and "compared at step 40" in text
    assert f"`numpy-cell` {rnd['timed_steps']} (1 of 1 rounds stopped by the 0.5 s budget)" in text


def test_an_unknown_keras_backend_is_one_sentence(tmp_path):
    proc = bench("--frameworks", "keras", "--keras-backends", "theano", "--out", tmp_path / "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m benchmarks.run: error: unknown Keras backend 'theano'; choose one of tensorflow, jax, torch.")


# ---------------------------------------------------------------------------------------------
# The machine's load beside every figure, and the findings that open the report

def test_load_is_recorded_beside_every_worker(run_dir):
    from benchmarks.run import LOAD_COLUMNS
    out, _ = run_dir
    for name, rows in (("summary", read_csv(out / "summary.csv")), ("rounds", read_csv(out / "rounds.csv")),
                       ("sweep", read_csv(out / "sweep.csv"))):
        assert set(LOAD_COLUMNS) <= set(rows[0]), name
        for r in rows:
            assert float(r["load1_before"]) >= 0 and float(r["load1_after"]) >= 0, (name, r)
            for key in ("others_busy_cores_before", "others_busy_cores"):  # other processes' cores, not the worker's
                assert 0 <= float(r[key]) <= os.cpu_count() + 0.05, (name, key, r)
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    for r in read_csv(out / "sweep.csv"):  # the sweep ran in the main run's worker: the same load
        assert r["others_busy_cores"] == summary[r["impl"]]["others_busy_cores"]


def findings_of(report):
    paragraphs = report.split("\n\n")
    assert paragraphs[0].startswith("# LSTM Rosetta") and paragraphs[1].startswith("Character-level LSTM")
    assert paragraphs[2].startswith("**Findings.**")  # right after the one-line config paragraph
    return paragraphs[2]


def quiet_copy(out, tmp_path):
    """The run's files with every recorded load set to 0: the findings of a quiet machine."""
    import pandas as pd
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for name in ("summary.csv", "rounds.csv", "sweep.csv"):
        df = pd.read_csv(copy / name)
        df[["others_busy_cores", "others_busy_cores_before"]] = 0.0
        df.to_csv(copy / name, index=False)
    env = json.loads((copy / "environment.json").read_text())
    env["run"]["busy_before_run"] = 0.0
    (copy / "environment.json").write_text(json.dumps(env))
    return copy


def test_findings_follow_from_the_figures(run_dir, tmp_path):
    from benchmarks.report import write_report
    out, _ = run_dir
    text = findings_of(write_report(quiet_copy(out, tmp_path)).read_text(encoding="utf-8"))
    rounds = [r for r in read_csv(out / "rounds.csv") if r["status"] == "ok"]
    speed = {impl: np.median([float(r["chars_per_s"]) for r in rounds if r["impl"] == impl]) for impl in IMPLS}
    fastest, slowest = max(speed, key=speed.get), min(speed, key=speed.get)
    assert f"Fastest: `{fastest}` at {speed[fastest]:,.0f} chars/s" in text
    assert f"slowest: `{slowest}` at {speed[slowest]:,.0f}" in text and "interleaved rounds" in text
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    r = summary["numpy-cell"]
    assert f"`numpy-cell` {float(r['ratio']):.2f}x ({float(r['ratio_lo']):.2f}–{float(r['ratio_hi']):.2f})" in text
    assert "Noise floor: torch-layer against itself" in text
    steps = read_csv(out / "steps.csv")
    losses = np.array([[float(s["loss"]) for s in steps if s["impl"] == impl][:10] for impl in IMPLS])
    assert f"The loss curves agree: at most {np.ptp(losses, axis=0).max():.1e} apart" in text
    assert "No figure was taken on a busy machine (other processes kept at most 0.00 cores busy" in text


def test_a_busy_row_makes_the_run_untrusted_and_sweep_doubts(run_dir, tmp_path):
    import pandas as pd
    from benchmarks.report import write_report
    out, _ = run_dir
    copy = quiet_copy(out, tmp_path)
    rounds = pd.read_csv(copy / "rounds.csv")
    rounds.loc[(rounds["impl"] == "numpy-cell") & (rounds["round"] == 1), "others_busy_cores"] = 1.5
    rounds.to_csv(copy / "rounds.csv", index=False)
    speed = rounds.groupby("impl")["chars_per_s"].median().to_dict()
    # each falls 40x from H=8 to H=16; numpy-cell's sweep ran on a busy machine, numpy-fast's figure
    # at the run's H=16 is 5x off the rounds', torch-layer's agrees with them and is a finding
    sweep = pd.DataFrame([{"impl": impl, "framework": impl.split("-")[0], "path": impl.split("-")[1], "hidden_size": h,
                           "chars_per_s": speed[impl] * (40 if h == 8 else 1) / (5 if impl == "numpy-fast" else 1),
                           "step_ms_median": 1.0, "timed_steps": 2, "status": "ok", "load1_before": 0.1,
                           "load1_after": 0.1, "others_busy_cores_before": 0.0,
                           "others_busy_cores": 1.5 if impl == "numpy-cell" else 0.0}
                          for impl in ("numpy-cell", "numpy-fast", REF) for h in (8, 16)])
    sweep.to_csv(copy / "sweep.csv", index=False)
    report = write_report(copy).read_text(encoding="utf-8")
    text = findings_of(report)
    assert text.startswith("**Findings.** **This run cannot be trusted:**")
    assert f"`numpy-cell` (1 of {ROUNDS} rounds beside up to 1.50 busy cores)" in text and "Fastest" not in text
    reading = report.split("## Throughput against hidden size: reading the curve")[1].split("\n## ")[0]
    found, doubted = reading.split("Not findings")
    assert f"`{REF}` falls 40.0x from 8 to 16" in found
    assert "`numpy-cell` falls" not in found and "`numpy-fast` falls" not in found
    assert "`numpy-cell` falls 40.0x from 8 to 16" in doubted and "measured beside 1.5 busy cores" in doubted
    assert "`numpy-fast` falls 40.0x from 8 to 16" in doubted and "at H=16 the sweep measured" in doubted
    # a run from before the load was recorded says so instead of calling it quiet
    for name in ("summary.csv", "rounds.csv"):
        df = pd.read_csv(copy / name)
        df.drop(columns=["others_busy_cores", "others_busy_cores_before"]).to_csv(copy / name, index=False)
    text = findings_of(write_report(copy).read_text(encoding="utf-8"))
    assert "did not record the machine's load" in text and "busy machine" not in text
