"""Generate text from any framework's CharLSTM, one character at a time.

    from common.sampling import sample
    text = sample(model, vocab, 300, temperature=0.8, prime="ROMEO:", seed=0)

The prime goes through `model.forward` once; after that each new character is fed alone, shape
(1, 1), with the LSTM state the previous call returned, so the prefix is never run again:

    forward("ROMEO:", zeros) -> logits of the last position -> draw c1
    forward(c1, state)       -> logits -> draw c2
    ...

With window=T (a model trained with target "last", as Wang generates) nothing is carried: each
new character is drawn from the last position of forward(the last T characters, zeros), the
window sliding one character on (a prime shorter than T is read whole until the text is T long):

    forward("ROME", zeros) -> draw c1 ;  forward("OME" + c1, zeros) -> draw c2 ;  ...

The returned text is the prime followed by `length` generated characters, so it reads as the
model continued it (and `len(text) == len(prime) + length`). Only `forward` is used, so this
works for numpy, torch and keras models alike; the draw itself is numpy in float64.

`stream(...)` takes the same arguments and yields the characters one by one as they are drawn
(the prime first), so a caller can print 100,000,000 of them without waiting for the end;
`sample` is "".join(stream(...)).
"""

import numbers

import numpy as np

from common.errors import ConfigError


def default_prime(vocab):
    """A newline if the vocabulary has one (the model starts a fresh line), else its first character."""
    return "\n" if "\n" in vocab.chars else vocab.chars[0]


def check_sampling_args(vocab, length, temperature, top_k):
    """Refuse, with a ConfigError that says what to pass, a length, temperature or top_k out of range."""
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise ConfigError(f"the sample length must be a whole number of characters, 0 or more, got {length!r}.")
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not np.isfinite(temperature) or temperature <= 0):
        raise ConfigError(
            f"temperature must be a finite number greater than 0, got {temperature!r}; "
            f"use 1 for the model's own distribution, less (e.g. 0.5) for safer text.")
    V = len(vocab)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or not 1 <= top_k <= V):
        raise ConfigError(f"top_k must be a whole number from 1 to the vocabulary size {V}, got {top_k!r}.")


def probabilities(logits, temperature=1.0, top_k=None):
    """Next-character probabilities (V,) in float64 from logits (V,): softmax(logits / temperature)
    over the top_k largest logits (all of them if top_k is None), zero elsewhere."""
    z = np.asarray(logits, dtype=np.float64) / temperature  # float64: a small temperature overflows float32
    if top_k is not None and top_k < len(z):
        drop = np.argpartition(z, -top_k)[:-top_k]  # indices of all but the top_k largest
        z[drop] = -np.inf
    p = np.exp(z - z.max())
    return p / p.sum()


def sample(model, vocab, length, temperature=1.0, top_k=None, prime=None, seed=None, window=None):
    """The prime followed by `length` characters drawn from `model`.

    model: any CharLSTM (only `forward(x, state)` is called, never a training method).
    vocab: the Vocabulary the model was trained with. prime: text to start from (default: a
    newline if the vocabulary has one, else its first character); a character outside the
    vocabulary is refused with a CorpusError naming it. temperature > 0 divides the logits;
    top_k keeps only the k likeliest characters at each step. seed: for np.random.default_rng.
    window: None carries the state; a number T reads the last T characters from a zero state
    for every new character (config.seq_length of a model trained with target "last").
    """
    return "".join(stream(model, vocab, length, temperature, top_k, prime, seed, window))


def stream(model, vocab, length, temperature=1.0, top_k=None, prime=None, seed=None, window=None):
    """The same text as `sample`, yielded as it is made: the prime, then one character per draw.

    The arguments are checked when this is called (not at the first next()), so a bad one is
    refused before anything is printed.
    """
    check_sampling_args(vocab, length, temperature, top_k)
    prime = default_prime(vocab) if prime is None else prime
    if not prime:
        raise ConfigError("the prime is empty; give at least one character to start from, or leave it out.")
    ids = vocab.encode(prime, what="the prime")  # CorpusError naming characters outside the vocabulary
    if window is not None and (isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1):
        raise ConfigError(f"the sampling window must be a whole number of characters, 1 or more, got {window!r}.")
    rng = np.random.default_rng(seed)
    draws = (sample_windows(model, ids, length, temperature, top_k, rng, window) if window is not None
             else sample_carried(model, ids, length, temperature, top_k, rng))
    return _chars(prime, draws, vocab)


def _chars(prime, draws, vocab):
    yield prime
    for i in draws:
        yield vocab.decode([i])


def sample_carried(model, ids, length, temperature, top_k, rng):
    """`length` ids drawn one at a time (a generator), the state carried from the prime on."""
    logits, state = model.forward(ids[None, :], state=None)  # (1, P, V): the prime, once
    for k in range(length):
        p = probabilities(np.asarray(logits)[0, -1], temperature, top_k)  # (V,)
        i = int(rng.choice(len(p), p=p))
        yield i
        if k + 1 < length:  # the last character needs no forward: nothing is drawn after it
            logits, state = model.forward(np.array([[i]], dtype=np.int64), state=state)  # (1, 1, V)


def sample_windows(model, ids, length, temperature, top_k, rng, window):
    """`length` ids drawn one at a time (a generator), each from forward(the last `window` ids, zeros)."""
    text = list(ids)
    for _ in range(length):
        x = np.array([text[-window:]], dtype=np.int64)  # (1, <= T): the window, from a zero state
        logits, _ = model.forward(x, state=None)          # (1, <= T, V)
        p = probabilities(np.asarray(logits)[0, -1], temperature, top_k)  # (V,)
        text.append(int(rng.choice(len(p), p=p)))
        yield text[-1]
