"""numpy training learns: on a text with a learnable pattern, Adam drives the loss far below the
ln V of a uniform guess, within a few hundred small steps."""

import math

import numpy as np

from common.batches import Batches, training_steps
from common.config import Config
from common.weights import init_weights
from numpy_impl.model import CharLSTM


def pattern_text(V=12, words=12, repeats=400, seed=0):
    """Encoded text: one random sequence of `words` random words over V - 1 letters (id 0 is the
    space), repeated; knowing where you are in the sequence predicts every next character."""
    rng = np.random.default_rng(seed)
    vocab_words = [rng.integers(1, V, size=rng.integers(2, 5)) for _ in range(6)]
    sequence = np.concatenate([np.append(vocab_words[k], 0) for k in rng.integers(0, 6, size=words)])
    return np.tile(sequence, repeats)


def test_adam_learns_a_repeated_word_sequence():
    V = 12
    config = Config(vocab_size=V, hidden_size=32, num_layers=2, batch_size=8, seq_length=16,
                    learning_rate=0.01, optimizer="adam", clip_norm=5.0, dtype="float32", seed=0)
    model = CharLSTM(config, init_weights(config))
    batches = Batches(pattern_text(V), config.batch_size, config.seq_length)
    losses = []
    for _, x, y, new_epoch in training_steps(batches, 300):
        if new_epoch:
            model.reset_state()
        losses.append(model.train_step(x, y))
    assert losses[0] > 0.9 * math.log(V)  # it starts near a uniform guess
    assert np.mean(losses[-20:]) < 0.3 * math.log(V), losses[-20:]
    x, y = batches[0]
    assert model.evaluate(x, y) < 0.3 * math.log(V)  # from zeros, without the carried state
