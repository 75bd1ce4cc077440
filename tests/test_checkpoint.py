"""The interchange checkpoint: exact round trip, every refusal, and saves that never half-write."""

import json
import os
import re

import numpy as np
import pytest
import safetensors.numpy

from common import checkpoint
from common.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from common.config import Config
from common.corpus import Vocabulary
from common.errors import CheckpointError
from common.weights import init_weights

VOCAB = Vocabulary("\n !,.abcdef")  # V = 11


def small(dtype="float64", **kw):
    return Config(vocab_size=11, hidden_size=8, num_layers=2, batch_size=3, seq_length=5, dtype=dtype, **kw)


@pytest.fixture
def saved(tmp_path):
    config = small()
    weights = init_weights(config)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, weights, VOCAB, config, "torch")
    return path, weights, config


def write_raw(path, tensors, metadata):
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))


def raw_metadata(config, vocab=VOCAB):
    return {"format": FORMAT, "framework": "numpy", "vocab": json.dumps(vocab.chars),
            "config": json.dumps(config.to_dict())}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype):
    config = small(dtype, learning_rate=0.01, optimizer="adagrad")
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(w.shape).astype(dtype) for k, w in init_weights(config).items()}
    weights["head.W"] = np.asfortranarray(weights["head.W"])  # not contiguous: saved anyway
    path = save_checkpoint(tmp_path / "m.safetensors", weights, VOCAB, config, "keras")
    ckpt = load_checkpoint(path)
    assert ckpt.vocab == VOCAB and ckpt.vocab.chars == VOCAB.chars
    assert ckpt.config == config
    assert ckpt.framework == "keras"
    assert ckpt.metadata["format"] == "lstm-rosetta/1"
    assert list(ckpt.weights) == list(weights)  # interchange order
    for name, w in weights.items():
        assert ckpt.weights[name].dtype == np.dtype(dtype)
        assert ckpt.weights[name].tobytes() == np.ascontiguousarray(w).tobytes()  # bit-identical
        assert ckpt.weights[name].flags.writeable
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_weights_cast_to_config_dtype_on_save(tmp_path):
    config = small("float32")
    weights = init_weights(small("float64"))
    save_checkpoint(tmp_path / "m.safetensors", weights, VOCAB, config, "numpy")
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert all(w.dtype == np.float32 for w in ckpt.weights.values())
    np.testing.assert_array_equal(ckpt.weights["lstm.0.W_x"], weights["lstm.0.W_x"].astype(np.float32))


def test_given_config_and_vocab_that_fit(saved):
    path, weights, config = saved
    other = config.replace(learning_rate=0.5, optimizer="sgd", dtype="float32")  # sizes equal
    ckpt = load_checkpoint(path, config=other, vocab=Vocabulary(VOCAB.chars))
    assert ckpt.config == other
    assert ckpt.weights["head.W"].dtype == np.float32
    np.testing.assert_array_equal(ckpt.weights["head.W"], weights["head.W"].astype(np.float32))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"^no checkpoint at .*nope\.safetensors; check the path"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"is a folder; pass the \.safetensors file inside it"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file(saved, damage):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:-7], "garbage": b"\x00\xffnot a checkpoint at all"}[damage])
    with pytest.raises(CheckpointError, match=r"is not a readable safetensors checkpoint \(.+\); it may be "
                                              r"truncated or corrupt: save it again or use another file\.$"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, kind", [(b"not a checkpoint at all", "a text file"), (b"", "an empty file")])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(saved, content, kind):
    path = saved[0]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))} is {kind}, not a checkpoint: give the "
                                              r"\.safetensors file that `rosetta train --save` wrote\.$"):
        load_checkpoint(path)


def test_missing_metadata(tmp_path):
    config = small()
    for key in ("vocab", "config", "format", "framework"):
        meta = raw_metadata(config)
        del meta[key]
        write_raw(tmp_path / "m.safetensors", init_weights(config), meta)
        with pytest.raises(CheckpointError, match=rf"has no '{key}' in its metadata, so it was not written by save_checkpoint"):
            load_checkpoint(tmp_path / "m.safetensors")
    write_raw(tmp_path / "m.safetensors", init_weights(config), None)
    with pytest.raises(CheckpointError, match=r"has no 'format' in its metadata"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_bad_metadata(tmp_path):
    config, path = small(), tmp_path / "m.safetensors"
    write_raw(path, init_weights(config), {**raw_metadata(config), "format": "lstm-rosetta/2"})
    with pytest.raises(CheckpointError, match=r"has format 'lstm-rosetta/2', but this version reads 'lstm-rosetta/1'"):
        load_checkpoint(path)
    write_raw(path, init_weights(config), {**raw_metadata(config), "config": "{not json"})
    with pytest.raises(CheckpointError, match=r"has unreadable vocab or config metadata"):
        load_checkpoint(path)
    write_raw(path, init_weights(config), {**raw_metadata(config), "config": json.dumps({**config.to_dict(), "hidden_size": -1})})
    with pytest.raises(CheckpointError, match=r"unreadable vocab or config metadata \(hidden_size must be at least 1"):
        load_checkpoint(path)
    write_raw(path, init_weights(config), {**raw_metadata(config), "vocab": json.dumps(" \n!,.abcdef")})  # unsorted
    with pytest.raises(CheckpointError, match=r"not a non-empty string of sorted, distinct characters"):
        load_checkpoint(path)
    write_raw(path, init_weights(config), {**raw_metadata(config), "vocab": json.dumps("abc")})
    with pytest.raises(CheckpointError, match=r"holds 3 vocabulary characters but a config with vocab_size 11"):
        load_checkpoint(path)


def test_missing_tensor_is_named(tmp_path):
    config, path = small(), tmp_path / "m.safetensors"
    weights = init_weights(config)
    del weights["lstm.1.W_h"]
    write_raw(path, weights, raw_metadata(config))
    with pytest.raises(CheckpointError, match=r"lack tensor 'lstm\.1\.W_h' \(shape \(8, 32\)\)"):
        load_checkpoint(path)


def test_extra_tensor_is_named(tmp_path):
    config, path = small(), tmp_path / "m.safetensors"
    weights = {**init_weights(config), "lstm.2.W_x": np.zeros((8, 32))}
    write_raw(path, weights, raw_metadata(config))
    with pytest.raises(CheckpointError, match=r"hold tensor 'lstm\.2\.W_x', which a model of 2 layer\(s\) has no place for"):
        load_checkpoint(path)


def test_misshapen_tensor_is_named(tmp_path):
    config, path = small(), tmp_path / "m.safetensors"
    weights = {**init_weights(config), "head.b": np.zeros(12)}
    write_raw(path, weights, raw_metadata(config))
    with pytest.raises(CheckpointError, match=r"tensor 'head\.b' in the tensors of .*m\.safetensors has shape \(12,\), "
                                              r"but this config \(V=11, H=8\) needs \(11,\)"):
        load_checkpoint(path)


def test_wrong_dtype_is_named(tmp_path):
    config, path = small("float64"), tmp_path / "m.safetensors"
    weights = init_weights(config)
    weights["lstm.0.b"] = weights["lstm.0.b"].astype(np.float32)
    write_raw(path, weights, raw_metadata(config))
    with pytest.raises(CheckpointError, match=r"tensor 'lstm\.0\.b' in .* is float32, but its config says float64"):
        load_checkpoint(path)


def test_wrong_vocabulary(saved):
    path = saved[0]
    other = Vocabulary("\n !,.abcxyz")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, vocab=other)
    assert (f"the vocabulary of {path} (11 characters) differs from the given one (11): 3 only in the checkpoint "
            f"('d', 'e', 'f') and 3 only in the given vocabulary ('x', 'y', 'z'); use the same corpus") in str(e.value)
    with pytest.raises(CheckpointError, match=r"differs from the given one \(12\): 1 only in the given vocabulary \('Q'\);"):
        load_checkpoint(path, vocab=Vocabulary(VOCAB.chars + "Q"))


def test_config_of_another_size(saved):
    path, _, config = saved
    with pytest.raises(CheckpointError, match=r"holds a model with hidden_size 8 \(asked for 16\), num_layers 2 "
                                              r"\(asked for 1\); drop the size options"):
        load_checkpoint(path, config=config.replace(hidden_size=16, num_layers=1))


# ---------------------------------------------------------------------------------------------
# Saving: refused before writing, atomic when the write fails

def test_save_refuses_weights_that_do_not_fit_and_keeps_the_old_file(saved):
    path, weights, config = saved
    before = path.read_bytes()
    bad = {**weights, "lstm.0.W_h": np.zeros((8, 8))}
    with pytest.raises(CheckpointError, match=r"tensor 'lstm\.0\.W_h' in the weights to save has shape \(8, 8\)"):
        save_checkpoint(path, bad, VOCAB, config, "numpy")
    with pytest.raises(CheckpointError, match=r"the weights to save lack tensor 'head\.W'"):
        save_checkpoint(path, {k: w for k, w in weights.items() if k != "head.W"}, VOCAB, config, "numpy")
    with pytest.raises(CheckpointError, match=r"the vocabulary has 10 characters but config\.vocab_size is 11"):
        save_checkpoint(path, weights, Vocabulary(VOCAB.chars[:10]), config, "numpy")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.safetensors"]


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_failed_write_leaves_old_file_and_no_temp(saved, monkeypatch, fail_at):
    path, weights, config = saved
    before = path.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, fail_at, fail)
    with pytest.raises(CheckpointError, match=r"cannot write the checkpoint .*model\.safetensors \(No space left "
                                              r"on device\); choose a writable path\."):
        save_checkpoint(path, {k: w + 1 for k, w in weights.items()}, VOCAB, config, "numpy")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.safetensors"]


def test_save_over_existing_and_into_new_folder(saved):
    path, weights, config = saved
    new = {k: w * 2 for k, w in weights.items()}
    save_checkpoint(path, new, VOCAB, config, "numpy")
    np.testing.assert_array_equal(load_checkpoint(path).weights["head.W"], new["head.W"])
    deep = path.parent / "runs" / "a" / "m.safetensors"
    save_checkpoint(deep, new, VOCAB, config, "numpy")
    assert load_checkpoint(deep).framework == "numpy"
    with pytest.raises(CheckpointError, match=r"is a folder; give a file name such as"):
        save_checkpoint(path.parent, new, VOCAB, config, "numpy")


# ---------------------------------------------------------------------------------------------
# The training state (common/training.py): saved beside the weights, set apart on load

@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "adam"])
def test_training_state_round_trip_and_set_apart(tmp_path, optimizer):
    config = small("float32", optimizer=optimizer)
    shapes = checkpoint.training_state_shapes(config)
    assert ("optim.step" in shapes) == (optimizer == "adam")
    assert {n.split("/")[0] for n in shapes} == {"sgd": set(), "adagrad": {"optim.sum"},
                                                 "adam": {"optim.m", "optim.v", "optim.step"}}[optimizer] | {"state.h", "state.c"}
    rng = np.random.default_rng(1)
    state = {n: (np.array(7) if n == "optim.step" else rng.standard_normal(s).astype(np.float32)) for n, s in shapes.items()}
    path = tmp_path / "m.safetensors"
    run = {"step": 7, "epoch": 0, "batch": 7, "window_losses": [1.25, 0.1 + 0.2]}
    save_checkpoint(path, init_weights(config), VOCAB, config, "numpy", state, run)
    ckpt = load_checkpoint(path)
    assert set(ckpt.weights) == set(init_weights(config)) and set(ckpt.training) == set(shapes)
    for name, t in state.items():
        np.testing.assert_array_equal(ckpt.training[name], t)
        assert ckpt.training[name].shape == shapes[name]
    assert ckpt.run == run  # floats through JSON exactly
    assert load_checkpoint(path, config=config.replace(learning_rate=0.5)).training.keys() == state.keys()


def test_a_checkpoint_without_training_state_loads_as_before(saved):
    ckpt = load_checkpoint(saved[0])
    assert ckpt.training == {} and ckpt.run is None


def test_training_state_that_does_not_fit_is_named(tmp_path):
    config = small(optimizer="adam")
    state = {n: np.zeros(s) for n, s in checkpoint.training_state_shapes(config).items()}
    del state["optim.v/head.b"]
    with pytest.raises(CheckpointError, match=r"the training state lacks tensor 'optim\.v/head\.b'"):
        save_checkpoint(tmp_path / "m.safetensors", init_weights(config), VOCAB, config, "numpy", state)
    state = {n: np.zeros(s) for n, s in checkpoint.training_state_shapes(config).items()}
    state["optim.sum/head.b"] = np.zeros(11)
    with pytest.raises(CheckpointError, match=r"holds tensor 'optim\.sum/head\.b', which an adam run"):
        checkpoint.check_training_state(state, config)
    assert not (tmp_path / "m.safetensors").exists()


def test_peek_metadata_says_what_a_file_is(saved, tmp_path):
    assert checkpoint.peek_metadata(saved[0])["framework"] == "torch"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt \(a text file\), which is not a checkpoint"):
        checkpoint.peek_metadata(text)
    foreign = tmp_path / "f.safetensors"
    safetensors.numpy.save_file({"a": np.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="a safetensors file that lstm-rosetta did not write"):
        checkpoint.peek_metadata(foreign)
