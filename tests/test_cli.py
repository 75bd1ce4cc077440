"""The `rosetta` command end to end, each run in its own process: train, sample, info, every user
error as one line and status 2 (no traceback), checkpoints never damaged, Ctrl-C as status 130."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.checkpoint import load_checkpoint
from common.corpus import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden-size", "16", "--num-layers", "2", "--batch-size", "4", "--seq-length", "16",
        "--learning-rate", "0.01", "--seed", "3"]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)


def rosetta(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "common.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """(process, checkpoint) of a 30-step numpy run on the tiny corpus."""
    ckpt = tmp_path_factory.mktemp("run") / "m.safetensors"
    proc = rosetta("train", "--framework", "numpy", "--corpus", corpus, "--iters", 30, "--save", ckpt,
                   "--val-every", 10, "--log-every", 5, "--sample-every", 15, "--sample-length", 40,
                   "--threads", 1, *TINY)
    return proc, ckpt


def test_train_prints_progress_and_saves(trained, corpus):
    proc, ckpt = trained
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "numpy/cell on tiny:" in out.splitlines()[0]
    steps = [int(s) for s in re.findall(r"^step +(\d+)/30", out, flags=re.M)]
    assert steps == [5, 10, 15, 20, 25, 30]
    assert len(re.findall(r"val loss \d+\.\d{4}  (saved|kept) .*m\.safetensors( \(best.*\))?$", out, flags=re.M)) == 3
    assert re.search(r"\d[\d,]* chars/s  elapsed \d+\.\ds  left \d+s", out)
    assert out.count("----- sample at step") == 2  # steps 15 and 30
    losses = [float(v) for v in re.findall(r"  loss (\d+\.\d+)", out)]
    assert losses[-1] < losses[0] - 0.3, losses  # the pattern is being learned
    ckpt_data = load_checkpoint(ckpt, vocab=Vocabulary.from_text(TEXT))
    assert ckpt_data.framework == "numpy"
    assert (ckpt_data.config.hidden_size, ckpt_data.config.num_layers, ckpt_data.config.seed) == (16, 2, 3)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["m.last.safetensors", "m.safetensors"]  # no temporary file


def test_sample_starts_with_the_prime_and_has_the_length(trained):
    _, ckpt = trained
    proc = rosetta("sample", ckpt, "--length", 120, "--prime", "TWO the", "--seed", 1, "--temperature", 0.8)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[:-1]  # print's newline
    assert text.startswith("TWO the") and len(text) == len("TWO the") + 120
    assert set(text) <= set(TEXT)
    assert rosetta("sample", ckpt, "--length", 120, "--prime", "TWO the", "--seed", 1,
                   "--temperature", 0.8).stdout == proc.stdout  # the seed reproduces
    default = rosetta("sample", ckpt, "--length", 10, "--top-k", 1)
    assert default.returncode == 0 and default.stdout.startswith("\n") and len(default.stdout) == 12


def test_info(trained):
    _, ckpt = trained
    proc = rosetta("info", ckpt)
    assert proc.returncode == 0, proc.stderr
    V = len(set(TEXT))
    assert "written by  numpy" in proc.stdout
    assert f"vocabulary  {V} characters" in proc.stdout
    assert "hidden_size=16" in proc.stdout and "num_layers=2" in proc.stdout
    assert re.search(rf"lstm\.0\.W_x +\({V}, 64\)", proc.stdout)
    assert re.search(r"lstm\.1\.W_h +\(16, 64\)", proc.stdout)
    assert re.search(rf"head\.W +\(16, {V}\)", proc.stdout)


def test_console_script_help():
    script = Path(sys.executable).with_name("rosetta")
    if not script.exists():
        pytest.skip("the rosetta console script is not installed in this environment")
    proc = subprocess.run([script, "train", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--framework", "--path", "--corpus", "--iters", "--save", "--hidden-size", "--optimizer", "--threads"):
        assert flag in proc.stdout


# ---------------------------------------------------------------------------------------------
# User errors: status 2, one line, no traceback

def error_cases(corpus, ckpt, tmp):
    bad_bytes = tmp / "latin1.txt"
    bad_bytes.write_bytes("año de gracia\n".encode("latin-1") * 50)
    short = tmp / "short.txt"
    short.write_text("tiny text\n", encoding="utf-8")
    corrupt = tmp / "corrupt.safetensors"
    corrupt.write_bytes(ckpt.read_bytes()[:500])
    other = tmp / "other.txt"
    other.write_text("zzz yyy xxx " * 200, encoding="utf-8")
    train = ["train", "--corpus", corpus, "--iters", 3, *TINY]
    return {
        "unknown framework": ([*train, "--framework", "jax"], "unknown framework 'jax'; choose one of numpy, torch, keras."),
        "unknown path": ([*train, "--framework", "numpy", "--path", "layer"], "numpy has no path 'layer'; choose one of cell, fast."),
        "hidden size 0": ([*train, "--hidden-size", "0"], "hidden_size must be at least 1, got 0."),
        "negative learning rate": ([*train, "--learning-rate", "-1"], "learning_rate must be greater than 0, got -1.0."),
        "float16": ([*train, "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
        "two clippings": ([*train, "--clip-value", "1"], "clip_value 1 and clip_norm 5 cannot both be on (Keras 3 takes only one); add --clip-norm 0"),
        "unknown preset": ([*train, "--preset", "karpathy"], "unknown preset 'karpathy'; choose one of horas, bogunowicz, wang."),
        "rmsprop": ([*train, "--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
        "iters 0": ([*train, "--iters", "0"], "argument --iters: must be a whole number of at least 1, got '0'"),
        "missing corpus": (["train", "--corpus", tmp / "nope.txt"], f"no corpus file at {tmp / 'nope.txt'}"),
        "non-UTF-8 corpus": (["train", "--corpus", bad_bytes], "is not UTF-8 text"),
        "short corpus": (["train", "--corpus", short, *TINY], "too few for one batch"),
        "resume, other vocabulary": ([*train[:2], other, *train[3:], "--resume", ckpt], "differs from the given one"),
        "resume, other size": ([*train, "--resume", ckpt, "--hidden-size", "32"], "hidden_size 16 (asked for 32)"),
        "prime outside the vocabulary": (["sample", ckpt, "--prime", "ROMEO#"], "the prime contains 'R', 'M', '#', which are not in the vocabulary"),
        "temperature 0": (["sample", ckpt, "--temperature", "0"], "temperature must be a finite number greater than 0"),
        "top-k too big": (["sample", ckpt, "--top-k", "500"], "top_k must be a whole number from 1 to the vocabulary size"),
        "sample, unknown framework": (["sample", ckpt, "--framework", "jax"], "unknown framework 'jax'"),
        "missing checkpoint": (["sample", tmp / "none.safetensors"], f"no checkpoint at {tmp / 'none.safetensors'}"),
        "corrupt checkpoint": (["sample", corrupt], "is not a readable safetensors checkpoint"),
        "info, corrupt checkpoint": (["info", corrupt], "is not a readable safetensors checkpoint"),
        "no command": ([], "the following arguments are required"),
    }


ARGPARSE = {"float16", "rmsprop", "iters 0", "no command"}


@pytest.mark.parametrize("case", ["unknown framework", "unknown path", "hidden size 0", "negative learning rate",
                                  "float16", "two clippings", "unknown preset", "rmsprop", "iters 0", "missing corpus", "non-UTF-8 corpus",
                                  "short corpus", "resume, other vocabulary", "resume, other size",
                                  "prime outside the vocabulary", "temperature 0", "top-k too big",
                                  "sample, unknown framework", "missing checkpoint", "corrupt checkpoint",
                                  "info, corrupt checkpoint", "no command"])
def test_user_error_is_one_line_and_status_2(case, trained, corpus, tmp_path):
    args, message = error_cases(corpus, trained[1], tmp_path)[case]
    proc = rosetta(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    if case in ARGPARSE:  # argparse: its usage, then one error line
        assert re.match(r"rosetta( \w+)?: error: ", lines[-1]), lines
    else:
        assert len(lines) == 1 and lines[0].startswith("rosetta: error: ") and lines[0].endswith("."), lines
    assert message in lines[-1]


def test_a_failed_run_leaves_an_existing_checkpoint_alone(trained, corpus, tmp_path):
    target = tmp_path / "keep.safetensors"
    target.write_bytes(trained[1].read_bytes())
    before = target.read_bytes()
    short = tmp_path / "short.txt"
    short.write_text("tiny text\n", encoding="utf-8")
    for args in (["--corpus", short], ["--corpus", corpus, "--hidden-size", "0"], ["--corpus", tmp_path / "nope.txt"]):
        proc = rosetta("train", *TINY, *args, "--save", target)
        assert proc.returncode == 2, proc.stderr
        assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.safetensors", "short.txt"]


# ---------------------------------------------------------------------------------------------
# Ctrl-C

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_saves_and_exits_128_plus_its_number(signum, corpus, tmp_path):
    ckpt = tmp_path / "m.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "train", "--corpus", str(corpus), "--iters", "100000",
                             "--save", str(ckpt), "--val-every", "5", "--sample-every", "0", "--keep", "last", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ckpt.exists(), "no checkpoint was written"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(rf"rosetta: stopped by {signal.Signals(signum).name} after step (\d+) of 100000; "
                         r"the state after step \1 saved to (.+)\.", last)
    assert match and match.group(2) == str(ckpt), last
    loaded = load_checkpoint(ckpt, vocab=Vocabulary.from_text(TEXT))
    assert all(np.isfinite(w).all() for w in loaded.weights.values())
    assert loaded.run["step"] == int(match.group(1)) and loaded.training  # resumable
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_resume_continues_from_the_checkpoint(trained, corpus, tmp_path):
    """--resume starts from the saved weights: its first loss is the trained model's, not a fresh one's."""
    out = tmp_path / "resumed.safetensors"
    fresh = rosetta("train", "--corpus", corpus, "--iters", 1, "--log-every", 1, "--sample-every", 0, *TINY)
    resumed = rosetta("train", "--corpus", corpus, "--iters", 31, "--log-every", 1, "--sample-every", 0,
                      "--save", out, "--resume", trained[1], *TINY)
    assert fresh.returncode == 0 and resumed.returncode == 0, resumed.stderr
    first = [float(re.search(r"  loss (\d+\.\d+)", p.stdout).group(1)) for p in (fresh, resumed)]
    assert first[1] < first[0] - 0.15, first  # step 31 (another batch than a fresh run's first) of a trained model
    assert "resumed from" in resumed.stdout.splitlines()[0] and "after step 30" in resumed.stdout.splitlines()[0]
    assert re.search(r"^step 31/31", resumed.stdout, flags=re.M)
    assert load_checkpoint(out).config.hidden_size == 16


def test_a_diverged_run_stops_before_overwriting_the_checkpoint(monkeypatch, corpus, tmp_path, capsys):
    """A non-finite loss is a user error (learning rate too high): exit 2, the last checkpoint kept."""
    import common.cli as cli
    from common.frameworks import make_model

    def diverging_model(framework, config, weights, path=None):
        model = make_model(framework, config, weights, path=path)
        train_step, calls = model.train_step, []

        def step(x, y):
            calls.append(1)
            loss = train_step(x, y)
            return float("nan") if len(calls) >= 3 else loss

        model.train_step = step
        return model

    monkeypatch.setattr(cli, "make_model", diverging_model)
    target = tmp_path / "m.safetensors"
    status = cli.main(["train", "--corpus", str(corpus), "--iters", "10", "--val-every", "1", "--sample-every", "0",
                       "--save", str(target), *TINY])
    err = capsys.readouterr().err
    assert status == 2
    assert err == (f"rosetta: error: the training loss at step 3 is nan, so the run is diverging ({target} keeps "
                   f"the best weights, of step 2); lower --learning-rate (now 0.01) or set --clip-norm.\n")
    weights = load_checkpoint(target).weights  # written at steps 1 and 2, not after the nan
    assert all(np.isfinite(w).all() for w in weights.values())


# ---------------------------------------------------------------------------------------------
# --target last: the loop over windows, with a numpy stand-in model (no framework)

class WindowRecorder:
    """The CharLSTM interface in numpy: logits from the last input id, every call recorded."""

    def __init__(self, config, weights):
        self.config, self.weights, self.calls = config, weights, []

    def forward(self, x, state=None):
        self.calls.append(("forward", np.array(x), state))
        logits = np.eye(self.config.vocab_size)[x] * 5.0  # (B, T, V): favours repeating the last character
        return logits, [(np.ones((x.shape[0], 2)), np.ones((x.shape[0], 2)))]

    def train_step(self, x, y):
        self.calls.append(("train_step", np.array(x), np.array(y)))
        return 2.0

    def reset_state(self):
        self.calls.append(("reset_state",))

    def get_weights(self):
        return self.weights


def test_target_last_trains_on_windows_from_zeros(monkeypatch, corpus, tmp_path, capsys):
    import common.cli as cli

    made = []
    monkeypatch.setattr(cli, "make_model", lambda framework, config, weights, path=None: made.append(
        WindowRecorder(config, weights)) or made[-1])
    ckpt = tmp_path / "m.safetensors"
    status = cli.main(["train", "--corpus", str(corpus), "--iters", "6", "--val-every", "3", "--sample-every", "6",
                       "--sample-length", "12", "--save", str(ckpt), *TINY, "--target", "last", "--window-stride", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "B=4 T=16 target last (windows 2 apart)" in out.splitlines()[0]
    calls, vocab, T = made[0].calls, Vocabulary.from_text(TEXT), 16
    text = vocab.encode(TEXT)
    steps = [i for i, c in enumerate(calls) if c[0] == "train_step"]
    assert len(steps) == 6
    for i in steps:
        assert calls[i - 1] == ("reset_state",)  # nothing carried into any step
        _, x, y = calls[i]
        assert x.shape == (4, T) and y.shape == (4, 1)
        for row in range(4):  # each window is in the training text, at an even start, y the character after it
            starts = [s for s in range(0, len(text) - T, 2) if np.array_equal(text[s:s + T], x[row])]
            assert any(text[s + T] == y[row, 0] for s in starts)
    forwards = [c for c in calls if c[0] == "forward"]
    assert forwards and all(state is None for _, _, state in forwards)  # validation and sampling: zeros
    assert [x.shape for _, x, _ in forwards[-12:]] == [(1, min(T, 1 + k)) for k in range(12)]  # the sample's windows
    val = [float(v) for v in re.findall(r"val loss (\d+\.\d+)", out)]
    worst = np.log(np.exp(5.0) + len(vocab) - 1)  # a window whose next character differs from its last
    assert len(val) == 2 and all(worst - 5 < v <= worst + 1e-4 for v in val), val  # scored at the last position
    assert load_checkpoint(ckpt).config.target == "last"

    made.clear()
    assert cli.main(["sample", str(ckpt), "--length", "20", "--prime", "TWO the quick brown fox"]) == 0
    text_out = capsys.readouterr().out
    assert text_out.startswith("TWO the quick brown fox") and len(text_out) == len("TWO the quick brown fox") + 20 + 1
    assert [c[1].shape for c in made[0].calls] == [(1, T)] * 20 and all(c[2] is None for c in made[0].calls)


def test_keras_backend_unknown_is_one_sentence():
    proc = rosetta("sample", "missing.safetensors", "--framework", "keras", "--backend", "theano")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["rosetta: error: unknown Keras backend 'theano'; choose one of tensorflow, jax, torch."], lines


def test_keras_fast_on_jax_is_one_sentence(shared_data, tmp_path):
    proc = rosetta("train", "--framework", "keras", "--backend", "jax", "--path", "fast", "--iters", "1",
                   "--hidden-size", "8", "--batch-size", "2", "--seq-length", "4")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rosetta: error: the keras path 'fast' runs on the tensorflow backend only, not jax"), last
