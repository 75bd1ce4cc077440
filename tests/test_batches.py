"""The batch layout of common/batches.py, checked value by value against its picture."""

import numpy as np
import pytest

from common.batches import Batches, Windows, make_batches, split, training_steps
from common.config import Config
from common.errors import CorpusError

ABC = "abcdefghijklmnopqrstuvwxy"  # N = 25, the text of the picture


def letters(a):
    return ["".join(ABC[i] for i in row) for row in a]


def test_the_picture():
    b = Batches(np.arange(25), batch_size=2, seq_length=4)
    assert len(b) == 3
    expected = [(["abcd", "mnop"], ["bcde", "nopq"]),
                (["efgh", "qrst"], ["fghi", "rstu"]),
                (["ijkl", "uvwx"], ["jklm", "vwxy"])]
    for k, (x_rows, y_rows) in enumerate(expected):
        x, y = b[k]
        assert x.dtype == np.int64 and y.dtype == np.int64 and x.shape == y.shape == (2, 4)
        assert letters(x) == x_rows and letters(y) == y_rows
    assert [(letters(x), letters(y)) for x, y in b] == expected


def test_targets_are_inputs_shifted_by_one_and_rows_continue():
    data = np.random.default_rng(0).integers(0, 50, 1000)
    b = Batches(data, batch_size=4, seq_length=7)
    L = (1000 - 1) // 4
    assert len(b) == L // 7
    x_all = np.concatenate([x for x, _ in b], axis=1)  # (B, len * T): each row one stream
    y_all = np.concatenate([y for _, y in b], axis=1)
    for r in range(4):
        np.testing.assert_array_equal(x_all[r], data[r * L: r * L + len(b) * 7])
        np.testing.assert_array_equal(y_all[r], data[r * L + 1: r * L + len(b) * 7 + 1])


@pytest.mark.parametrize("N, B, T, n", [(25, 2, 4, 3), (9, 2, 4, 1), (8, 2, 4, 0), (101, 5, 10, 2), (1001, 1, 10, 100)])
def test_number_of_batches(N, B, T, n):
    if n == 0:
        with pytest.raises(CorpusError):
            Batches(np.zeros(N), B, T)
    else:
        assert len(Batches(np.zeros(N), B, T)) == n == ((N - 1) // B) // T


def test_too_short_text_message():
    with pytest.raises(CorpusError) as e:
        Batches(np.arange(20), batch_size=4, seq_length=5, name="validation")
    assert str(e.value) == ("the validation text has 20 characters, too few for one batch of 4 streams x 5 steps "
                            "(it needs at least 21); use a longer corpus or a smaller --batch-size or --seq-length.")
    assert len(Batches(np.arange(21), batch_size=4, seq_length=5)) == 1


def test_index_out_of_range():
    b = Batches(np.arange(25), 2, 4)
    with pytest.raises(IndexError):
        b[3]
    with pytest.raises(IndexError):
        b[-1]


def test_training_steps_epochs():
    b = Batches(np.arange(25), 2, 4)  # 3 batches an epoch
    steps = list(training_steps(b, 8))
    assert [s for s, *_ in steps] == list(range(8))
    assert [new for *_, new in steps] == [True, False, False, True, False, False, True, False]
    for step, x, y, _ in steps:
        np.testing.assert_array_equal(x, b[step % 3][0])
        np.testing.assert_array_equal(y, b[step % 3][1])
    assert list(training_steps(b, 0)) == []


def test_split_90_10():
    data = np.arange(1000)
    train, val = split(data)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(np.concatenate([train, val]), data)
    train, val = split(np.arange(1_115_394))  # tinyshakespeare, as nanoGPT: int(n * 0.9)
    assert len(train) == 1_003_854 and len(val) == 111_540


# ---------------------------------------------------------------------------------------------
# Windows (target "last")

def test_the_windows_picture():
    w = Windows(np.arange(10), batch_size=1, seq_length=4, stride=2)  # "abcdefghij"
    assert len(w) == 3 and not w.carries_state and Batches.carries_state
    pairs = sorted((letters(x)[0], letters(y)[0]) for x, y in w)
    assert pairs == [("abcd", "e"), ("cdef", "g"), ("efgh", "i")]
    x, y = w[0]
    assert x.dtype == np.int64 and y.dtype == np.int64 and x.shape == (1, 4) and y.shape == (1, 1)


@pytest.mark.parametrize("stride", [1, 3, 16])
def test_every_window_is_text_and_its_next_character(stride):
    data = np.random.default_rng(1).integers(0, 40, 500)
    B, T = 8, 16
    w = Windows(data, B, T, stride=stride, seed=5)
    all_starts = list(range(0, 500 - T, stride))  # s + T <= 499: the target is data[s + T]
    assert len(w) == len(all_starts) // B
    for epoch in (0, 1):
        seen = []
        for k in range(len(w)):
            x, y = w.batch(k, epoch)
            assert x.shape == (B, T) and y.shape == (B, 1)
            for row in range(B):  # find the window in the text, independently of the class
                s = next(t for t in all_starts if np.array_equal(data[t:t + T], x[row]))
                seen.append(s)
                assert y[row, 0] == data[s + T]
        assert len(set(seen)) == len(seen) == len(w) * B  # no window twice in an epoch
        assert set(seen) <= set(all_starts)


def test_window_order_comes_from_the_seed_and_the_epoch():
    data = np.arange(300)
    a, b, c = Windows(data, 4, 5, seed=7), Windows(data, 4, 5, seed=7), Windows(data, 4, 5, seed=8)
    first = lambda w, epoch: [int(w.batch(k, epoch)[0][i, 0]) for k in range(3) for i in range(4)]  # window starts
    assert first(a, 0) == first(b, 0)  # same seed, same batches (in every framework)
    assert first(a, 0) != first(c, 0)
    assert first(a, 1) != first(a, 0)  # reshuffled every epoch
    assert first(a, 0) == first(b, 0) and a[2][0].tolist() == b.batch(2, 0)[0].tolist()  # epoch 0 again: the same
    assert first(a, 0) != sorted(first(a, 0))  # shuffled, not in text order


def test_training_steps_over_windows():
    w = Windows(np.arange(30), batch_size=4, seq_length=3, seed=0)  # 27 windows: 6 batches an epoch
    steps = list(training_steps(w, 13))
    assert [new for *_, new in steps] == [k % 6 == 0 for k in range(13)]
    for step, x, y, _ in steps:
        ex, ey = w.batch(step % 6, step // 6)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(y[:, 0], x[:, -1] + 1)  # np.arange: the next character
    assert not np.array_equal(steps[0][1], steps[6][1])  # epoch 1 has another order


def test_too_short_text_for_windows():
    with pytest.raises(CorpusError) as e:
        Windows(np.arange(20), batch_size=4, seq_length=5, stride=5, name="validation")
    assert str(e.value) == ("the validation text has 20 characters, too few for one batch of 4 windows of 5 characters "
                            "5 apart (it needs at least 21); use a longer corpus or a smaller --batch-size, "
                            "--seq-length or --window-stride.")
    assert len(Windows(np.arange(21), batch_size=4, seq_length=5, stride=5)) == 1
    with pytest.raises(IndexError):
        Windows(np.arange(21), 4, 5, stride=5)[1]


def test_make_batches_follows_the_target():
    data = np.arange(200)
    many = make_batches(data, Config(batch_size=2, seq_length=8))
    assert type(many) is Batches and many[0][1].shape == (2, 8)
    config = Config(batch_size=2, seq_length=8, target="last", window_stride=3, seed=4)
    one = make_batches(data, config)
    assert type(one) is Windows and one.stride == 3 and one.seed == 4 and one[0][1].shape == (2, 1)
