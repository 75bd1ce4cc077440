"""Dropout masks, the learning-rate schedule, state resets and the whole-text validation loss
(issue 18): the framework-free parts in common/, against independent computations. The three
frameworks' equality with dropout and the schedule on is in test_dropout_equivalence.py."""

import math

import numpy as np
import pytest

from common.config import Config
from common.dropout import dropout_masks
from common.errors import ConfigError
from common.evaluation import spans, text_loss
from common.schedule import learning_rate, scheduled
from common.training import reset_here, step_options


def test_schedule_against_the_formula_written_out():
    c = Config(learning_rate=3e-3, schedule="cosine", warmup_steps=20, decay_steps=220, lr_floor=0.1)
    for step in range(0, 300):
        if step < 20:
            want = 3e-3 * (step + 1) / 20
        elif step >= 220:
            want = 3e-4
        else:
            progress = (step - 20) / 200
            want = 3e-4 + 0.5 * (3e-3 - 3e-4) * (1 + math.cos(math.pi * progress))
        assert learning_rate(c, step) == pytest.approx(want, rel=1e-12), step
    assert learning_rate(c, 20) == 3e-3 and learning_rate(c, 120) == pytest.approx((3e-3 + 3e-4) / 2)


def test_schedule_defaults_change_nothing_and_decay_steps_zero_is_the_run():
    assert not scheduled(Config())
    assert all(learning_rate(Config(), s) == Config().learning_rate for s in (0, 10, 10 ** 6))
    c = Config(schedule="cosine", learning_rate=1.0, lr_floor=0.0)
    assert learning_rate(c, 50, total_steps=100) == pytest.approx(0.5)
    assert learning_rate(c, 100, total_steps=100) == 0.0
    warm = Config(warmup_steps=4, learning_rate=1.0)  # constant after a warm-up
    assert scheduled(warm) and [learning_rate(warm, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_dropout_masks_are_inverted_shared_and_reproducible():
    c = Config(dropout=0.25, num_layers=3, batch_size=4, seq_length=50, hidden_size=40, dtype="float64", seed=3)
    masks = dropout_masks(c, 7)
    assert len(masks) == 3 and all(m.shape == (4, 50, 40) and m.dtype == np.float64 for m in masks)
    values = np.unique(np.concatenate([m.ravel() for m in masks]))
    assert np.allclose(values, [0.0, 1 / 0.75])
    kept = np.mean([np.mean(m > 0) for m in masks])
    assert abs(kept - 0.75) < 0.02  # 24,000 draws
    assert all(np.array_equal(a, b) for a, b in zip(masks, dropout_masks(c, 7)))  # (seed, step) alone
    assert not np.array_equal(masks[0], dropout_masks(c, 8)[0])
    assert not np.array_equal(masks[0], dropout_masks(c.replace(seed=4), 7)[0])
    assert dropout_masks(Config(), 0) is None
    assert dropout_masks(c.replace(dtype="float32"), 7)[0].dtype == np.float32


def test_step_options_only_when_on():
    assert step_options(Config(), 5, 100) == {}
    extra = step_options(Config(dropout=0.5, schedule="cosine", num_layers=2), 5, 100)
    assert set(extra) == {"masks", "learning_rate"} and len(extra["masks"]) == 2
    assert extra["learning_rate"] == learning_rate(Config(schedule="cosine"), 5, 100)


def test_state_resets_are_drawn_from_seed_and_step():
    c = Config(state_resets=0.1)
    draws = [reset_here(c, s) for s in range(5000)]
    assert 0.08 < np.mean(draws) < 0.12
    assert draws == [reset_here(c, s) for s in range(5000)]
    assert not any(reset_here(Config(), s) for s in range(100))


@pytest.mark.parametrize("fields, words", [
    ({"dropout": 1.0}, "dropout must be at least 0 and below 1"),
    ({"dropout": -0.1}, "dropout must be"),
    ({"schedule": "linear"}, "schedule must be one of constant, cosine"),
    ({"warmup_steps": -1}, "warmup_steps must be 0 or more"),
    ({"lr_floor": 2.0}, "lr_floor must be between 0 and 1"),
    ({"state_resets": 1.5}, "state_resets must be a probability"),
])
def test_bad_values_are_one_sentence(fields, words):
    with pytest.raises(ConfigError, match=words):
        Config(**fields)


class Unigram:
    """A model whose logits depend on the carried state only: the count of characters read so far,
    so that a span read cold and a span read warm differ, and the loss can be written out."""

    def __init__(self, V):
        self.V = V

    def forward(self, x, state=None):
        B, T = x.shape
        seen = np.zeros(B) if state is None else state[0][0][:, 0]
        counts = seen[:, None] + np.arange(1, T + 1)[None, :]  # (B, T) characters read up to t
        logits = np.zeros((B, T, self.V))
        logits[..., 0] = np.log1p(counts)  # character 0 likelier the more was read
        return logits, [(counts[:, -1:], counts[:, -1:])]


def reference(data, V):
    """The single stream, from zeros, written out: -log softmax at every target."""
    total = 0.0
    for t in range(len(data) - 1):
        z = np.zeros(V)
        z[0] = np.log1p(t + 1)
        total += np.log(np.exp(z).sum()) - z[data[t + 1]]
    return total / (len(data) - 1)


def test_text_loss_scores_every_character_once_with_the_state_carried():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 5, 1001)
    want = reference(data, 5)
    one = text_loss(Unigram(5), data, streams=1, chunk=64)
    assert one.chars == 1000 and one.nats == pytest.approx(want, rel=1e-12)
    assert one.bits == pytest.approx(want / math.log(2))
    # spans warmed over everything before them read exactly as the one stream does
    warm = text_loss(Unigram(5), data, streams=7, warmup=10 ** 6, chunk=32)
    assert warm.chars == 1000 and warm.nats == pytest.approx(want, rel=1e-12)
    # cold spans are another figure: what the old quick validation measured
    cold = text_loss(Unigram(5), data, streams=7, warmup=0, chunk=32)
    assert abs(cold.nats - want) > 1e-3


def test_spans_cover_the_targets_once():
    parts = spans(1000, 7, 50)
    assert parts[0] == (0, 0, parts[0][2]) and parts[-1][2] == 1000
    assert all(a2 == b1 for (_, _, b1), (_, a2, _) in zip(parts, parts[1:]))
    assert all(a - start == min(50, a) for start, a, _ in parts)
    quick = spans(1000, 7, 50, per_span=20)
    assert all(end - a == 20 for _, a, end in quick)


@pytest.mark.parametrize("framework,path", [("numpy", "fast"), ("torch", "layer")])
def test_resume_with_dropout_schedule_and_resets_is_bit_for_bit(framework, path, tmp_path):
    """The masks, the rate and the resets of step s come from (seed, s): 6 steps + a resume to 12
    equal 12 steps, loss for loss and weight for weight."""
    import csv
    import subprocess
    import sys

    from common.checkpoint import load_checkpoint
    from conftest import ROOT

    corpus = tmp_path / "tiny.txt"
    corpus.write_text("".join(f"{w} the quick brown fox jumps over the lazy dog.\n" for w in ("ONE", "TWO", "SIX") * 40))
    common = ["train", "--corpus", corpus, "--framework", framework, "--path", path, "--threads", 1,
              "--hidden-size", 8, "--num-layers", 2, "--batch-size", 4, "--seq-length", 8, "--sample-every", 0,
              "--dropout", 0.3, "--schedule", "cosine", "--warmup-steps", 3, "--decay-steps", 10,
              "--state-resets", 0.3, "--val-every", 3, "--keep", "last"]

    def rosetta(*args):
        proc = subprocess.run([sys.executable, "-m", "common.cli", *map(str, common), *map(str, args)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        return proc

    rosetta("--iters", 12, "--save", tmp_path / "whole.safetensors", "--log", tmp_path / "whole.csv")
    rosetta("--iters", 6, "--save", tmp_path / "part.safetensors", "--log", tmp_path / "part.csv")
    rosetta("--iters", 12, "--resume", tmp_path / "part.safetensors", "--save", tmp_path / "part.safetensors",
            "--log", tmp_path / "part.csv")

    def losses(name):
        with open(tmp_path / name, newline="") as f:
            return [(r["step"], r["loss"], r["val_loss"]) for r in csv.DictReader(f)]

    assert losses("part.csv") == losses("whole.csv") and len(losses("whole.csv")) == 12
    a, b = load_checkpoint(tmp_path / "whole.safetensors"), load_checkpoint(tmp_path / "part.safetensors")
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name], err_msg=name)
