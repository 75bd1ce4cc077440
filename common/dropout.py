"""Dropout masks, drawn once here and handed to every implementation (Zaremba et al. 2014;
char-rnn's -dropout): the same masks in numpy, torch and keras, so their losses stay equal.

    masks = dropout_masks(config, step)          # None when config.dropout is 0
    loss = model.train_step(x, y, masks=masks)   # what common/training.py does at every step

Where: on the input of each LSTM layer above the first and on the input of the head, that is on
the output hs (B, T, H) of every layer l; never on the recurrent h -> h path, never on the one-hot.
masks[l] multiplies layer l's output hs. Inverted dropout: kept units are scaled by 1 / (1 - p) in
training, so evaluation (forward, evaluate, sampling) uses the weights as they are, with no mask.

The masks of step s are a function of (config.seed, s) alone, so a resumed run draws the same
masks as an uninterrupted one, and no framework's own random generator is involved.
"""

import numpy as np

STREAM = 0xD80  # set apart from the other generators seeded with config.seed (batches, samples)


def dropout_masks(config, step, batch_size=None, seq_length=None):
    """[masks[l] for l in range(L)], each (B, T, H) in config.dtype holding 0 or 1 / (1 - p), for
    training step `step` (0-based); None when config.dropout is 0 (no dropout: pass nothing)."""
    p = config.dropout
    if not p:
        return None
    B = config.batch_size if batch_size is None else batch_size
    T = config.seq_length if seq_length is None else seq_length
    rng = np.random.default_rng([config.seed, STREAM, int(step)])
    keep = rng.random((config.num_layers, B, T, config.hidden_size)) >= p  # (L, B, T, H)
    scaled = keep / (1.0 - p)  # float64, then one rounding to the model's dtype
    return [scaled[l].astype(config.dtype) for l in range(config.num_layers)]
