"""Train/validation split, and the two batch layouts: streams (target "all") and windows ("last").

    batches = make_batches(train_data, config, name="training")   # Batches or Windows
    for step, x, y, new_epoch in training_steps(batches, iters): ...

Target "all" (many-to-many, truncated backpropagation through time): the encoded text is cut into B contiguous streams, one per row; batch k is columns
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

Target "last" (many-to-one, Bogunowicz's and Wang's models): each example is a window of T
characters and its target is the one character after it. Windows start every S characters
(S = config.window_stride):

    text  a b c d e f g h i j           (N = 10, T = 4, S = 2)
    window starts 0, 2, 4 (a start s needs s + T <= N - 1: its target is text[s + T])
        x: a b c d   y: e
        x: c d e f   y: g
        x: e f g h   y: i

Batch k of epoch e is B of these windows, in an order drawn from (seed, e): the windows of one
batch come from all over the text (with S = 1, B windows in a row would share all but B - 1 of
their characters), the order differs from epoch to epoch as Keras' fit(shuffle=True) does, and
the same seed gives the same batches in every framework. The windows that do not fill a last
batch are left out of that epoch (different ones each epoch). Validation windows are drawn the
same way, epoch 0, so every validation point sees the same windows, spread over the whole text.

The contract for the models, with config.target == "last":
    x: int (B, T), the windows; y: int (B, 1), the character after each window.
    loss = mean over the B windows of cross-entropy(logits[:, -1, :], y[:, 0]), where logits
        (B, T, V) is forward(x) from a zero state: the same as the many-to-many loss of
        logits[:, -1:] against y (B, 1).
    The LSTM state starts at zero for every window: train_step, evaluate and gradients carry
        nothing from one call to the next (forward(x, state) still takes and returns a state,
        which sampling does not use in this mode). The training loop also calls reset_state()
        before every step, so a model that carried its state would still start from zeros.

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

    carries_state = True  # batch k + 1 continues batch k, row by row

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
        self.data = data  # the whole text, for common/evaluation.py's validation

    def __len__(self):
        return self.num_batches

    def __getitem__(self, k):
        if not 0 <= k < self.num_batches:
            raise IndexError(f"batch {k} of {self.num_batches}")
        cols = slice(k * self.seq_length, (k + 1) * self.seq_length)
        return self.x[:, cols], self.y[:, cols]

    def batch(self, k, epoch=0):
        """Batch k; the same in every epoch, since the carried state needs the streams in order."""
        return self[k]

    def __iter__(self):
        for k in range(self.num_batches):
            yield self[k]


class Windows:
    """Many-to-one batches of one text: x an int64 array (B, T) of windows, y (B, 1) the
    character after each; batch k of epoch e in the order drawn from (seed, e)."""

    carries_state = False  # every window starts from a zero state

    def __init__(self, data, batch_size, seq_length, stride=1, seed=0, name="train"):
        data = np.asarray(data, dtype=np.int64)
        B, T, S = batch_size, seq_length, stride
        self.starts = np.arange(0, len(data) - T, S)  # window [s, s + T), target data[s + T]
        self.num_batches = len(self.starts) // B
        if self.num_batches < 1:
            raise CorpusError(
                f"the {name} text has {len(data)} characters, too few for one batch of "
                f"{B} windows of {T} characters {S} apart (it needs at least {(B - 1) * S + T + 1}); "
                f"use a longer corpus or a smaller --batch-size, --seq-length or --window-stride.")
        self.data, self.seed = data, seed
        self.batch_size, self.seq_length, self.stride = B, T, S
        self.epoch, self.order = None, None  # the window starts of the last epoch asked for

    def __len__(self):
        return self.num_batches

    def starts_of(self, epoch):
        """(num_windows,) the window starts in the order of this epoch."""
        if epoch != self.epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self.epoch, self.order = epoch, self.starts[rng.permutation(len(self.starts))]
        return self.order

    def batch(self, k, epoch=0):
        if not 0 <= k < self.num_batches:
            raise IndexError(f"batch {k} of {self.num_batches}")
        B, T = self.batch_size, self.seq_length
        s = self.starts_of(epoch)[k * B:(k + 1) * B]  # (B,)
        x = self.data[s[:, None] + np.arange(T)]      # (B, T)
        y = self.data[s + T][:, None]                  # (B, 1) the character after each window
        return x, y

    def __getitem__(self, k):
        return self.batch(k, 0)

    def __iter__(self):
        for k in range(self.num_batches):
            yield self[k]


def make_batches(data, config, name="train"):
    """Batches (config.target "all") or Windows ("last") of one text, with config's sizes."""
    if config.target == "last":
        return Windows(data, config.batch_size, config.seq_length, config.window_stride, seed=config.seed, name=name)
    return Batches(data, config.batch_size, config.seq_length, name=name)


def training_steps(batches, iters):
    """Yield (step, x, y, new_epoch) for `iters` steps, cycling over epochs.

    new_epoch is True on the first batch of every epoch: the caller resets the LSTM state there
    (and before every step when batches.carries_state is False).
    """
    for step in range(iters):
        epoch, k = divmod(step, len(batches))
        x, y = batches.batch(k, epoch)
        yield step, x, y, k == 0
