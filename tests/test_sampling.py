"""common/sampling.py: the state is carried (never re-running the prefix), temperature and top_k
shape the distribution as the formulas say, seeds reproduce, bad arguments are refused."""

import math

import numpy as np
import pytest

from common.config import Config
from common.corpus import Vocabulary
from common.errors import ConfigError, CorpusError
from common.sampling import probabilities, sample
from common.weights import init_weights

VOCAB = Vocabulary("\n abcdefghi")  # V = 11


class TinyRNN:
    """A recurrent stand-in with strong logits: h_t = tanh(E[x_t] + h_{t-1} @ W), logits = h_t @ U."""

    def __init__(self, V, H=6, scale=3.0, seed=0):
        rng = np.random.default_rng(seed)
        self.E, self.W, self.U = rng.normal(0, 1, (V, H)), rng.normal(0, 0.5, (H, H)), rng.normal(0, scale, (H, V))

    def forward(self, x, state=None):
        h = np.zeros((x.shape[0], self.W.shape[0])) if state is None else state[0][0]
        hs = []
        for t in range(x.shape[1]):
            h = np.tanh(self.E[x[:, t]] + h @ self.W)
            hs.append(h)
        return np.stack(hs, axis=1) @ self.U, [(h, np.zeros_like(h))]


class Recorder:
    """Wraps a model and keeps every (x, logits) that forward saw and returned."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def forward(self, x, state=None):
        logits, state = self.model.forward(x, state)
        self.calls.append((np.array(x), np.array(logits)))
        return logits, state


class Constant:
    """The same logits at every position, whatever the input: isolates the draw."""

    def __init__(self, z):
        self.z = np.asarray(z, dtype=np.float32)

    def forward(self, x, state=None):
        return np.tile(self.z, (x.shape[0], x.shape[1], 1)), state


def numpy_lstm(dtype="float64"):
    from numpy_impl.model import CharLSTM

    config = Config(vocab_size=len(VOCAB), hidden_size=8, num_layers=2, batch_size=3, seq_length=5, dtype=dtype, seed=3)
    return CharLSTM(config, init_weights(config))


def greedy(model, vocab, prime, length):
    """Independent greedy decoding: re-run the whole prefix each step and take the argmax."""
    ids = list(vocab.encode(prime))
    for _ in range(length):
        logits, _ = model.forward(np.array([ids]), None)
        ids.append(int(np.argmax(logits[0, -1])))
    return vocab.decode(ids)


@pytest.mark.parametrize("make_model", [numpy_lstm, lambda: TinyRNN(len(VOCAB))], ids=["numpy CharLSTM", "TinyRNN"])
def test_state_is_carried_not_rerun(make_model):
    model = make_model()
    rec = Recorder(model)
    text = sample(rec, VOCAB, 40, prime="abc\n", seed=1)
    assert text.startswith("abc\n") and len(text) == 4 + 40
    ids = VOCAB.encode(text)
    # the prime once, then each drawn character alone (the last one is never fed)
    assert len(rec.calls) == 40
    assert rec.calls[0][0].tolist() == [ids[:4].tolist()]
    assert [x.shape for x, _ in rec.calls[1:]] == [(1, 1)] * 39
    assert [int(x[0, 0]) for x, _ in rec.calls[1:]] == ids[4:-1].tolist()
    # the logits seen step by step equal one forward over the whole text from zeros
    stepwise = np.concatenate([logits for _, logits in rec.calls], axis=1)  # (1, 43, V)
    full, _ = model.forward(ids[None, :-1], None)
    np.testing.assert_allclose(stepwise, full, rtol=0, atol=1e-12)


def test_top_k_1_and_a_tiny_temperature_are_greedy():
    model = TinyRNN(len(VOCAB))
    expected = greedy(model, VOCAB, "ab", 60)
    assert sample(model, VOCAB, 60, top_k=1, prime="ab", seed=0) == expected
    assert sample(model, VOCAB, 60, top_k=1, temperature=5.0, prime="ab", seed=7) == expected
    assert sample(model, VOCAB, 60, temperature=1e-6, prime="ab", seed=0) == expected
    assert len(set(expected)) > 2  # a non-trivial path, so the comparison could fail
    z = np.array([0.3, 0.30001, -1.0])
    np.testing.assert_array_equal(probabilities(z, temperature=1e-9), [0.0, 1.0, 0.0])


def test_temperature_and_top_k_give_the_expected_frequencies():
    z = np.array([0.0, 0.5, 1.0, 1.5, 2.0, -3.0])
    vocab = Vocabulary("abcdef")
    n = 20000
    text = sample(Constant(z), vocab, n, temperature=0.5, top_k=3, prime="a", seed=0)[1:]
    counts = np.array([text.count(c) for c in vocab.chars])
    kept = np.exp(np.array([1.0, 1.5, 2.0]) / 0.5)  # top 3 logits c, d, e over the temperature
    p = np.zeros(6)
    p[2:5] = kept / kept.sum()
    assert counts[[0, 1, 5]].tolist() == [0, 0, 0]
    for k in (2, 3, 4):
        assert abs(counts[k] - n * p[k]) < 5 * math.sqrt(n * p[k] * (1 - p[k])), (k, counts, n * p)


def test_probabilities_in_float64_without_overflow():
    z = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    p = probabilities(z, temperature=1e-3)  # z / T = 3000: exp overflows unless shifted
    assert p.dtype == np.float64 and np.all(np.isfinite(p)) and p[2] == 1.0
    np.testing.assert_allclose(probabilities(z), np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-15)


def test_seed_reproduces_and_different_seeds_differ():
    model = numpy_lstm()
    a = sample(model, VOCAB, 100, seed=5)
    assert a == sample(model, VOCAB, 100, seed=5)
    assert a != sample(model, VOCAB, 100, seed=6)


def test_default_prime_and_length():
    model = TinyRNN(len(VOCAB))
    text = sample(model, VOCAB, 25, seed=0)
    assert text[0] == "\n" and len(text) == 26
    vocab = Vocabulary("xyz")
    text = sample(TinyRNN(3), vocab, 10, seed=0)
    assert text[0] == "x" and len(text) == 11
    assert sample(model, VOCAB, 0, prime="abc") == "abc"


def test_prime_outside_the_vocabulary_names_the_characters():
    with pytest.raises(CorpusError) as e:
        sample(TinyRNN(len(VOCAB)), VOCAB, 10, prime="abz€a")
    message = str(e.value)
    assert message.startswith("the prime contains 'z', '€'")
    assert "not in the vocabulary" in message and message.endswith(".")


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "hot", True])
def test_bad_temperature(temperature):
    with pytest.raises(ConfigError, match=r"^temperature must be a finite number greater than 0, got"):
        sample(TinyRNN(len(VOCAB)), VOCAB, 10, temperature=temperature)


@pytest.mark.parametrize("top_k", [0, 12, 2.5, -1])
def test_bad_top_k(top_k):
    with pytest.raises(ConfigError, match=r"^top_k must be a whole number from 1 to the vocabulary size 11, got"):
        sample(TinyRNN(len(VOCAB)), VOCAB, 10, top_k=top_k)


def test_bad_length_and_empty_prime():
    with pytest.raises(ConfigError, match="sample length must be a whole number"):
        sample(TinyRNN(len(VOCAB)), VOCAB, -1)
    with pytest.raises(ConfigError, match="the prime is empty"):
        sample(TinyRNN(len(VOCAB)), VOCAB, 5, prime="")


# ---------------------------------------------------------------------------------------------
# window=T: a model trained with target "last" reads the last T characters from zeros

class StateChecker:
    """Wraps a model, keeps every x, and fails if a state is ever passed in."""

    def __init__(self, model):
        self.model, self.inputs = model, []

    def forward(self, x, state=None):
        assert state is None, "a windowed sample must start every window from a zero state"
        self.inputs.append(np.array(x))
        return self.model.forward(x, None)


@pytest.mark.parametrize("prime", ["ab cd\nefgh", "ab"], ids=["prime longer than T", "prime shorter than T"])
def test_window_sampling_reads_the_last_T_characters_from_zeros(prime):
    T = 5
    rec = StateChecker(TinyRNN(len(VOCAB)))
    text = sample(rec, VOCAB, 30, top_k=1, prime=prime, seed=0, window=T)
    assert text.startswith(prime) and len(text) == len(prime) + 30
    ids = list(VOCAB.encode(text))
    assert len(rec.inputs) == 30  # one window per drawn character
    for k, x in enumerate(rec.inputs):
        end = len(prime) + k  # the window ends just before the k-th drawn character
        assert x.tolist() == [ids[max(0, end - T):end]]
    expected = list(VOCAB.encode(prime))  # independent greedy decoding over windows
    model = TinyRNN(len(VOCAB))
    for _ in range(30):
        logits, _ = model.forward(np.array([expected[-T:]]), None)
        expected.append(int(np.argmax(logits[0, -1])))
    assert ids == expected
    carried = sample(TinyRNN(len(VOCAB)), VOCAB, 30, top_k=1, prime=prime, seed=0)
    assert carried != text  # TinyRNN's state reaches further back than 5 characters: the modes differ


def test_window_sampling_seed_and_bad_window():
    model = TinyRNN(len(VOCAB), scale=0.5)
    a, b = (sample(model, VOCAB, 50, prime="abc", seed=4, window=8) for _ in range(2))
    assert a == b and a != sample(model, VOCAB, 50, prime="abc", seed=5, window=8)
    for window in (0, 2.5, True):
        with pytest.raises(ConfigError, match=r"^the sampling window must be a whole number of characters, 1 or more, got"):
            sample(model, VOCAB, 5, prime="abc", window=window)


# ---------------------------------------------------------------------------------------------
# Streaming: characters arrive as they are drawn, from the generator and from `rosetta sample`

class CountingRNN(TinyRNN):
    """TinyRNN that counts its forward calls."""

    def __init__(self, V):
        super().__init__(V)
        self.calls = 0

    def forward(self, x, state=None):
        self.calls += 1
        return super().forward(x, state)


@pytest.mark.parametrize("window", [None, 4])
def test_stream_yields_before_the_end(window):
    from itertools import islice

    from common.sampling import stream

    model = CountingRNN(len(VOCAB))
    chars = stream(model, VOCAB, 100_000_000, prime="abc", seed=2, window=window)
    first = list(islice(chars, 6))  # the prime, then five drawn characters
    assert first[0] == "abc" and all(len(ch) == 1 and ch in VOCAB.chars for ch in first[1:])
    assert model.calls <= 5  # one forward per drawn character, not 100,000,000


@pytest.mark.parametrize("window", [None, 3])
def test_stream_is_the_sample(window):
    from common.sampling import stream

    model = TinyRNN(len(VOCAB))
    assert "".join(stream(model, VOCAB, 60, temperature=0.9, prime="ab", seed=5, window=window)) == \
        sample(model, VOCAB, 60, temperature=0.9, prime="ab", seed=5, window=window)


def test_stream_refuses_bad_arguments_when_called():
    from common.sampling import stream

    with pytest.raises(ConfigError):
        stream(TinyRNN(len(VOCAB)), VOCAB, -1)  # at the call, before any next()


def test_rosetta_sample_streams_and_stops_on_ctrl_c(tmp_path):
    """The first characters of a 100,000,000-character sample arrive while it runs; SIGINT ends it (130)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from common.checkpoint import save_checkpoint

    config = Config(vocab_size=len(VOCAB), hidden_size=8, num_layers=1, seed=1)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, init_weights(config), VOCAB, config, "numpy")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "sample", str(ckpt), "--length", "100000000",
                             "--prime", "abc"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        start = time.monotonic()
        head = os.read(proc.stdout.fileno(), 3)
        while len(head) < 40:
            head += os.read(proc.stdout.fileno(), 40 - len(head))
        assert time.monotonic() - start < 60 and proc.poll() is None  # still drawing: the text is streamed
        assert head.decode().startswith("abc") and set(head.decode()) <= set(VOCAB.chars)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 130
        assert b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
