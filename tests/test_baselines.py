"""benchmarks/baselines.py end to end on a tiny grid: train (torch), score the checkpoint on the
whole validation text in torch, numpy and keras (the same number to float32 rounding), write the
CSV and BASELINES.md with its images, skip what is done on a second run."""

import csv
import subprocess
import sys

import pytest
from conftest import ROOT, data_dir


@pytest.mark.parametrize("extra", [[]])
def test_baselines_tiny_grid(tmp_path, extra):
    d = data_dir()
    if d is None:
        pytest.skip("no local corpus: set ROSETTA_DATA_DIR to the folder with tinyshakespeare.txt")
    corpus = tmp_path / "tiny.txt"
    corpus.write_text((d / "tinyshakespeare.txt").read_text()[:30_000])  # 3,000 validation characters
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.baselines", "--out", str(out), "--corpus", str(corpus),
               "--grid", "8x1", "--budget-chars", "6144", "--no-headline", "--no-long", *extra]
    # an interrupted point: the same run stopped after 2 of its 3 steps, its checkpoint and log left behind
    from benchmarks.baselines import train_command

    out.mkdir()
    args = train_command("h8l1", out, 8, 1, 2, str(corpus), learning_rate=2e-3, dropout=0.1, state_resets=0.01,
                         schedule="cosine", warmup_steps=0, lr_floor=0.1)
    first = subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "h8l1: resuming from" in proc.stdout and "resumed from" in proc.stdout
    with open(out / "h8l1.csv", newline="") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    with open(out / "baselines.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["framework"], r["path"], r["kind"]) for r in rows] == [
        ("torch", "layer", "grid"), ("numpy", "fast", "check"), ("keras", "layer", "check")]
    assert {r["name"] for r in rows} == {"h8l1"} and {r["steps"] for r in rows} == {"3"}
    assert {r["chars"] for r in rows} == {str(3 * 32 * 64)}
    assert {r["val_chars"] for r in rows} == {str(3000 - 1)}  # every validation character but the first
    nats = [float(r["val_nats"]) for r in rows]
    assert max(nats) - min(nats) < 1e-4  # the same weights, the same number: float32 rounding
    assert 2.0 < nats[0] < 5.0
    assert abs(float(rows[0]["val_bits"]) - nats[0] / 0.6931471805599453) < 1e-5
    report = (out / "BASELINES.md").read_text()
    for words in ("## Headline", "| h8l1 | 1 x 8, dropout 0.1 |", "bits/char", "baselines_chars.png", "baselines_minutes.png",
                  "1.874", "1.4697", "A sample from the best model"):
        assert words in report, words
    assert (out / "baselines_chars.png").stat().st_size > 1000 and (out / "baselines_minutes.png").stat().st_size > 1000
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "h8l1: done" in again.stdout and "skipped" in again.stdout
    with open(out / "baselines.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3  # nothing added
