"""Train/validation split and the batch layout for truncated backpropagation through time.

The encoded text is cut into B contiguous streams, one per row; batch k is columns
[kT, (k+1)T) of every row, and its targets are the same columns one character on:

    text  a b c d e f g h i j k l m n o p q r s t u v w x y        (N = 25, B = 2, T = 4)
    streams of L = (N - 1) // B = 12 characters:

                 batch 0    batch 1    batch 2
    row 0  x:    a b c d  | e f g h  | i j k l
           y:    b c d e  | f g h i  | j k l m
    row 1  x:    m n o p  | q r s t  | u v w x
           y:    n o p q  | r s t u  | v w x y

Row r of batch k+1 continues row r of batch k, so the LSTM state left by batch k is the right
starting state for batch k+1: it is carried between calls and reset to zeros at each epoch.
The same integer arrays feed all three frameworks.
"""

import numpy as np

from common.errors import CorpusError

TRAIN_FRACTION = 0.9  # first 90 % train, last 10 % validation, as nanoGPT's shakespeare_char


def split(data, train_fraction=TRAIN_FRACTION):
    """(train, val): the first and last parts of the encoded text, in order."""
    n = int(len(data) * train_fraction)
    return data[:n], data[n:]


class Batches:
    """The (x, y) batches of one text, in order; each x and y is an int64 array (B, T)."""

    def __init__(self, data, batch_size, seq_length, name="train"):
        data = np.asarray(data, dtype=np.int64)
        B, T = batch_size, seq_length
        L = (len(data) - 1) // B  # characters per stream; the +1 is the last target
        self.num_batches = L // T
        if self.num_batches < 1:
            raise CorpusError(
                f"the {name} text has {len(data)} characters, too few for one batch of "
                f"{B} streams x {T} steps (it needs at least {B * T + 1}); "
                f"use a longer corpus or a smaller --batch-size or --seq-length.")
        n = self.num_batches * T  # characters per stream that fit whole batches
        starts = np.arange(B)[:, None] * L  # (B, 1) offset of each stream in the text
        self.x = data[starts + np.arange(n)]       # (B, n)
        self.y = data[starts + np.arange(n) + 1]   # (B, n) targets: one character on
        self.batch_size, self.seq_length = B, T

    def __len__(self):
        return self.num_batches

    def __getitem__(self, k):
        if not 0 <= k < self.num_batches:
            raise IndexError(f"batch {k} of {self.num_batches}")
        cols = slice(k * self.seq_length, (k + 1) * self.seq_length)
        return self.x[:, cols], self.y[:, cols]

    def __iter__(self):
        for k in range(self.num_batches):
            yield self[k]


def training_steps(batches, iters):
    """Yield (step, x, y, new_epoch) for `iters` steps, cycling over epochs.

    new_epoch is True on the first batch of every epoch: the caller resets the LSTM state there.
    """
    for step in range(iters):
        k = step % len(batches)
        x, y = batches[k]
        yield step, x, y, k == 0
