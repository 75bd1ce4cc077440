"""The batch layout of common/batches.py, checked value by value against its picture."""

import numpy as np
import pytest

from common.batches import Batches, split, training_steps
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
