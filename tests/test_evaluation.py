"""common/evaluation.py's block protocol (nanoGPT's estimate_loss) against an LSTM written out here,
the halves of the validation text, the quick validation on the first half, and rosetta eval's options."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import cli, evaluation, training
from common.batches import split
from common.checkpoint import load_checkpoint
from common.config import Config
from common.corpus import load_corpus
from common.errors import ConfigError
from common.evaluation import HALVES, block_loss, val_half
from common.frameworks import make_model
from common.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40)
TINY = ["--hidden-size", "8", "--num-layers", "2", "--batch-size", "4", "--seq-length", "8",
        "--learning-rate", "0.01", "--seed", "3", "--sample-every", "0", "--threads", "1"]
VAL = len(TEXT) - int(len(TEXT) * 0.9)  # one character a byte; nanoGPT's 90/10 split
SECOND = VAL - VAL // 2


def tiny(dtype="float64", seed=0):
    """(config, weights): V=7, two layers of 8, weights drawn large enough that the losses vary."""
    config = Config(vocab_size=7, hidden_size=8, num_layers=2, dtype=dtype)
    rng = np.random.default_rng(seed)
    weights = {k: (rng.standard_normal(w.shape) * 0.6).astype(dtype) for k, w in init_weights(config).items()}
    return config, weights


def written_out_loss(weights, L, x, y):
    """The mean cross-entropy of one block read from zeros: the LSTM equations one step at a time (gates i, f, g, o)."""
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    H = weights["lstm.0.W_h"].shape[0]
    h, c = [np.zeros(H)] * L, [np.zeros(H)] * L
    total = 0.0
    for t in range(len(x)):
        inp = np.eye(weights["lstm.0.W_x"].shape[0])[x[t]]
        for l in range(L):
            z = inp @ weights[f"lstm.{l}.W_x"] + h[l] @ weights[f"lstm.{l}.W_h"] + weights[f"lstm.{l}.b"]
            i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
            c[l] = f * c[l] + i * g
            h[l] = inp = o * np.tanh(c[l])
        logits = inp @ weights["head.W"] + weights["head.b"]
        total += np.log(np.sum(np.exp(logits))) - logits[y[t]]
    return total / len(x)


def written_out_means(weights, data, offsets, block):
    return np.array([written_out_loss(weights, 2, data[i:i + block], data[i + 1:i + 1 + block]) for i in offsets])


def drawn_offsets(seed, n, high, batch):
    """nanoGPT's offsets as block_loss draws them: default_rng(seed), `batch` at a time, the last the rest."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.integers(0, high, min(batch, n - k)) for k in range(0, n, batch)])


@pytest.fixture(scope="module")
def model64():
    config, weights = tiny()
    data = np.random.default_rng(1).integers(0, 7, 603)
    return make_model("numpy", config, weights), weights, data


def test_every_non_overlapping_block_against_the_equations_written_out(model64):
    model, weights, data = model64
    result = block_loss(model, data, block=16, blocks="all", batch=8)
    offsets = np.arange(0, 603 - 16, 16)  # i + block + 1 <= len(data): 37 blocks, the last from 576
    assert offsets[-1] + 17 <= 603 < offsets[-1] + 16 + 17 and len(offsets) == 37
    means = written_out_means(weights, data, offsets, 16)
    assert result.blocks == 37 and result.chars == 37 * 16
    assert result.nats == pytest.approx(means.mean(), abs=1e-10)
    assert result.se == pytest.approx(means.std(ddof=1) / np.sqrt(37), abs=1e-10)
    assert result.bits == pytest.approx(result.nats / np.log(2))


def test_random_blocks_of_a_seed_against_the_equations_written_out(model64):
    model, weights, data = model64
    result = block_loss(model, data, block=16, seed=5, blocks=21, batch=8)
    means = written_out_means(weights, data, drawn_offsets(5, 21, 603 - 16, 8), 16)
    assert result.blocks == 21 and result.nats == pytest.approx(means.mean(), abs=1e-10)
    assert result.se == pytest.approx(means.std(ddof=1) / np.sqrt(21), abs=1e-10)
    again = block_loss(model, data, block=16, seed=5, blocks=21, batch=8)
    assert again == result and block_loss(model, data, block=16, seed=6, blocks=21, batch=8).nats != result.nats


def test_until_the_standard_error_is_below_the_target(model64, monkeypatch):
    model, weights, data = model64
    result = block_loss(model, data, block=8, seed=2, target_se=0.03, batch=32)
    assert result.blocks >= evaluation.MIN_BLOCKS and result.blocks % 32 == 0 and result.se < 0.03
    means = written_out_means(weights, data, drawn_offsets(2, result.blocks, 603 - 8, 32), 8)
    assert result.se == pytest.approx(means.std(ddof=1) / np.sqrt(len(means)), abs=1e-10)
    assert result.nats == pytest.approx(means.mean(), abs=1e-10)
    shorter = means[:result.blocks - 32]  # one draw fewer was not enough
    assert result.blocks == evaluation.MIN_BLOCKS or shorter.std(ddof=1) / np.sqrt(len(shorter)) >= 0.03
    monkeypatch.setattr(evaluation, "MAX_BLOCKS", 64)
    capped = block_loss(model, data, block=8, seed=2, target_se=1e-9, batch=32)
    assert capped.blocks == 64 and capped.se > 1e-9
    assert "still above 1e-09 at the cap of 64 blocks" in evaluation.describe(capped, "whole", data, 2, None,
                                                                             target_se=1e-9)


def test_numpy_torch_and_keras_give_the_same_block_loss():
    config, weights = tiny("float32", seed=4)
    data = np.random.default_rng(2).integers(0, 7, 400)
    losses = {f: block_loss(make_model(f, config, weights), data, block=32, seed=1, blocks=40, batch=16)
              for f in ("numpy", "torch", "keras")}
    assert len({r.blocks for r in losses.values()}) == 1
    for f in ("torch", "keras"):
        assert losses[f].nats == pytest.approx(losses["numpy"].nats, rel=1e-5), (f, losses)


def test_bad_blocks_and_short_texts_are_one_sentence(model64):
    model, _, data = model64
    with pytest.raises(ConfigError, match=r"^the text has 603 characters, too few for one block of 700 \(it needs "
                                          r"701\); use a smaller --block\.$"):
        block_loss(model, data, block=700)
    with pytest.raises(ConfigError, match=r"number of blocks must be a whole number of at least 1 or 'all', got -3\."):
        block_loss(model, data, blocks=-3)
    with pytest.raises(ConfigError, match=r"block length must be a whole number of at least 1, got 0\."):
        block_loss(model, data, block=0)


def test_the_halves_cut_the_validation_text_in_two():
    for n in (10, 11):
        val = np.arange(n)
        first, second = val_half(val, "first"), val_half(val, "second")
        assert len(first) == n // 2 and len(second) == n - n // 2
        assert np.array_equal(np.concatenate([first, second]), val) and val_half(val, "whole") is val
    assert HALVES == ("whole", "first", "second")
    with pytest.raises(ConfigError, match=r"^unknown half 'third'; choose one of whole, first, second\.$"):
        val_half(np.arange(4), "third")


def test_the_quick_validation_reads_only_the_first_half(monkeypatch, tmp_path, capsys):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    seen = []
    monkeypatch.setattr(training, "validation_loss", lambda model, batches: seen.append(batches) or 1.0)
    assert cli.main(["train", "--corpus", str(corpus), *TINY, "--iters", "2", "--val-every", "2"]) == 0
    val = split(load_corpus(str(corpus)).data)[1]
    assert seen and all(np.array_equal(b.data, val[:len(val) // 2]) for b in seen)
    header = capsys.readouterr().out.splitlines()[0]
    assert f"validation reads the first {len(val) // 2:,}, the second half is held out" in header


# ---------------------------------------------------------------------------------------------
# rosetta eval and python -m common.evaluation

def run(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    corpus, ckpt = folder / "tiny.txt", folder / "m.safetensors"
    corpus.write_text(TEXT, encoding="utf-8")
    proc = run("common.cli", "train", "--corpus", corpus, *TINY, "--iters", 6, "--val-every", 0, "--save", ckpt)
    assert proc.returncode == 0, proc.stderr
    return corpus, ckpt


def test_eval_blocks_on_the_held_out_half_says_how_it_was_read(trained):
    corpus, ckpt = trained
    proc = run("common.cli", "eval", ckpt, "--corpus", corpus, "--protocol", "blocks", "--half", "second",
               "--block", 16, "--blocks", 50, "--seed", 4, "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    c = load_checkpoint(ckpt)
    second = val_half(split(load_corpus(str(corpus)).data)[1], "second")
    expected = block_loss(make_model("numpy", c.config, c.weights), second, block=16, seed=4, blocks=50)
    assert proc.stdout == (f"{ckpt}: validation loss {expected.nats:.4f} nats ({expected.bits:.4f} bits) per character, "
                           f"nanoGPT's block protocol: 50 random 16-character blocks from a zero state (seed 4, "
                           f"standard error {expected.se:.4f}), the second half of the validation text "
                           f"({len(second):,} characters, held out) of tiny (numpy/cell)\n")
    proc = run("common.evaluation", ckpt, "--corpus", corpus, "--protocol", "blocks", "--half", "second",
               "--block", 16, "--blocks", 50, "--seed", 4, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"nats": pytest.approx(expected.nats, abs=1e-12), "bits": pytest.approx(expected.bits, abs=1e-12),
                   "chars": 800, "framework": "numpy", "path": None, "dtype": "float32", "protocol": "blocks",
                   "half": "second", "block": 16, "blocks": 50, "se": pytest.approx(expected.se, abs=1e-12)}


def test_eval_carried_by_default_and_every_block_with_all(trained):
    corpus, ckpt = trained
    proc = run("common.cli", "eval", ckpt, "--corpus", corpus, "--half", "first", "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    n = len(split(load_corpus(str(corpus)).data)[1]) // 2
    assert re.fullmatch(rf"{re.escape(str(ckpt))}: validation loss \d\.\d{{4}} nats \(\d\.\d{{4}} bits\) per character, "
                        rf"the state carried: {n - 1:,} next-character targets, each span warmed over 256 characters, "
                        rf"the first half of the validation text \({n:,} characters, the one training validates on\) "
                        rf"of tiny \(numpy/cell\)\n", proc.stdout), proc.stdout
    proc = run("common.evaluation", ckpt, "--corpus", corpus, "--json")
    out = json.loads(proc.stdout)
    assert out["protocol"] == "carried" and out["half"] == "whole" and out["se"] is None and out["blocks"] is None
    proc = run("common.cli", "eval", ckpt, "--corpus", corpus, "--protocol", "blocks", "--block", 64, "--blocks", "all",
               "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    whole = len(split(load_corpus(str(corpus)).data)[1])
    assert (f"nanoGPT's block protocol: every one of the {(whole - 65) // 64 + 1} non-overlapping 64-character blocks "
            f"in order, from a zero state (standard error ") in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--protocol", "blocks", "--block", "0"], "argument --block: must be a whole number of at least 1, got '0'"),
    (["--protocol", "blocks", "--blocks", "-3"], "argument --blocks: must be a whole number of at least 1 or 'all', got '-3'"),
    (["--protocol", "blocks", "--blocks", "foo"], "argument --blocks: must be a whole number of at least 1 or 'all', got 'foo'"),
    (["--half", "third"], "argument --half: invalid choice: 'third'"),
    (["--protocol", "nanogpt"], "argument --protocol: invalid choice: 'nanogpt'"),
    (["--protocol", "blocks", "--half", "second", "--block", 5000],
     f"rosetta: error: the text has {SECOND} characters, too few for one block of 5000 (it needs 5001); use a smaller --block."),
])
def test_eval_bad_values_are_one_sentence_and_status_2(trained, args, message):
    corpus, ckpt = trained
    for module in ("common.cli eval", "common.evaluation"):
        proc = run(*module.split(), ckpt, "--corpus", corpus, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert message in proc.stderr.strip().splitlines()[-1], proc.stderr
