"""A newcomer's first commands (issue 27), each run in its own process as a user runs it: a wrong
--log file refused before any work, a file that is not a checkpoint named by its type, the
frameworks' start-up noise hidden and the slow export announced, `info` showing the training
progress, and train and eval counting the validation text alike."""

import hashlib
import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from common.batches import split
from common.checkpoint import file_kind, load_checkpoint, save_checkpoint
from common.corpus import load_corpus
from common.errors import CheckpointError, ConfigError
from common.training import LOG_COLUMNS, read_log

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden-size", "16", "--num-layers", "1", "--batch-size", "4", "--seq-length", "16",
        "--learning-rate", "0.01", "--seed", "3", "--sample-every", "0", "--threads", "1"]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)
ADVICE = "not a checkpoint: give the .safetensors file that `rosetta train --save` wrote."


def rosetta(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def needs(*modules):
    """Skip unless these can be imported (found, not imported: the test runs them in a subprocess)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def one_error_line(proc):
    """The single `rosetta: error:` line of a refused command (status 2, no traceback)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rosetta: error: ") and "Traceback" not in proc.stderr, lines
    return lines[0].removeprefix("rosetta: error: ")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(folder, corpus, checkpoint, log, train's stdout) of a 12-step numpy run with --log."""
    d = tmp_path_factory.mktemp("newcomer")
    corpus = d / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    ckpt, log = d / "m.safetensors", d / "m.csv"
    proc = rosetta("train", "--corpus", corpus, "--iters", 12, "--val-every", 4, "--log-every", 4,
                   "--save", ckpt, "--log", log, *TINY)
    assert proc.returncode == 0, proc.stderr
    return d, corpus, ckpt, log, proc.stdout


# ---------------------------------------------------------------------------------------------
# --log: a file that is not a rosetta log is refused before the corpus is read, and left alone

def test_a_log_that_is_not_a_log_is_refused_before_any_work(run, tmp_path):
    _, corpus, ckpt, _, _ = run
    other_csv = tmp_path / "prices.csv"
    other_csv.write_text("date,price\n2024-01-01,3\n")
    latin1 = tmp_path / "notes.log"
    latin1.write_bytes("año de gracia, ñandú\n".encode("latin-1"))
    cases = {ckpt: "(a safetensors file)", other_csv: "(a CSV file)", latin1: "(not UTF-8 text)",
             corpus: "(a text file)"}
    missing = tmp_path / "no-such-corpus.txt"  # were the corpus read first, this would be the error
    for log, kind in cases.items():
        before = Path(log).read_bytes()
        proc = rosetta("train", "--corpus", missing, "--iters", 10, "--log", log, *TINY)
        assert one_error_line(proc) == (f"--log {log} exists and is not a rosetta training log {kind}; choose a new "
                                        f"file name (a run replaces only its own log).")
        assert proc.stdout == "" and Path(log).read_bytes() == before
    folder = tmp_path / "logs"
    folder.mkdir()
    assert one_error_line(rosetta("train", "--corpus", missing, "--log", folder, *TINY)).startswith(
        f"--log {folder} is a folder; give a file name such as")


def test_read_log_takes_a_rosetta_log_and_refuses_a_damaged_one(run, tmp_path):
    _, _, _, log, _ = run
    rows = read_log(log)
    assert tuple(rows[0]) == LOG_COLUMNS and [int(r[0]) for r in rows[1:]] == list(range(1, 13))
    assert read_log(tmp_path / "new.csv") is None and read_log(None) is None
    damaged = tmp_path / "damaged.csv"
    damaged.write_text(",".join(LOG_COLUMNS) + "\nstep seven,0,1.0,,1.0,0.1\n")
    with pytest.raises(ConfigError, match=r"damaged\.csv exists and is not a rosetta training log; choose"):
        read_log(damaged)


# ---------------------------------------------------------------------------------------------
# A file that is not a checkpoint: named by its type; a damaged checkpoint: truncated or corrupt

def not_checkpoints(d, log):
    """name -> (path, the type the message names) of files a user may pass instead of a checkpoint."""
    files = {"other.csv": b"a,b\n1,2\n", "config.json": b'{"hidden_size": 16}\n', "empty.safetensors": b"",
             "notes.txt": "ROMEO: ¿qué?\n".encode(), "loss.png": b"\x89PNG\r\n\x1a\n" + bytes(32),
             "weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(32), "m.onnx": b"\x08\x08\x12\x07pytorch" + bytes(32)}
    for name, data in files.items():
        (d / name).write_bytes(data)
    with zipfile.ZipFile(d / "m.keras", "w") as z:
        z.writestr("config.json", "{}")
    kinds = {"other.csv": "a CSV file", "config.json": "a JSON file", "empty.safetensors": "an empty file",
             "notes.txt": "a text file", "loss.png": "a PNG image", "weights.h5": "an HDF5 file (Keras 2 .h5 weights?)",
             "m.onnx": "an ONNX model", "m.keras": "a Keras .keras export (a zip archive)"}
    return {**{name: (d / name, kind) for name, kind in kinds.items()}, "m.csv": (log, "a rosetta training log (CSV)")}


def test_a_file_that_is_not_a_checkpoint_is_named_by_its_type(run, tmp_path):
    _, _, _, log, _ = run
    for name, (path, kind) in not_checkpoints(tmp_path, log).items():
        assert file_kind(path) == kind, name
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(path)
        assert str(refused.value) == f"{path} is {kind}, {ADVICE}"


@pytest.mark.parametrize("command", ["sample", "info", "eval", "export"])
def test_every_command_names_a_csv_log_given_as_the_checkpoint(command, run, tmp_path):
    _, _, _, log, _ = run
    before = log.read_bytes()
    extra = {"export": ["--to", "onnx", tmp_path / "m.onnx"]}.get(command, [])
    proc = rosetta(command, log, *extra)
    assert one_error_line(proc) == f"{log} is a rosetta training log (CSV), {ADVICE}"
    assert log.read_bytes() == before and not (tmp_path / "m.onnx").exists()


def test_a_damaged_checkpoint_is_still_called_truncated_or_corrupt(run, tmp_path):
    _, _, ckpt, _, _ = run
    data = ckpt.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    for name, damaged in {"truncated": data[:-7], "header only": data[:400], "noise": b"\x00\x01" + noise}.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(damaged)
        assert file_kind(path) in (None, "a safetensors file"), name
        message = one_error_line(rosetta("info", path))
        assert message.startswith(f"{path} is not a readable safetensors checkpoint (") and message.endswith(
            "); it may be truncated or corrupt: save it again or use another file."), message


# ---------------------------------------------------------------------------------------------
# The frameworks' start-up noise is hidden; the slow export says what it does

QUIET_PROBE = ("import os; from common.frameworks import quiet\n"
               "with quiet():\n    os.write(2, b'framework noise ')\n    import warnings; warnings.warn('a warning')\n"
               "os.write(2, b'ours')")


@pytest.mark.parametrize("environment", [{}, {"ROSETTA_VERBOSE": "1"}, {"TF_CPP_MIN_LOG_LEVEL": "0"}])
def test_quiet_hides_what_is_written_while_a_framework_loads_unless_asked(environment):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("ROSETTA_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, "-c", QUIET_PROBE], capture_output=True, text=True, cwd=ROOT,
                          env={**env, **environment}, timeout=60)
    assert proc.returncode == 0
    if environment:  # the user asked to see it: everything, in order
        assert proc.stderr.startswith("framework noise ") and "UserWarning: a warning" in proc.stderr
        assert proc.stderr.endswith("ours")
    else:
        assert proc.stderr == "ours"


def test_keras_commands_print_no_framework_banner(run):
    needs("keras", "tensorflow")
    _, _, ckpt, _, _ = run
    proc = rosetta("sample", ckpt, "--framework", "keras", "--backend", "tensorflow", "--length", 20, "--seed", 1)
    assert proc.returncode == 0 and len(proc.stdout) == len("\n") + 20 + len("\n")  # the default prime, print's newline
    assert proc.stderr == ""  # TensorFlow 2.21 writes the absl and oneDNN lines here unless silenced


def test_onnx_export_announces_itself_and_prints_no_warnings(run, tmp_path):
    needs("torch", "onnx", "onnxscript")
    _, _, ckpt, _, _ = run
    out = tmp_path / "m.onnx"
    proc = rosetta("export", ckpt, "--to", "onnx", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"exporting {ckpt} to {out} with torch.onnx (about 20 s)...",
                                        f"wrote {out} (--to onnx); README: Exports shows how to load and sample it"]
    assert proc.stderr == ""  # torchvision notes, FutureWarning and UserWarning are hidden
    assert out.stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# rosetta info: the training progress the checkpoint records

def test_info_shows_the_training_progress(run):
    _, corpus, ckpt, _, stdout = run
    proc = rosetta("info", ckpt)
    assert proc.returncode == 0, proc.stderr
    lines = dict(re.findall(r"^(\w+(?: \w+)?) +(.*)$", proc.stdout, flags=re.M))
    vals = [(int(step), v) for step, v in re.findall(r"^step +(\d+)/12 .*val loss (\d+\.\d+)", stdout, flags=re.M)]
    best_step, best = min(vals, key=lambda sv: float(sv[1]))
    B, T = 4, 16
    assert lines["training"].startswith(f"step {best_step} of 12 (epoch 0, batch {best_step}), "
                                        f"{best_step * B * T:,} characters read, ")
    assert lines["best val"] == f"{best} nats per character at step {best_step}; these weights are that step's"
    assert lines["corpus"] == f"tiny, sha256 {hashlib.sha256(TEXT.encode()).hexdigest()}"
    assert lines["train state"] == "adam (m, step, v) and the carried LSTM state: --resume continues the run exactly"


def test_info_of_a_last_checkpoint_and_of_an_old_one(run, tmp_path):
    _, corpus, _, _, _ = run
    last = tmp_path / "last.safetensors"
    proc = rosetta("train", "--corpus", corpus, "--iters", 9, "--val-every", 3, "--keep", "last", "--save", last, *TINY)
    assert proc.returncode == 0, proc.stderr
    vals = [(int(s), v) for s, v in re.findall(r"^step +(\d+)/9 .*val loss (\d+\.\d+)", proc.stdout, flags=re.M)]
    best_step, best = min(vals, key=lambda sv: float(sv[1]))
    info = rosetta("info", last).stdout
    assert f"best val    {best} nats per character at step {best_step}\n" in info  # --keep last records it too
    assert "step 9 of 9 (epoch 0, batch 9), 576 characters read" in info
    old = tmp_path / "old.safetensors"
    ckpt = load_checkpoint(last)
    save_checkpoint(old, ckpt.weights, ckpt.vocab, ckpt.config, "torch")  # no training metadata, no state
    info = rosetta("info", old).stdout
    assert "training    not recorded (the checkpoint holds no training metadata)\n" in info
    assert "best val    not recorded\n" in info and "corpus      not recorded\n" in info
    assert "train state none (weights only): --resume starts the optimizer and the LSTM state afresh\n" in info


# ---------------------------------------------------------------------------------------------
# train and eval count the validation text alike

def test_train_and_eval_say_the_same_validation_counts(run):
    _, corpus, ckpt, _, stdout = run
    n = len(split(load_corpus(corpus).data)[1])
    assert (f" and {n:,} validation characters ({n - 1:,} next-character targets; validation reads the first "
            f"{n // 2:,}, the second half is held out), ") in stdout.splitlines()[0]
    proc = rosetta("eval", ckpt, "--corpus", corpus)  # a corpus file: the checkpoint records its name only
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(rf"{re.escape(str(ckpt))}: validation loss \d+\.\d{{4}} nats \(\d+\.\d{{4}} bits\) per character, "
                        rf"the state carried: {n - 1:,} next-character targets, each span warmed over 256 characters, "
                        rf"the whole validation text \({n:,} characters\) of tiny \(numpy/cell\)\n",
                        proc.stdout), proc.stdout
