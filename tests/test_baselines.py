"""benchmarks/baselines.py end to end with --quick (every stage on tiny settings: a grid point, the long
run and the headline with 2 seeds, 3 implementations in the frameworks stage): the CSV's rows, the seed
table against the mean and spread computed here from the CSV, the frameworks table, nanoGPT's 1.4697
only beside the block protocol, issue 18's rows apart, an interrupted run resumed, a second run
skipping everything; and the minutes-to-reach parse on a hand-made log."""

import csv
import math
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, data_dir

from benchmarks.baselines import (COLUMNS, FIGURES, FRAMEWORK_FIGURES, HEADLINE_FIGURES, LEGACY_CSV, QUICK, as_typed,
                                  check_columns, minutes_to_reach, train_command)


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_baselines_quick(tmp_path):
    d = data_dir()
    if d is None:
        pytest.skip("no local corpus: set ROSETTA_DATA_DIR to the folder with tinyshakespeare.txt")
    corpus = tmp_path / "tiny.txt"
    corpus.write_text((d / "tinyshakespeare.txt").read_text()[:60_000])  # 6,000 validation characters: halves of 3,000
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(ROOT / "results" / LEGACY_CSV, out / LEGACY_CSV)  # issue 18's rows, their old columns
    command = [sys.executable, "-m", "benchmarks.baselines", "--quick", "--out", str(out), "--corpus", str(corpus)]
    # an interrupted grid point: the same run stopped after 2 of its 3 steps, its checkpoint and log left behind
    args = train_command("h8l1-s1", out, 8, 1, 2, str(corpus), learning_rate=2e-3, dropout=0.1, state_resets=0.01,
                         schedule="cosine", warmup_steps=0, lr_floor=0.1, seed=1)
    first = subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "h8l1-s1: resuming from" in proc.stdout and "resumed from" in proc.stdout
    assert [r["step"] for r in read(out / "h8l1-s1.csv")] == ["1", "2", "3"]

    rows = read(out / "baselines.csv")
    assert tuple(rows[0]) == COLUMNS
    runs = {(r["name"], r["stage"], r["seed"]) for r in rows}
    long_name = next(n for n, stage, _ in runs if stage == "long")
    assert runs == {("h8l1", "grid", "1"), (long_name, "long", "1"), (long_name, "long", "2"), ("headline", "headline", "1"),
                    ("headline", "headline", "2")} | {(f"fw-{i}", "frameworks", "1") for i in QUICK["implementations"]}
    for name, stage, seed in runs:
        scored = {(r["protocol"], r["half"], r["block"]) for r in rows
                  if (r["name"], r["seed"], r["kind"]) == (name, seed, "score")}
        wanted = {"headline": HEADLINE_FIGURES, "frameworks": FRAMEWORK_FIGURES}.get(stage, FIGURES)
        assert scored == {(p, h, str(b)) for p, h, b in wanted}, (name, seed)
    every_block = len(range(0, 3_000 - 256, 256))  # the frameworks stage: every non-overlapping block of the second half
    for r in rows:
        assert 2.0 < float(r["nats"]) < 5.0 and abs(float(r["bits"]) - float(r["nats"]) / math.log(2)) < 1e-5
        assert float(r["command_minutes"]) > float(r["loop_minutes"]) > 0 and r["commands"] == "1"
        assert int(r["scored_chars"]) == {"whole": 5_999, "first": 2_999, "second": 2_999}[r["half"]] \
            if r["protocol"] == "carried" else int(r["scored_chars"]) == int(r["blocks"]) * int(r["block"]) \
            and int(r["blocks"]) == (every_block if r["stage"] == "frameworks" else QUICK["blocks"])
    assert {r["chars"] for r in rows if r["name"] == "h8l1"} == {str(3 * 32 * 64)}
    # the checks: the first seed of each run in numpy and keras, the same number as torch's
    for name in ("h8l1", long_name, "headline"):
        same = [float(r["nats"]) for r in rows if r["name"] == name and r["seed"] == "1" and r["protocol"] == "carried"
                and r["half"] == "second"]
        assert len(same) == 3 and max(same) - min(same) < 1e-4
    assert not [r for r in rows if r["kind"] == "check" and r["seed"] != "1"]
    # the frameworks stage: the same seed, so the same initial weights and batches: the same first loss
    first_losses = [float(read(out / f"fw-{i}-s1.csv")[0]["loss"]) for i in QUICK["implementations"]]
    assert max(first_losses) - min(first_losses) < 1e-4, first_losses

    report = (out / "BASELINES.md").read_text()
    # the seed table: mean ± sample sd (min–max), computed here from the CSV
    held = [float(r["nats"]) for r in rows if r["name"] == "headline" and r["kind"] == "score"
            and (r["protocol"], r["half"]) == ("carried", "second")]
    mean = sum(held) / len(held)
    sd = math.sqrt(sum((v - mean) ** 2 for v in held) / (len(held) - 1))
    line = next(x for x in report.splitlines() if x.startswith("| carried state, second half (held out)"))
    assert line.endswith(f"| {mean:.4f} ± {sd:.4f} ({min(held):.4f}–{max(held):.4f}) |"), line
    assert "```\nrosetta train --framework torch --hidden-size 8" in report
    # the frameworks table: one row per implementation, its steps and the losses scored by torch/layer
    table = report.split("## Each framework in the same minutes")[1].split("\n## ")[0]
    body = [x for x in table.splitlines() if x.startswith("| ") and not x.startswith("| implementation")]
    assert [x.split(" | ")[0][2:] for x in body] == list(QUICK["implementations"])
    for x, impl in zip(body, QUICK["implementations"]):
        r = next(r for r in rows if r["name"] == f"fw-{impl}" and r["protocol"] == "carried")
        cells = x.strip("| ").split(" | ")
        assert cells[1] == f"{int(r['steps']):,}" and cells[5] == f"{float(r['nats']):.4f}"
        assert cells[7:] == ["not reached", "not reached"]  # a few steps of a tiny model: far above 1.8
    assert "(2,999 characters of the first half each time)" in table  # 32 spans of 93 or 94, shorter than 20 x T: all of it
    # nanoGPT's A100 figure only beside the block protocol; issue 18's rows apart, with the figure they have
    mentions = [x for x in report.splitlines() if "1.4697" in x]
    assert len(mentions) >= 3 and all("block protocol" in x for x in mentions), mentions
    legacy = report.split("## Issue 18's runs")[1].split("\n## ")[0]
    assert "carried state, whole text" in legacy and "| h512l2d30c9M | 2 x 512, dropout 0.3 |" in legacy and "1.4346" in legacy
    assert "h512l2d30c9M" not in report.split("## Issue 18's runs")[0].replace("(h512l2d30c25M", "")
    assert "this machine's CPU" in report and "A100" in report and "MacBook" in report
    assert (out / "baselines_chars.png").stat().st_size > 1000 and (out / "baselines_minutes.png").stat().st_size > 1000

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped") == len(runs), again.stdout[-2000:]
    assert len(read(out / "baselines.csv")) == len(rows)  # nothing added


def test_minutes_to_reach_reads_the_first_quick_validation_at_or_below(tmp_path):
    log = tmp_path / "run.csv"
    log.write_text("step,epoch,loss,val_loss,chars_per_s,elapsed\n"
                   "100,0,2.1,,1000.0,30.000\n200,0,1.9,1.95,1000.0,60.000\n300,0,1.85,1.80,1000.0,90.000\n"
                   "400,0,1.75,1.7001,1000.0,120.000\n500,0,1.7,1.69,1000.0,150.000\n600,1,1.65,1.62,1000.0,180.000\n")
    rows = read(log)
    assert minutes_to_reach(rows, 1.8) == 1.5        # 1.80 at 90 s: at or below counts
    assert minutes_to_reach(rows, 1.7) == 2.5        # 1.7001 is above; 1.69 at 150 s
    assert minutes_to_reach(rows, 1.5) is None       # never: "not reached" in the table


def test_as_typed_leaves_out_the_scripts_files_and_progress_options():
    command = ("rosetta train --framework torch --path layer --corpus tinyshakespeare --hidden-size 256 --iters 3200 "
               "--save results/headline-s2.safetensors --keep last --log results/headline-s2.csv --sample-every 0 "
               "--log-every 100 --val-every 0 --minutes 2.3 --dropout 0.1 --seed 2")
    assert as_typed(command) == ("rosetta train --framework torch --hidden-size 256 --iters 3200 --val-every 0 "
                                 "--minutes 2.3 --dropout 0.1 --seed 2 --save headline.safetensors")


def test_a_csv_of_issue_18s_columns_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "baselines.csv"
    shutil.copy(ROOT / "results" / LEGACY_CSV, old)
    with pytest.raises(SystemExit, match=f"has other columns than this version writes.*move it to .*{LEGACY_CSV}"):
        check_columns(old)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1,two"], "--seeds takes whole numbers separated by commas (such as 1337,1338,1339), got '1,two'."),
    (["--only", "headline,grids"], "unknown stage(s) grids in --only; choose from grid, long, headline, frameworks."),
    (["--only", "frameworks", "--implementations", "torch-fast"], "unknown implementation(s) torch-fast; choose from")])
def test_bad_options_are_refused_in_one_sentence(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.baselines", "--out", str(tmp_path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "baselines.csv").exists()
