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
H, L, B, T, ITERS, WARMUP = 16, 2, 4, 16, 6, 1
SUMMARY_COLUMNS = {"impl", "framework", "path", "chars_per_s", "step_ms_median", "step_ms_p10",
                   "step_ms_p90", "time_to_first_step_s", "idle_rss_mb", "peak_rss_mb", "flops_per_char",
                   "peak_fraction", "final_loss", "final_val_loss", "status", "hidden_size"}
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
                 "--gemm-size", 128, "--sample-length", 40, "--rounds", 1, "--round-iters", 2,
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


def test_summary_figures_follow_from_the_steps(run_dir):
    out, _ = run_dir
    summary = {r["impl"]: r for r in read_csv(out / "summary.csv")}
    steps = read_csv(out / "steps.csv")
    matmul = read_csv(out / "roofline.csv")  # the peak: the best matmul of any library and shape
    peak = max(float(g["gflops"]) for g in matmul if g["status"] == "ok") * 1e9
    V = int(summary["numpy-cell"]["vocab_size"])
    forward = 2 * (V * 4 * H + H * 4 * H) + 2 * (H * 4 * H + H * 4 * H) + 2 * H * V
    for impl, r in summary.items():
        times = [float(s["step_time_s"]) for s in steps if s["impl"] == impl and s["phase"] == "timed"]
        assert float(r["step_ms_median"]) == pytest.approx(1e3 * np.median(times))
        assert float(r["step_ms_p10"]) <= float(r["step_ms_median"]) <= float(r["step_ms_p90"])
        assert float(r["chars_per_s"]) == pytest.approx(B * T / np.median(times))
        assert int(r["flops_per_char"]) == 3 * forward
        assert float(r["peak_fraction"]) == pytest.approx(float(r["chars_per_s"]) * 3 * forward / peak)
        last_val = [float(s["val_loss"]) for s in steps if s["impl"] == impl and s["val_loss"]][-1]
        assert float(r["final_val_loss"]) == pytest.approx(last_val)
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


def test_rounds_take_each_ratio_within_its_round(run_dir):
    out, _ = run_dir
    rows = read_csv(out / "rounds.csv")
    assert [(r["round"], r["impl"]) for r in rows] == [(str(k), impl) for k in (1,) for impl in IMPLS]
    for k in ("1",):
        this = {r["impl"]: r for r in rows if r["round"] == k}
        reference = float(this["torch-layer"]["chars_per_s"])
        for impl, r in this.items():
            assert r["status"] == "ok"
            assert float(r["chars_per_s"]) == pytest.approx(B * T / (float(r["step_ms_median"]) / 1e3))
            assert float(r["ratio"]) == pytest.approx(float(r["chars_per_s"]) / reference)
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    section = report.split("### Throughput in interleaved rounds")[1].split("\n## ")[0]
    ratios = [float(r["ratio"]) for r in rows if r["impl"] == "numpy-cell"]
    assert f"| `numpy-cell` |" in section and f"{np.median(ratios):.2f}x" in section


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
         "--sweep-hidden", "", "--gemm-size", "64", "--sample-length", "0", "--corpus", str(corpus),
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


def test_a_slow_row_is_capped_by_time_and_the_report_says_so(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "out"
    proc = bench("--frameworks", "numpy", "--paths", "cell", "--iters", 100000, "--warmup", 0, "--budget", 0.5,
                 "--hidden-size", 8, "--num-layers", 1, "--batch-size", 2, "--seq-length", 4, "--val-every", 0,
                 "--sweep-hidden", "", "--rounds", 0, "--gemm-size", 64, "--sample-length", 0,
                 "--corpus", corpus, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = read_csv(out / "summary.csv")[0]
    assert row["capped_by_budget"] == "yes" and 3 <= int(row["timed_steps"]) < 100000
    report = subprocess.run([sys.executable, "-m", "benchmarks.report", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    text = (out / "REPORT.md").read_text(encoding="utf-8")
    assert f"`numpy-cell` ran {row['timed_steps']} of 100000 timed steps" in text


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


def test_findings_follow_from_the_figures(run_dir):
    out, _ = run_dir
    text = findings_of((out / "REPORT.md").read_text(encoding="utf-8"))
    rounds = [r for r in read_csv(out / "rounds.csv") if r["status"] == "ok"]
    speed = {impl: np.median([float(r["chars_per_s"]) for r in rounds if r["impl"] == impl]) for impl in IMPLS}
    fastest, slowest = max(speed, key=speed.get), min(speed, key=speed.get)
    assert f"Fastest: `{fastest}` at {speed[fastest]:,.0f} chars/s" in text
    assert f"slowest: `{slowest}` at {speed[slowest]:,.0f}" in text and "interleaved rounds" in text
    ratio = np.median([float(r["ratio"]) for r in rounds if r["impl"] == "numpy-cell"])
    assert f"`numpy-cell` {ratio:.2f}x" in text
    steps = read_csv(out / "steps.csv")
    losses = np.array([[float(s["loss"]) for s in steps if s["impl"] == impl][:10] for impl in IMPLS])
    assert f"The loss curves agree: at most {np.ptp(losses, axis=0).max():.1e} apart" in text
    assert ("No figure was taken on a busy machine" in text) != ("Taken on a busy machine" in text)


def test_busy_or_contradicted_figures_are_not_findings(run_dir, tmp_path):
    import pandas as pd
    from benchmarks.report import write_report
    out, _ = run_dir
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    summary, rounds = pd.read_csv(copy / "summary.csv"), pd.read_csv(copy / "rounds.csv")
    summary[["others_busy_cores", "others_busy_cores_before"]] = 0.0
    rounds[["others_busy_cores", "others_busy_cores_before"]] = 0.0
    summary.loc[summary["impl"] == "numpy-cell", "others_busy_cores"] = 1.5  # a busy spell in its main run
    rounds.loc[rounds["impl"] == "numpy-cell", "others_busy_cores"] = 1.5
    speed = dict(zip(rounds["impl"], rounds["chars_per_s"]))  # one round: its figures are the medians
    summary.loc[summary["impl"] == "torch-cell", "chars_per_s"] = speed["torch-cell"] / 5  # the rounds disagree
    summary.loc[summary["impl"] == REF, "chars_per_s"] = speed[REF]
    for impl in ("torch-cell", REF):  # the step times to match, for the throughput plot's whiskers
        row = summary["impl"] == impl
        summary.loc[row, ["step_ms_median", "step_ms_p10", "step_ms_p90"]] = 1e3 * B * T / summary.loc[row, "chars_per_s"].iloc[0]
    summary.to_csv(copy / "summary.csv", index=False)
    rounds.to_csv(copy / "rounds.csv", index=False)
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
    assert "Taken on a busy machine" in text and "`numpy-cell` (main run beside 1.5 busy cores; 1 of 1 rounds busy)" in text
    assert re.search(r"^\| `numpy-cell` ⚠ \|", report, re.M) and not re.search(r"^\| `numpy-fast` ⚠", report, re.M)
    main_ratio, rounds_ratio = speed["torch-cell"] / 5 / speed[REF], speed["torch-cell"] / speed[REF]
    assert f"`torch-cell` ({main_ratio:.2f}x against {rounds_ratio:.2f}x)" in text and "not findings" in text
    assert re.search(rf"^\| `torch-cell` \| [\d,]+ \| {main_ratio:.2f}x \(rounds: {rounds_ratio:.2f}x\) \|", report, re.M)
    reading = report.split("## Throughput against hidden size: reading the curve")[1].split("\n## ")[0]
    found, doubted = reading.split("Not findings")
    assert f"`{REF}` falls 40.0x from 8 to 16" in found
    assert "`numpy-cell` falls" not in found and "`numpy-fast` falls" not in found
    assert "`numpy-cell` falls 40.0x from 8 to 16" in doubted and "measured beside 1.5 busy cores" in doubted
    assert "`numpy-fast` falls 40.0x from 8 to 16" in doubted and "at H=16 the sweep measured" in doubted
    # a run from before the load was recorded says so instead of calling it quiet
    summary.drop(columns=["others_busy_cores", "others_busy_cores_before"]).to_csv(copy / "summary.csv", index=False)
    rounds.drop(columns=["others_busy_cores", "others_busy_cores_before"]).to_csv(copy / "rounds.csv", index=False)
    text = findings_of(write_report(copy).read_text(encoding="utf-8"))
    assert "did not record the machine's load" in text and "busy machine" not in text
