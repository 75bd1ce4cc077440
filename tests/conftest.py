"""Shared test helpers: the data directory, and running an implementation in its own process."""

import json
import os
import subprocess
import sys
from pathlib import Path

# Tests check numbers, not speed: one thread per process, so that the subprocesses some tests run
# side by side do not oversubscribe a 2-core CI machine (spinning BLAS threads slow it 10-100x).
from common.frameworks import THREAD_VARIABLES  # noqa: E402  (imports no framework, nor numpy)

for _var in THREAD_VARIABLES:
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir():
    """ROSETTA_DATA_DIR, or ../shared/data beside the repository; None if neither exists."""
    for candidate in (os.environ.get("ROSETTA_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate, "tinyshakespeare.txt").exists():
            return Path(candidate)
    return None


@pytest.fixture
def shared_data(monkeypatch):
    """The local corpus folder, set as ROSETTA_DATA_DIR for the test."""
    d = data_dir()
    if d is None:
        pytest.skip("no local corpus: set ROSETTA_DATA_DIR to the folder with tinyshakespeare.txt")
    monkeypatch.setenv("ROSETTA_DATA_DIR", str(d))
    return d


def run_probe(tmp_path, framework, path=None, config=None, train_steps=0, data_seed=0, timeout=600):
    """Run tests/impl_probe.py for one implementation in a fresh process; dict of its arrays."""
    out = tmp_path / f"probe-{framework}-{path}-{len(list(tmp_path.glob('probe-*')))}.npz"
    cmd = [sys.executable, str(ROOT / "tests" / "impl_probe.py"), "--framework", framework,
           "--config", json.dumps(config or {}), "--train-steps", str(train_steps),
           "--data-seed", str(data_seed), "--out", str(out)]
    if path:
        cmd += ["--path", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"probe {framework}/{path} failed:\n{proc.stderr[-3000:]}"
    with np.load(out) as f:
        return {k: f[k] for k in f.files}
